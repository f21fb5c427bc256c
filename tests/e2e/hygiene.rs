//! Log and file hygiene through the real binary: a username carrying newlines, carriage
//! returns, terminal escapes or Unicode line separators cannot forge a log line; the JSON log
//! format is one JSON object per line; the audit log records sign-ins and their outcome with
//! user and address; the data directory, database and key files are owner-only after start
//! (or the start is refused, naming the path); the admin socket serves only our uid and root.

use crate::harness::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// What a hostile client types as its username, each ending in a forged "success" line.
const FORGED: &str = "2026-01-01T00:00:00.000000Z  INFO portcullis::portal::flow: sign-in succeeded user=admin FORGED";

fn hostile_usernames() -> Vec<(&'static str, String)> {
    vec![
        ("newline", format!("eve\n{FORGED}")),
        ("carriage return", format!("eve\r{FORGED}")),
        ("CRLF", format!("eve\r\n{FORGED}")),
        (
            "ANSI erase line and cursor up",
            format!("eve\u{1b}[2K\u{1b}[1G{FORGED}"),
        ),
        ("line separator", format!("eve\u{2028}{FORGED}")),
        ("paragraph separator", format!("eve\u{2029}{FORGED}")),
        ("next line (C1)", format!("eve\u{85}{FORGED}")),
        (
            "vertical tab and form feed",
            format!("eve\u{0b}\u{0c}{FORGED}"),
        ),
    ]
}

/// Identification with `uid`, then a wrong password (which logs the typed name).
async fn fail_sign_in_as(gw: &Gateway, uid: &str) {
    let b = gw.browser();
    api_start(&b, APP, None).await;
    let url = b.url(&api_path());
    let r = b.post_json(&url, &json!({ "uid": uid })).await;
    assert!(r.status < 500, "{}", r.describe());
    let r = b.post_json(&url, &json!({ "password": WRONG_PW })).await;
    assert!(r.status < 500, "{}", r.describe());
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_username_cannot_forge_a_log_line_in_text_format() {
    // One wrong password per hostile name from one address: regulation (issue 14) would ban
    // the address after three and the rest would never reach the password stage's log line.
    let gw = Gateway::start_with(Setup {
        extra_toml: "[regulation]\nmax_retries = 50\n".into(),
        ..Setup::default()
    })
    .await;
    let cases = hostile_usernames();
    for (_, uid) in &cases {
        fail_sign_in_as(&gw, uid).await;
    }
    poll_until(Duration::from_secs(5), || {
        gw.logs().matches("FORGED").count() >= cases.len()
    })
    .await;
    let logs = gw.logs();
    assert!(
        logs.matches("FORGED").count() >= cases.len(),
        "each attempt is logged:\n{logs}"
    );
    for (i, line) in logs.split('\n').enumerate() {
        if let Some(c) = line
            .chars()
            .find(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
        {
            panic!("line {i} holds the raw character {c:?}: {line:?}");
        }
        if line.contains("FORGED") {
            assert!(
                !line.starts_with("2026-01-01") && line.contains("eve\\"),
                "a forged line: {line:?}"
            );
        }
    }
    assert!(
        !logs
            .lines()
            .any(|l| l.contains("sign-in succeeded") && !l.contains("eve")),
        "nobody signed in:\n{logs}"
    );
    // Each hostile name is still readable, escaped, on the line that logged it.
    assert!(
        logs.contains("eve\\nINFO") || logs.contains("eve\\n2026"),
        "{logs}"
    );
    assert!(logs.contains("eve\\u{2028}2026"), "{logs}");
    assert!(logs.contains("eve\\u{1b}[2K"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_json_log_is_one_object_per_line_and_the_audit_file_records_sign_ins() {
    let gw = Gateway::start_with(Setup {
        extra_toml: "[log]\nformat = \"json\"\naudit_file = \"audit/audit.jsonl\"\n".into(),
        ..Setup::default()
    })
    .await;
    let b = gw.browser();
    api_sign_in(&b, "alice", ALICE_PW).await;
    let (_, hostile) = &hostile_usernames()[0];
    fail_sign_in_as(&gw, hostile).await;
    fail_sign_in_as(&gw, "bob").await;

    let audit_path = gw.dir.path().join("audit/audit.jsonl");
    poll_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&audit_path)
            .map(|s| s.lines().count() >= 3)
            .unwrap_or(false)
    })
    .await;

    // stderr: every line one JSON object, the audit events among them with their fields.
    let logs = gw.logs();
    let events: Vec<Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    assert!(events.len() >= 3, "{logs}");
    for e in &events {
        assert!(e["timestamp"].is_string() && e["level"].is_string(), "{e}");
    }
    let audit_on_stderr: Vec<&Value> = events
        .iter()
        .filter(|e| e["target"] == "portcullis::audit")
        .collect();
    let success = audit_on_stderr
        .iter()
        .find(|e| e["action"] == "sign_in_success")
        .unwrap_or_else(|| panic!("no sign-in success on stderr:\n{logs}"));
    assert_eq!(success["user"], "alice", "{success}");
    assert_eq!(success["address"], "127.0.0.1", "{success}");
    assert_eq!(success["outcome"], "success", "{success}");
    assert!(
        audit_on_stderr
            .iter()
            .any(|e| e["action"] == "sign_in_failure" && e["user"].as_str() == Some(hostile)),
        "the hostile name, whole, in one JSON string:\n{logs}"
    );

    // The audit file: owner-only, JSON lines with user, address, outcome.
    assert_eq!(mode(&audit_path), 0o600);
    let text = std::fs::read_to_string(&audit_path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    for l in &lines {
        for field in ["time", "action", "user", "address", "outcome"] {
            assert!(l.get(field).is_some(), "{field} missing: {l}");
        }
    }
    let find = |action: &str, user: &str| {
        lines
            .iter()
            .find(|l| l["action"] == action && l["user"] == user)
            .unwrap_or_else(|| panic!("no {action} for {user}:\n{text}"))
    };
    let ok = find("sign_in_success", "alice");
    assert_eq!(ok["address"], "127.0.0.1");
    assert_eq!(ok["outcome"], "success");
    let failed = find("sign_in_failure", "bob");
    assert_eq!(failed["address"], "127.0.0.1");
    assert_eq!(failed["outcome"], "failure");
    find("sign_in_failure", hostile);
    assert!(!text.contains(WRONG_PW) && !text.contains(ALICE_PW));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_data_directory_database_and_keys_file_become_owner_only_at_start() {
    let gw = Gateway::prepare(Setup::default()).await;
    let data = gw.db_path.parent().unwrap().to_path_buf();
    // `user add` made the database; open everything up as a careless operator would.
    chmod(&data, 0o755);
    chmod(&gw.db_path, 0o755);
    let db_files: Vec<_> = std::fs::read_dir(&gw.db_path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert!(!db_files.is_empty());
    for f in &db_files {
        chmod(f, 0o644);
    }
    let mut gw = gw.launch().await;
    assert_eq!(mode(&data), 0o700, "the data directory");
    assert_eq!(mode(&gw.db_path), 0o700, "the database directory");
    // sled may have replaced some files at open: whatever is there now is owner-only.
    for e in std::fs::read_dir(&gw.db_path).unwrap() {
        let f = e.unwrap().path();
        let want = if f.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&f), want, "{}", f.display());
    }
    assert!(gw.keys_path().exists());
    for f in [gw.keys_path(), data.join("device-key.json")] {
        if f.exists() {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }
    assert!(
        gw.logs().contains("made owner-only"),
        "each change is logged:\n{}",
        gw.logs()
    );
    // And after a restart with the keys file loosened again.
    gw.stop().await;
    chmod(&gw.keys_path(), 0o644);
    gw.start_again().await;
    assert_eq!(mode(&gw.keys_path()), 0o600);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_directory_owned_by_another_account_refuses_the_start_naming_it() {
    // Giving a directory to another account needs root (CI runs as root).
    if std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .ok()
        != Some(0)
    {
        eprintln!("skipped: not root, cannot chown");
        return;
    }
    let gw = Gateway::prepare(Setup::default()).await;
    let data = gw.db_path.parent().unwrap().to_path_buf();
    std::os::unix::fs::chown(&data, Some(65534), None).unwrap();
    // The harness holds the gateway's port; this start must fail on the directory alone.
    let config = std::fs::read_to_string(&gw.config_path).unwrap().replace(
        &format!("127.0.0.1:{}", gw.port),
        &format!("127.0.0.1:{}", reserved_port()),
    );
    std::fs::write(&gw.config_path, config).unwrap();
    let out = serve_must_refuse(&gw.config_path);
    assert_eq!(out.code, Some(2), "{}", out.all());
    assert!(
        out.stderr.contains(&data.display().to_string()) && out.stderr.contains("65534"),
        "names the path and its owner: {}",
        out.stderr
    );
}

/// Sends `user_list` over the admin socket as the uid `as_uid` (via python3, started with
/// that uid), returning the raw reply.
fn admin_list_as(socket: &Path, as_uid: u32) -> String {
    use std::os::unix::process::CommandExt;
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"cmd":"user_list"}\n')
except BrokenPipeError:
    pass  # refused before the command was read: the refusal is still there to read
data = b''
while not data.endswith(b'\n'):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(socket)
        .uid(as_uid)
        .gid(as_uid)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 as uid {as_uid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_socket_refuses_a_peer_with_another_uid() {
    // Starting a process as another uid needs root (CI runs as root).
    if std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .ok()
        != Some(0)
    {
        eprintln!("skipped: not root, cannot start a peer with another uid");
        return;
    }
    let gw = Gateway::start().await;
    let data = gw.db_path.parent().unwrap().to_path_buf();
    let socket = data.join("admin.sock");
    assert!(socket.exists());
    // The file mode would stop another account at connect(): loosen it (a careless operator,
    // a socket handed over), so the peer check is what is tested.
    chmod(&data, 0o711);
    chmod(&socket, 0o666);
    let (us, nobody) = (0, 65534);
    let refused = admin_list_as(&socket, nobody);
    let v: Value = serde_json::from_str(&refused).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["message"].as_str().unwrap().contains("refused"), "{v}");
    assert!(!refused.contains("alice"), "{refused}");
    let served = admin_list_as(&socket, us);
    let v: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(served.contains("alice"), "{served}");
    assert!(gw.logs().contains("peer refused"), "{}", gw.logs());
}
