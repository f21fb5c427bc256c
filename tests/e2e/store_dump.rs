//! `portcullis store export` / `store import` through the real CLI: a signed-in gateway moved
//! from sled to PostgreSQL and back keeps its users, devices and sessions (a cookie issued
//! before the move is accepted after it), the dump is 0600 and never overwritten by accident,
//! a running sled gateway is not exported under it, a non-empty target is refused and a
//! damaged dump imports nothing.

use crate::harness::*;
use std::fs;
use std::path::{Path, PathBuf};

const PG_PASSWORD_ENV: &str = "PORTCULLIS_DATABASE_PASSWORD";

/// `portcullis --config <config> <args>` with `env`.
async fn cli_env(config: &Path, args: &[&str], env: Vec<(String, String)>) -> CliOut {
    let mut a: Vec<String> = vec!["--config".into(), config.display().to_string()];
    a.extend(args.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_cli_blocking(&a, None, &env)
    })
    .await
    .unwrap()
}

/// The gateway's config with its state elsewhere: `[storage]` replaced by `storage` (its
/// device key beside `data_dir`), the signing keys still read from the gateway's keys file
/// (they are not store state yet).
fn config_elsewhere(gw: &Gateway, storage: &str, name: &str) -> PathBuf {
    let original = fs::read_to_string(&gw.config_path).unwrap();
    let db_line = format!("path = {}", toml_str(&gw.db_path.display().to_string()));
    assert!(original.contains(&db_line), "{original}");
    let text = original
        .replace(
            &format!("[storage]\n{db_line}\n"),
            &format!("[storage]\n{storage}\n"),
        )
        .replace(
            "[session]\n",
            &format!(
                "[session]\nkeys_path = {}\n",
                toml_str(&gw.keys_path().display().to_string())
            ),
        );
    let path = gw.dir.path().join(format!("{name}.toml"));
    fs::write(&path, text).unwrap();
    path
}

/// A sled database in its own folder under the gateway's temporary directory.
fn sled_elsewhere(gw: &Gateway, name: &str) -> (PathBuf, PathBuf) {
    let dir = gw.dir.path().join(name);
    fs::create_dir_all(&dir).unwrap();
    let db = dir.join("portcullis.db");
    let storage = format!("path = {}", toml_str(&db.display().to_string()));
    (config_elsewhere(gw, &storage, name), db)
}

/// The records of a dump file: every line but the header (its time differs) and the trailer.
fn record_lines(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert!(lines.len() >= 2, "{text}");
    lines[1..lines.len() - 1].to_vec()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Starts `portcullis serve` on the gateway's listener with another config.
async fn serve(gw: &Gateway, config: &Path, env: &[(String, String)]) -> std::process::Child {
    Serve {
        args: vec!["--config".into(), config.into()],
        listeners: std::slice::from_ref(&gw.listener),
        dir: gw.dir.path(),
        env,
        log: &gw.log_path,
    }
    .start()
    .await
}

fn stop(mut child: std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_in_gateway_moves_from_sled_to_postgres_and_back_and_its_cookie_still_works() {
    let mut gw = Gateway::start().await;
    let (_b, alice) = alice_browser(&gw).await;
    assert_token_accepted(&gw, &alice.token, "before the move").await;
    let dump1 = gw.dir.path().join("backup.jsonl");
    let dump1_arg = dump1.display().to_string();

    // A running sled gateway holds its database: no export under it.
    let out = gw.cli(&["store", "export", "--to", &dump1_arg], None).await;
    assert!(!out.ok(), "{}", out.all());
    assert!(out.stderr.contains("stop it first"), "{}", out.stderr);
    assert!(!dump1.exists());

    gw.stop().await;
    let out = gw.cli(&["store", "export", "--to", &dump1_arg], None).await;
    assert!(out.ok(), "{}", out.all());
    assert!(out.stderr.contains("2 user"), "{}", out.stderr);
    assert!(out.stderr.contains("1 device_key"), "{}", out.stderr);
    assert!(out.stderr.contains("keep it as secret"), "{}", out.stderr);
    #[cfg(unix)]
    assert_eq!(mode(&dump1), 0o600, "the dump is a secret");
    assert!(
        !out.all().contains(ALICE_PW) && !out.all().contains(&alice.token),
        "{}",
        out.all()
    );
    // Never over an existing file, unless asked.
    let before = fs::read(&dump1).unwrap();
    let out = gw.cli(&["store", "export", "--to", &dump1_arg], None).await;
    assert!(!out.ok() && out.stderr.contains("--force"), "{}", out.all());
    assert_eq!(fs::read(&dump1).unwrap(), before);
    let out = gw
        .cli(&["store", "export", "--to", &dump1_arg, "--force"], None)
        .await;
    assert!(out.ok(), "{}", out.all());
    #[cfg(unix)]
    assert_eq!(mode(&dump1), 0o600);

    // Into PostgreSQL.
    // The test server's set-up blocks on a runtime of its own: not on this one's threads.
    let (pg, password) = tokio::task::spawn_blocking(|| {
        let server = portcullis::store::pg_test_server::server();
        (server.fresh_database(), server.password().to_string())
    })
    .await
    .unwrap();
    let env = vec![(PG_PASSWORD_ENV.to_string(), password)];
    let pg_dir = gw.dir.path().join("pg");
    fs::create_dir_all(&pg_dir).unwrap();
    let pg_storage = format!(
        "backend = \"postgres\"\nurl = {}\npath = {}",
        toml_str(&pg.url),
        toml_str(&pg_dir.join("unused.db").display().to_string())
    );
    let pg_config = config_elsewhere(&gw, &pg_storage, "pg");
    let out = cli_env(
        &pg_config,
        &["store", "import", "--from", &dump1_arg],
        env.clone(),
    )
    .await;
    assert!(out.ok(), "{}", out.all());
    assert!(out.stderr.contains("2 user"), "{}", out.stderr);
    let key_file = pg_dir.join("device-key.json");
    assert!(
        out.stderr.contains("wrote the device key"),
        "{}",
        out.stderr
    );
    assert_eq!(
        fs::read(&key_file)
            .map(|b| String::from_utf8_lossy(&b).contains("key"))
            .ok(),
        Some(true)
    );
    #[cfg(unix)]
    assert_eq!(mode(&key_file), 0o600);
    // A second import finds the database holding state, and names it.
    let out = cli_env(
        &pg_config,
        &["store", "import", "--from", &dump1_arg],
        env.clone(),
    )
    .await;
    assert!(!out.ok(), "{}", out.all());
    assert!(
        out.stderr.contains("not empty") && out.stderr.contains("2 user"),
        "{}",
        out.stderr
    );
    // The same records come back out of PostgreSQL.
    let dump2 = gw.dir.path().join("from-pg.jsonl");
    let dump2_arg = dump2.display().to_string();
    let out = cli_env(
        &pg_config,
        &["store", "export", "--to", &dump2_arg],
        env.clone(),
    )
    .await;
    assert!(out.ok(), "{}", out.all());
    assert_eq!(
        record_lines(&dump2),
        record_lines(&dump1),
        "record for record"
    );

    // A gateway on PostgreSQL accepts the cookie sled's issued, and alice signs in again.
    let child = serve(&gw, &pg_config, &env).await;
    assert_token_accepted(&gw, &alice.token, "on postgres after the move").await;
    let again = api_sign_in(&gw.browser(), "alice", ALICE_PW).await;
    assert_token_accepted(&gw, &again.token, "signed in on postgres").await;
    stop(child);

    // And back into a new sled database.
    let (sled_config, sled_db) = sled_elsewhere(&gw, "back");
    let out = cli_env(
        &sled_config,
        &["store", "import", "--from", &dump2_arg],
        vec![],
    )
    .await;
    assert!(out.ok(), "{}", out.all());
    assert!(
        out.stderr.contains("wrote the device key"),
        "{}",
        out.stderr
    );
    let dump3 = gw.dir.path().join("back.jsonl");
    let dump3_arg = dump3.display().to_string();
    let out = cli_env(
        &sled_config,
        &["store", "export", "--to", &dump3_arg],
        vec![],
    )
    .await;
    assert!(out.ok(), "{}", out.all());
    assert_eq!(
        record_lines(&dump3),
        record_lines(&dump1),
        "record for record"
    );
    assert!(sled_db.exists());
    let child = serve(&gw, &sled_config, &[]).await;
    assert_token_accepted(&gw, &alice.token, "on sled after the round trip").await;
    let r = gw
        .raw()
        .get_with_token("/secret", &alice.token, "application/json")
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    stop(child);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_or_truncated_dump_imports_nothing_and_names_the_bad_line() {
    let gw = Gateway::prepare(Setup::default()).await;
    let dump = gw.dir.path().join("backup.jsonl");
    let out = gw
        .cli(
            &["store", "export", "--to", &dump.display().to_string()],
            None,
        )
        .await;
    assert!(out.ok(), "{}", out.all());
    let text = fs::read_to_string(&dump).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let with_line = |i: usize, new: &str| {
        let mut l = lines.clone();
        l[i] = new;
        l.join("\n") + "\n"
    };
    let future = lines[0].replace("\"version\":1", "\"version\":99");
    let edited = lines[3].replacen("\"kind\":\"", "\"kind\":\"x", 1);
    let mut changed_value = lines.clone();
    let alice_line = lines
        .iter()
        .position(|l| l.contains("\"username\":\"alice\""))
        .unwrap();
    let renamed = lines[alice_line].replace("\"username\":\"alice\"", "\"username\":\"mallory\"");
    changed_value[alice_line] = &renamed;
    let cases: Vec<(&str, String, String)> = vec![
        (
            "truncated mid-line",
            text[..text.len() / 2].to_string(),
            "line".into(),
        ),
        (
            "last lines cut off",
            lines[..lines.len() - 2].join("\n") + "\n",
            "truncated".into(),
        ),
        ("garbage line", with_line(2, "{not json"), "line 3".into()),
        ("unknown kind", with_line(3, &edited), "line 4".into()),
        (
            "another version",
            with_line(0, &future),
            "version 99".into(),
        ),
        (
            "a value changed",
            changed_value.join("\n") + "\n",
            "checksum".into(),
        ),
        ("empty", String::new(), "line 1".into()),
        (
            "something after the end",
            text.clone() + "{\"kind\":\"user\",\"username\":\"eve\"}\n",
            format!("line {}", lines.len() + 1),
        ),
    ];
    for (what, body, says) in cases {
        let (config, db) = sled_elsewhere(&gw, &format!("t{}", what.replace(' ', "-")));
        let bad = gw.dir.path().join("bad.jsonl");
        fs::write(&bad, &body).unwrap();
        let out = cli_env(
            &config,
            &["store", "import", "--from", &bad.display().to_string()],
            vec![],
        )
        .await;
        assert!(!out.ok(), "{what}: {}", out.all());
        assert!(
            out.stderr.contains(&says) && out.stderr.contains("nothing was imported"),
            "{what}: expected {says:?}: {}",
            out.stderr
        );
        assert!(!db.exists(), "{what}: no database was created");
        assert!(
            !db.parent().unwrap().join("device-key.json").exists(),
            "{what}: no key file was written"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_never_replaces_a_device_key_file_holding_another_key() {
    let gw = Gateway::prepare(Setup::default()).await;
    let ours = format!("{{\"key\":\"{}\"}}", "A".repeat(43));
    fs::write(gw.db_path.parent().unwrap().join("device-key.json"), ours).unwrap();
    let dump = gw.dir.path().join("backup.jsonl");
    let out = gw
        .cli(
            &["store", "export", "--to", &dump.display().to_string()],
            None,
        )
        .await;
    assert!(out.ok(), "{}", out.all());
    let (config, db) = sled_elsewhere(&gw, "other-key");
    let key_file = db.parent().unwrap().join("device-key.json");
    let other = format!("{{\"key\":\"{}E\"}}", "A".repeat(42));
    fs::write(&key_file, &other).unwrap();
    let out = cli_env(
        &config,
        &["store", "import", "--from", &dump.display().to_string()],
        vec![],
    )
    .await;
    assert!(!out.ok(), "{}", out.all());
    assert!(
        out.stderr.contains("holds another key") && out.stderr.contains("nothing was imported"),
        "{}",
        out.stderr
    );
    assert_eq!(fs::read_to_string(&key_file).unwrap(), other);
    assert!(!db.exists(), "nothing was imported");
}
