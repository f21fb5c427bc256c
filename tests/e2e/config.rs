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
        reserved_port(),
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
    let path = write(&dir, &good_config(&dir, reserved_port()));
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
    let path = write(&dir, &good_config(&dir, reserved_port()));
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
    let text = good_config(&dir, reserved_port()).replacen(
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
        good_config(&dir, reserved_port())
    );
    tokio::task::spawn_blocking(move || assert_refused(&text, &["sesion"]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_apps_on_one_host_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = good_config(&dir, reserved_port()).replacen(
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
    let text = good_config(&dir, reserved_port()).replacen(
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
    let text = good_config(&dir, reserved_port()).replacen(
        "lifetime = \"12h\"",
        "lifetime = \"12 parsecs\"",
        1,
    );
    tokio::task::spawn_blocking(move || assert_refused(&text, &["session.lifetime"]))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let text = good_config(&dir, reserved_port()).replacen(
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
    let text = good_config(&dir, reserved_port()).replacen(
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
    let text = good_config(&dir, reserved_port()).replacen(
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
    let path = write(&dir, &good_config(&dir, reserved_port()));
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

/// `check-config` with `env` set.
fn check_config_env(path: &Path, env: &[(&str, &str)]) -> CliOut {
    run_cli_blocking(
        &[
            "check-config".into(),
            "--config".into(),
            path.display().to_string(),
        ],
        None,
        env,
    )
}

/// Starts `serve` with `env`, handed `listeners`, and waits until the first answers ping; the
/// caller kills it.
async fn serve_with_env(
    path: &Path,
    env: &[(&str, &str)],
    listeners: &[Listener],
) -> std::process::Child {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let dir = path.parent().unwrap();
    Serve {
        args: vec!["--config".into(), path.into()],
        listeners,
        dir,
        env: &env,
        log: &dir.join("serve.log"),
    }
    .start()
    .await
}

/// A plain HTTP/1.1 GET of `path` with `Host: host`; the status code, or `None` when nothing
/// answers.
fn get_status(port: u16, host: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn answers_ping(port: u16, host: &str) -> bool {
    get_status(port, host, "/.portcullis/ping") == Some(200)
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_overrides_set_lists_and_entries_of_arrays_of_tables() {
    for form in ["comma", "json", "toml"] {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, &good_config(&dir, reserved_port()));
        // Handed over: the gateway takes them only for addresses its (overridden) config names.
        let (la, lb) = (Listener::bind(), Listener::bind());
        let (a, b) = (la.port(), lb.port());
        let listen = match form {
            "comma" => format!("127.0.0.1:{a}, 127.0.0.1:{b}"),
            "json" => format!(r#"["127.0.0.1:{a}","127.0.0.1:{b}"]"#),
            _ => format!("['127.0.0.1:{a}', '127.0.0.1:{b}']"),
        };
        let hosts = match form {
            "comma" => "renamed.test,second.test".to_string(),
            _ => r#"["renamed.test", "second.test"]"#.to_string(),
        };
        let env = [
            ("PORTCULLIS_SERVER__LISTEN", listen.as_str()),
            ("PORTCULLIS_APPS__0__HOSTS", hosts.as_str()),
            ("PORTCULLIS_APPS__0__BYPASS", ""),
        ];
        let out = check_config_env(&path, &env);
        assert!(out.ok(), "{form}: {}", out.all());
        let mut child = serve_with_env(&path, &env, &[la, lb]).await;
        let seen = tokio::task::spawn_blocking(move || {
            (
                answers_ping(b, "x.test"),
                get_status(a, "renamed.test", "/public/x"),
                get_status(a, "second.test", "/"),
                get_status(a, APP, "/"),
            )
        })
        .await
        .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(seen.0, "{form}: the second listen address is not served");
        // apps[0] now answers for its new hosts, with no bypass left: a redirect to sign in.
        assert_eq!(seen.1, Some(302), "{form}: renamed.test /public/x");
        assert_eq!(seen.2, Some(302), "{form}: second.test /");
        assert_eq!(seen.3, Some(404), "{form}: the old host is still an app");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_override_errors_name_the_variable_and_key_never_the_value() {
    tokio::task::spawn_blocking(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, &good_config(&dir, reserved_port()));
        // (variable, value, the key path the error must name)
        let cases = [
            ("PORTCULLIS_EMAIL__PORT", "hunter2-port", "email.port"),
            ("PORTCULLIS_EMAIL__USE_TLS", "hunter2-bool", "email.use_tls"),
            (
                "PORTCULLIS_SERVER__LISTEN",
                "hunter2-a,hunter2-b",
                "server.listen",
            ),
            (
                "PORTCULLIS_SERVER__LISTEN",
                r#"["hunter2-json"]"#,
                "server.listen",
            ),
            (
                "PORTCULLIS_SERVER__AUTH_HOST",
                "hunter2/host",
                "server.auth_host",
            ),
            (
                "PORTCULLIS_SESSION__LIFETIME",
                "hunter2 parsecs",
                "session.lifetime",
            ),
            (
                "PORTCULLIS_SESSION__LIFETIM",
                "hunter2-typo",
                "session.lifetim",
            ),
            ("PORTCULLIS_APPS__9__HOSTS", "hunter2.test", "apps"),
            (
                "PORTCULLIS_APPS__0__NAME__X",
                "hunter2-deep",
                "apps[0].name",
            ),
            (
                "PORTCULLIS_STAGES__PASSWORD__FAILED_ATTEMPTS_BEFORE_CANCEL",
                "hunter2-count",
                "stages.password",
            ),
            (
                "PORTCULLIS_STAGES__LOGIN__SESSION_DURATION",
                "hunter2",
                "stages.login.session_duration",
            ),
        ];
        for (var, value, key) in cases {
            let out = check_config_env(&path, &[(var, value)]);
            assert_eq!(
                out.code,
                Some(2),
                "{var}={value} was accepted: {}",
                out.all()
            );
            assert!(
                out.stderr.contains(var),
                "{var}: the variable is not named: {}",
                out.stderr
            );
            assert!(
                out.stderr.contains(key),
                "{var}: the key {key} is not named: {}",
                out.stderr
            );
            assert!(
                !out.all().contains("hunter2"),
                "{var}: the value is shown: {}",
                out.all()
            );
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_that_cannot_be_bound_stops_the_start_naming_it() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap().port();
    tokio::task::spawn_blocking(move || {
        let free = reserved_port();
        // (listen list, the address named, the reason's words)
        let cases = [
            (
                format!(r#"["127.0.0.1:{busy}"]"#),
                format!("127.0.0.1:{busy}"),
                "in use",
            ),
            (
                format!(r#"["127.0.0.1:{free}", "127.0.0.1:{busy}"]"#),
                format!("127.0.0.1:{busy}"),
                "in use",
            ),
            (
                format!(r#"["127.0.0.1:{free}", "127.0.0.1:{free}"]"#),
                format!("127.0.0.1:{free}"),
                "in use",
            ),
            // TEST-NET-1: never an address of this machine. Binding sends nothing.
            (
                "[\"192.0.2.1:9000\"]".to_string(),
                "192.0.2.1:9000".into(),
                "not an address of this machine",
            ),
        ];
        for (listen, named, reason) in cases {
            let dir = tempfile::tempdir().unwrap();
            let text = good_config(&dir, reserved_port()).replacen(
                "listen = [",
                &format!("listen = {listen}\n# was: ["),
                1,
            );
            let path = write(&dir, &text);
            let started = Instant::now();
            let out = serve_must_refuse(&path);
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{listen}: took {:?}",
                started.elapsed()
            );
            assert_ne!(out.code, Some(0), "{listen}: {}", out.all());
            assert!(out.code.is_some(), "{listen}: killed, not exited");
            assert!(
                out.stderr.contains(&named),
                "{listen}: {named} not named: {}",
                out.stderr
            );
            assert!(
                out.stderr.contains(reason),
                "{listen}: no {reason:?}: {}",
                out.stderr
            );
            assert!(
                out.stderr.contains("server.listen"),
                "{listen}: key not named: {}",
                out.stderr
            );
            assert!(
                !dir.path().join("data").exists(),
                "{listen}: the database was created before the refusal"
            );
        }
    })
    .await
    .unwrap();
    drop(held);
}

#[tokio::test(flavor = "multi_thread")]
async fn config_mistakes_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = good_config(&dir, reserved_port());
    let email_stage = "\n[stages.mail]\nkind = \"authenticator_email\"\nname = \"Work mail\"\n";
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            format!("{base}{email_stage}"),
            vec!["stages.mail.name", "friendly_name"],
        ),
        (
            format!("{base}\n[password]\nmin_length = 0\n"),
            vec!["password.min_length"],
        ),
        (
            format!("{base}\n[password]\nmax_length = 32\n"),
            vec!["password.max_length", "64"],
        ),
        (
            format!("{base}\n[password]\nmin_length = 100\n"),
            vec!["password.min_length", "max_length"],
        ),
    ];
    tokio::task::spawn_blocking(move || {
        for (text, must) in cases {
            assert_refused(&text, &must);
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_address_in_use_stops_the_start_naming_it() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap().port();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let out = run_cli_blocking(
            &["certs".into(), "dev".into(), "--out".into(), certs.display().to_string()],
            None,
            &[],
        );
        assert!(out.ok(), "{}", out.all());
        // Relative to the config's folder.
        let text = format!(
            "{}\n",
            good_config(&dir, reserved_port()).replacen(
                "[server]\n",
                &format!(
                    "[server]\ntls_listen = [\"127.0.0.1:{busy}\"]\ncertificates = [{{ cert = \"certs/dev.pem\", key = \"certs/dev.key\" }}]\n"
                ),
                1,
            )
        );
        let path = write(&dir, &text);
        let out = serve_must_refuse(&path);
        assert_ne!(out.code, Some(0), "{}", out.all());
        for needle in [format!("127.0.0.1:{busy}"), "server.tls_listen[0]".into(), "in use".into()] {
            assert!(out.stderr.contains(&needle), "{needle:?} not named: {}", out.stderr);
        }
    })
    .await
    .unwrap();
    drop(held);
}
