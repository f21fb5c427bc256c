//! Bad configs are refused, by `check-config` and by `serve`, naming the key and the reason.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A valid config in a fresh tempdir; returns (dir, text).
fn good_config(dir: &tempfile::TempDir, port: u16) -> String {
    let db = dir.path().join("data").join("portcullis.db");
    config_toml(
        port,
        "127.0.0.1:9".parse().unwrap(),
        free_port(),
        &db,
        &Setup::default(),
    )
}

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let p = dir.path().join("portcullis.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Both commands refuse `text`, naming every string in `must_name` on stderr.
fn assert_refused(text: &str, must_name: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, text);

    let out = check_config(&path);
    assert!(
        !out.ok() && out.code.is_some(),
        "check-config accepted a bad config (exit {:?}):\n{}\n--- config ---\n{text}",
        out.code,
        out.all()
    );
    for needle in must_name {
        assert!(
            out.stderr.contains(needle),
            "check-config's error does not name {needle:?}:\nstderr: {}\nstdout: {}",
            out.stderr,
            out.stdout
        );
    }
    assert!(out.stderr.contains("error"), "stderr: {}", out.stderr);
    assert!(!out.stdout.contains("config OK"), "stdout: {}", out.stdout);

    let started = Instant::now();
    let out = serve_must_refuse(&path);
    assert_eq!(
        out.code,
        Some(2),
        "serve's exit code on a bad config: {}",
        out.all()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    for needle in must_name {
        assert!(
            out.stderr.contains(needle),
            "serve's error does not name {needle:?}:\nstderr: {}",
            out.stderr
        );
    }
    // Nothing was created for a config that was refused.
    assert!(
        !dir.path().join("data").join("keys.json").exists(),
        "serve generated keys before refusing the config"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_accepts_the_test_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, &good_config(&dir, free_port()));
    let out = tokio::task::spawn_blocking(move || check_config(&path))
        .await
        .unwrap();
    assert!(
        out.ok(),
        "check-config refused a good config: {}",
        out.all()
    );
    assert!(out.stdout.contains("config OK"), "stdout: {}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn config_path_comes_from_portcullis_config_env_and_flag_before_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, &good_config(&dir, free_port()));
    let p = path.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let env = run_cli_blocking(&["check-config".into()], None, &[("PORTCULLIS_CONFIG", &p)]);
        let before = run_cli_blocking(
            &["--config".into(), p.clone(), "check-config".into()],
            None,
            &[],
        );
        (env, before)
    })
    .await
    .unwrap();
    assert!(
        out.0.ok(),
        "PORTCULLIS_CONFIG not honoured: {}",
        out.0.all()
    );
    assert!(out.0.stdout.contains("config OK"));
    assert!(
        out.1.ok(),
        "--config before the subcommand: {}",
        out.1.all()
    );

    // And a missing file is an error naming it.
    let missing = dir.path().join("nope.toml");
    let out = tokio::task::spawn_blocking(move || check_config(&missing))
        .await
        .unwrap();
    assert!(!out.ok());
    assert!(out.stderr.contains("nope.toml"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_key_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let text = good_config(&dir, free_port()).replacen(
        "flow = \"default-authentication\"\nallowed_groups = []\nbypass = [\"^/public/\"]",
        "flow = \"default-authentication\"\nallowed_groups = []\nbypass = [\"^/public/\"]\nupstr = \"oops\"",
        1,
    );
    assert!(text.contains("upstr = "));
    tokio::task::spawn_blocking(move || assert_refused(&text, &["apps[0].upstr", "unknown"]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_top_level_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[sesion]\nlifetime = \"1h\"\n",
        good_config(&dir, free_port())
    );
    tokio::task::spawn_blocking(move || assert_refused(&text, &["sesion"]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_apps_on_one_host_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = good_config(&dir, free_port()).replacen(
        &format!("hosts = [\"{ADMIN_APP}\"]"),
        &format!("hosts = [\"{APP}\"]"),
        1,
    );
    tokio::task::spawn_blocking(move || assert_refused(&text, &["apps[1].hosts[0]", APP]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn flow_naming_a_missing_stage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = good_config(&dir, free_port()).replacen(
        "stages = [\"identify\", \"password\", \"login\"]",
        "stages = [\"identify\", \"password\", \"missing-stage\"]",
        1,
    );
    tokio::task::spawn_blocking(move || {
        assert_refused(&text, &["flows[0].stages[2]", "missing-stage"])
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_duration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = good_config(&dir, free_port()).replacen(
        "lifetime = \"12h\"",
        "lifetime = \"12 parsecs\"",
        1,
    );
    tokio::task::spawn_blocking(move || assert_refused(&text, &["session.lifetime"]))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let text = good_config(&dir, free_port()).replacen(
        "session_duration = \"12h\"",
        "session_duration = \"soon\"",
        1,
    );
    tokio::task::spawn_blocking(move || assert_refused(&text, &["stages.login.session_duration"]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn app_naming_a_missing_flow_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = good_config(&dir, free_port()).replacen(
        "flow = \"default-authentication\"",
        "flow = \"no-such-flow\"",
        1,
    );
    tokio::task::spawn_blocking(move || assert_refused(&text, &["apps[0].flow", "no-such-flow"]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bypass_regex_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = good_config(&dir, free_port()).replacen(
        "bypass = [\"^/public/\"]",
        "bypass = [\"^/public/(\"]",
        1,
    );
    tokio::task::spawn_blocking(move || assert_refused(&text, &["apps[0].bypass[0]"]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_refuses_what_serve_would_a_corrupt_keys_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, &good_config(&dir, free_port()));
    let keys = dir.path().join("data").join("keys.json");
    std::fs::create_dir_all(keys.parent().unwrap()).unwrap();
    std::fs::write(&keys, "{ not json").unwrap();
    let p = path.clone();
    let out = tokio::task::spawn_blocking(move || check_config(&p))
        .await
        .unwrap();
    assert_eq!(out.code, Some(2), "check-config passed: {}", out.all());
    assert!(
        out.stderr.contains("keys.json"),
        "the keys file is named: {}",
        out.stderr
    );
    let p = path.clone();
    let served = tokio::task::spawn_blocking(move || serve_must_refuse(&p))
        .await
        .unwrap();
    assert!(served.stderr.contains("keys.json"), "{}", served.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_example_config_passes_check_config() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/portcullis.toml");
    let out = tokio::task::spawn_blocking(move || {
        let mut c = Command::new(BIN);
        c.current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("--config")
            .arg(&path)
            .arg("check-config")
            .env_remove("PORTCULLIS_CONFIG");
        c.output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
