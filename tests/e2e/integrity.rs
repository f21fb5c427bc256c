//! Database integrity end to end: a damaged database is refused at start naming its path, a
//! deleted one starts afresh with every earlier token dead, `kill -9` during enrolments and
//! sign-ins loses nothing that was answered, and a full disk refuses sign-ins with 503 while
//! signed-in requests go on.

use crate::harness::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const PW: &str = "Enrolled-passphrase-4242";

/// The standard config plus an open sign-up flow (`/.portcullis/api/flow/open`).
fn setup() -> Setup {
    Setup {
        extra_toml: r#"
[[flows]]
slug = "open"
title = "Sign up"
designation = "enrollment"
stages = ["signup", "write", "login"]

[stages.signup]
kind = "prompt"
fields = [
  { key = "username", label = "Username" },
  { key = "password", label = "Password", type = "password" },
  { key = "password_repeat", label = "Password (repeat)", type = "password" },
]

[stages.write]
kind = "user_write"
"#
        .into(),
        ..Setup::default()
    }
}

/// Signs `name` up through the open flow; the session token when the gateway said so.
async fn enrol(gw: &Gateway, name: &str) -> Option<String> {
    let b = gw.browser();
    let url = b.url_on(APP, "/.portcullis/api/flow/open");
    let r = b.get_json(&url).await;
    if r.status != 200 {
        return None;
    }
    let r = b
        .post_json(
            &url,
            &json!({ "username": name, "password": PW, "password_repeat": PW }),
        )
        .await;
    if r.status != 200 || r.json()["component"] != "redirect" {
        return None;
    }
    r.set_cookie_value(SESSION_COOKIE)
}

/// The data file, the integrity record and the directory of the gateway's database.
fn data_file(gw: &Gateway) -> PathBuf {
    gw.db_path.join("db")
}

fn record(gw: &Gateway) -> PathBuf {
    let name = gw
        .db_path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    gw.db_path.with_file_name(format!("{name}.integrity"))
}

/// Runs `serve` on the gateway's config and listener: its stderr when it exits (refusing),
/// `None` when it still runs after 8 s (then it is stopped).
fn serve_outcome(gw: &Gateway) -> Option<String> {
    let mut child =
        command_with_listeners(BIN, std::slice::from_ref(&gw.listener), Handover::Systemd)
            .arg("--config")
            .arg(&gw.config_path)
            .arg("serve")
            .env_remove("PORTCULLIS_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "exited with success");
    Some(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// How much of `bytes` sled has written: up to the last byte that is not zero. sled's file
/// grows in whole segments, so past a restart it may be mostly zeros it has not used yet;
/// damage measured against the whole file would land there and damage nothing.
fn used(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)
}

/// 4 KiB of garbage at `percent` of the written part of `file`.
fn garbage_at(file: &Path, percent: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = used(&bytes) * percent / 100;
    let end = (at + 4096).min(bytes.len());
    bytes[at..end].fill(0x5a);
    std::fs::write(file, bytes).unwrap();
}

/// A gateway that enrolled 12 users, then stopped as an operator stops it.
async fn populated() -> (Gateway, Vec<String>) {
    let mut gw = Gateway::start_with(setup()).await;
    let mut names = Vec::new();
    for i in 0..12 {
        let name = format!("user{i:02}");
        enrol(&gw, &name).await.expect("enrolled");
        names.push(name);
    }
    gw.stop().await;
    (gw, names)
}

fn truncate_to_a_third(gw: &Gateway) {
    let bytes = std::fs::read(data_file(gw)).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(data_file(gw))
        .unwrap();
    f.set_len(used(&bytes) as u64 / 3).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_database_is_refused_at_start_naming_the_path_and_the_finding() {
    type Damage = fn(&Gateway);
    // (what, how, the finding named, whether it must refuse). Garbage may land on space
    // sled no longer uses (older copies of rewritten pages): then nothing is damaged, and the
    // gateway may run, but only with every record.
    let cases: &[(&str, Damage, &str, bool)] = &[
        (
            "garbage at 10 %",
            |gw| garbage_at(&data_file(gw), 10),
            "",
            false,
        ),
        (
            "garbage at 50 %",
            |gw| garbage_at(&data_file(gw), 50),
            "",
            false,
        ),
        (
            "garbage at 90 %",
            |gw| garbage_at(&data_file(gw), 90),
            "",
            false,
        ),
        (
            "truncated to a third",
            truncate_to_a_third,
            "lost writes",
            true,
        ),
        (
            "data file deleted",
            |gw| std::fs::remove_file(data_file(gw)).unwrap(),
            // sled notices first when a snapshot names the log it lost.
            "",
            true,
        ),
        (
            "integrity record deleted",
            |gw| std::fs::remove_file(record(gw)).unwrap(),
            "integrity record",
            true,
        ),
    ];
    let mut garbage_refused = 0;
    for (what, damage, finding, must) in cases {
        let (mut gw, names) = populated().await;
        damage(&gw);
        let Some(stderr) = serve_outcome(&gw) else {
            assert!(!must, "{what}: the gateway runs on it");
            let listed = gw.cli(&["user", "list"], None).await;
            for n in &names {
                assert!(
                    listed.stdout.contains(n.as_str()),
                    "{what}: runs without {n}: {}",
                    listed.all()
                );
            }
            eprintln!("{what}: harmless (unused space), every record there");
            continue;
        };
        let path = gw.db_path.display().to_string();
        assert!(stderr.contains(&path), "{what}: path not named:\n{stderr}");
        assert!(stderr.contains("cannot be trusted"), "{what}:\n{stderr}");
        assert!(
            stderr.contains(finding),
            "{what}: finding not named:\n{stderr}"
        );
        eprintln!("{what}: refused");
        garbage_refused += usize::from(what.starts_with("garbage"));
        // The offline CLI refuses it too, rather than writing into it.
        let out = gw.cli(&["user", "list"], None).await;
        assert!(!out.ok(), "{what}: `user list` ran: {}", out.all());
        assert!(
            out.all().contains("cannot be trusted"),
            "{what}: {}",
            out.all()
        );

        // The operator's way out (after restoring what they can): accept it as it is, under
        // a new identity; then it runs.
        if !finding.is_empty() && !out.all().contains("sled c") {
            let accepted = gw.cli(&["storage", "accept"], None).await;
            assert!(accepted.ok(), "{what}: accept: {}", accepted.all());
            gw.start_again().await;
            let listed = gw.cli(&["user", "list"], None).await;
            assert!(listed.ok(), "{what}: {}", listed.all());
        }
    }
    assert!(garbage_refused > 0, "no garbage damaged anything");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_database_starts_afresh_and_no_earlier_token_works_with_the_same_keys() {
    let mut gw = Gateway::start_with(setup()).await;
    let (b, alice) = alice_browser(&gw).await;
    let out = api_sign_in(&gw.browser(), "bob", BOB_PW).await;
    let carol = enrol(&gw, "carol").await.expect("enrolled");
    assert_token_accepted(&gw, &alice.token, "before").await;
    drop(b);
    let keys_before = std::fs::read(gw.keys_path()).unwrap();
    gw.stop().await;
    std::fs::remove_dir_all(&gw.db_path).unwrap();
    gw.start_again().await;
    assert_eq!(
        std::fs::read(gw.keys_path()).unwrap(),
        keys_before,
        "keys.json untouched"
    );
    assert!(
        gw.logs().contains("created the first user"),
        "a fresh database bootstraps admin"
    );
    for (what, token) in [
        ("alice's session", &alice.token),
        ("bob's session", &out.token),
        ("an enrolled user's session", &carol),
    ] {
        assert_token_refused(&gw, token, what).await;
    }
}

/// Rounds of `kill -9` while enrolments, sign-ins and sign-outs run: after each restart every
/// enrolment that was answered is there, every session that was answered works and every
/// sign-out that was answered holds. Regulation runs as configured by default: no kill leaves
/// a failure nobody typed (an attempt in flight when the gateway dies is forgotten, not
/// counted), so no ban follows the kills, and afterwards the address still has all its
/// `max_retries` tries. `PORTCULLIS_KILL_ROUNDS=100` for the long run (3 by default).
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_enrolments_and_sign_ins_loses_nothing_that_was_answered() {
    use std::sync::{Arc, Mutex};
    let rounds: usize = std::env::var("PORTCULLIS_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut gw = Gateway::start_with(setup()).await;
    // Filled as answers arrive: whatever is in them was answered before the kill.
    let enrolled: Arc<Mutex<Vec<String>>> = Arc::default();
    let live: Arc<Mutex<Vec<String>>> = Arc::default();
    let ended: Arc<Mutex<Vec<String>>> = Arc::default();
    for round in 0..rounds {
        let gwr = &gw;
        let enrolments = |lane: usize| {
            let (enrolled, live) = (enrolled.clone(), live.clone());
            async move {
                for i in 0.. {
                    let name = format!("r{round}l{lane}u{i}");
                    let Some(t) = enrol(gwr, &name).await else {
                        eprintln!("round {round} lane {lane}: enrolment {i} not answered");
                        return;
                    };
                    enrolled.lock().unwrap().push(name);
                    live.lock().unwrap().push(t);
                }
            }
        };
        let sign_ins = |lane: usize| {
            let (live, ended) = (live.clone(), ended.clone());
            async move {
                for i in 0.. {
                    let b = gwr.browser();
                    let url = b.url_on(APP, &api_path());
                    let g = b.get_json(&url).await;
                    if g.status != 200 {
                        eprintln!("round {round} lane {lane}: page {}", g.describe());
                        return;
                    }
                    let r = b.post_json(&url, &json!({ "uid": "alice" })).await;
                    if r.status != 200 {
                        eprintln!("round {round} lane {lane}: uid {}", r.describe());
                        return;
                    }
                    let r = b.post_json(&url, &json!({ "password": ALICE_PW })).await;
                    let Some(token) = r.set_cookie_value(SESSION_COOKIE) else {
                        eprintln!("round {round} lane {lane}: password {}", r.describe());
                        return;
                    };
                    if (i + lane).is_multiple_of(2) {
                        live.lock().unwrap().push(token);
                        continue;
                    }
                    let r = b.post_json("/.portcullis/api/logout", &json!({})).await;
                    if r.status != 200 {
                        // Not answered as signed out: the session may stand or not.
                        return;
                    }
                    ended.lock().unwrap().push(token);
                }
            }
        };
        let work = async {
            tokio::join!(enrolments(0), enrolments(1), sign_ins(0), sign_ins(1));
        };
        let kill_after = Duration::from_millis(700 + 173 * (round as u64 % 7));
        tokio::select! {
            _ = work => panic!("round {round}: the work ended before the kill"),
            _ = tokio::time::sleep(kill_after) => {}
        }
        gw.kill();
        gw.start_again().await;
        let listed = gw.cli(&["user", "list"], None).await;
        assert!(listed.ok(), "round {round}: {}", listed.all());
        for name in enrolled.lock().unwrap().iter() {
            assert!(
                listed.stdout.contains(&format!("{name}\t")),
                "round {round}: enrolled {name} is gone:\n{}",
                listed.stdout
            );
        }
        let live_now = live.lock().unwrap().clone();
        for t in &live_now {
            assert_token_accepted(&gw, t, &format!("round {round}: an answered session")).await;
        }
        let ended_now = ended.lock().unwrap().clone();
        for t in &ended_now {
            assert_token_refused(&gw, t, &format!("round {round}: an answered sign-out")).await;
        }
        let bans = gw.cli(&["bans", "list"], None).await;
        assert!(
            bans.ok() && bans.stdout.contains("0 ban(s) in force"),
            "round {round}: a kill left a ban although no wrong password was typed: {}",
            bans.all()
        );
        eprintln!(
            "round {round}: {} enrolled, {} sessions, {} sign-outs checked",
            enrolled.lock().unwrap().len(),
            live_now.len(),
            ended_now.len()
        );
    }
    // No failure was left behind by the kills: of `max_retries` (3) tries, two wrong
    // passwords are still judged without a ban, and the right one then signs in. A kill
    // between counting an attempt and taking it back used to leave one, and this ban.
    for _ in 0..2 {
        let b = gw.browser();
        let url = b.url_on(APP, &api_path());
        assert_eq!(b.get_json(&url).await.status, 200);
        assert_eq!(
            b.post_json(&url, &json!({ "uid": "alice" })).await.status,
            200
        );
        let r = b
            .post_json(&url, &json!({ "password": "not-her-password" }))
            .await;
        assert_eq!(
            r.status,
            200,
            "a wrong password is judged: {}",
            r.describe()
        );
        assert!(
            !r.json()["errors"].as_array().unwrap().is_empty(),
            "{}",
            r.describe()
        );
    }
    let b = gw.browser();
    let url = b.url_on(APP, &api_path());
    assert_eq!(b.get_json(&url).await.status, 200);
    let r = b.post_json(&url, &json!({ "uid": "alice" })).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = b.post_json(&url, &json!({ "password": ALICE_PW })).await;
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_some(),
        "after the kills, two wrong passwords banned the address (a kill left a failure): {}",
        r.describe()
    );
    // The rounds checked something: answers of every kind came before the kills.
    for (what, list) in [
        ("enrolments", &enrolled),
        ("sessions", &live),
        ("sign-outs", &ended),
    ] {
        assert!(
            !list.lock().unwrap().is_empty(),
            "no {what} answered before a kill"
        );
    }
}

/// A tmpfs mounted over a directory for the length of a test (root only); unmounted lazily
/// on drop, even while the gateway still holds files in it.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn over(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap().path();
        let dest = to.join(e.file_name().unwrap());
        if e.is_dir() {
            copy_tree(&e, &dest);
        } else {
            std::fs::copy(&e, &dest).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_sign_ins_with_503_while_signed_in_requests_go_on() {
    let gw = Gateway::prepare(Setup::default()).await;
    let data = gw.db_path.parent().unwrap().to_path_buf();
    let aside = gw.dir.path().join("aside");
    copy_tree(&data, &aside);
    let Some(_disk) = Tmpfs::over(&data, "16m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root); see README, \"Database integrity and recovery\"");
        return;
    };
    copy_tree(&aside, &data);
    let gw = gw.launch().await;
    let (b, s) = alice_browser(&gw).await;

    // Fill the disk.
    let filler = data.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }

    let b2 = gw.browser();
    let url = b2.url_on(APP, &api_path());
    let mut statuses = Vec::new();
    let start = b2.get_json(&url).await;
    statuses.push(start.status);
    if start.status == 200 {
        let r = b2.post_json(&url, &json!({ "uid": "bob" })).await;
        statuses.push(r.status);
        if r.status == 200 {
            let r = b2.post_json(&url, &json!({ "password": BOB_PW })).await;
            statuses.push(r.status);
            assert!(
                r.set_cookie_value(SESSION_COOKIE).is_none(),
                "a session was handed out on a full disk: {}",
                r.describe()
            );
        }
    }
    assert_eq!(statuses.last(), Some(&503), "statuses {statuses:?}");
    // A page load writes nothing (issue 14 point 5), so it still shows where the sign-in
    // stands; what it can never do is answer with a server error of its own or a session.
    let body = b2.get_json(&url).await;
    assert!(
        body.status == 200 || body.status == 503,
        "{}",
        body.describe()
    );
    assert!(body.set_cookie_value(SESSION_COOKIE).is_none());
    assert!(
        gw.logs().contains("the database refuses writes"),
        "no clear log line:\n{}",
        gw.logs()
    );

    // Signed-in traffic goes on.
    for i in 0..20 {
        let r = b.get_json(&b.url_on(APP, &format!("/page/{i}"))).await;
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.echo().header("remote-user"), Some("alice"));
    }
    assert_token_accepted(&gw, &s.token, "on a full disk").await;
}
