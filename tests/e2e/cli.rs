//! The CLI: user management with and without a running gateway, the bootstrap admin,
//! hash-password; and that no password ever reaches the logs.

use crate::harness::*;
use serde_json::json;

/// The JSON sign-in must fail exactly like a wrong password.
async fn assert_cannot_sign_in(gw: &Gateway, uid: &str, pw: &str, what: &str) {
    let b = gw.browser();
    api_start(&b, APP, None).await;
    let r = b.post_json(&api_path(), &json!({ "uid": uid })).await;
    assert_eq!(r.json()["component"], "password", "{what}: {}", r.body);
    let r = b.post_json(&api_path(), &json!({ "password": pw })).await;
    assert_eq!(r.status, 200, "{what}: {}", r.describe());
    let v = r.json();
    assert_eq!(v["component"], "password", "{what}: {v}");
    assert_eq!(
        v["errors"],
        json!(["Invalid username or password."]),
        "{what}: {v}"
    );
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_none(),
        "{what}: a session was issued"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_add_without_gateway_writes_the_database_directly() {
    let gw = Gateway::prepare(Setup::default()).await;
    for (out, u) in gw.user_add_outputs.iter().zip(["alice", "bob"]) {
        assert!(
            out.stdout.contains(&format!("added user {u}")),
            "stdout: {}",
            out.stdout
        );
        assert!(
            out.stdout.contains("gateway not running"),
            "user add must say it wrote the db directly: {}",
            out.stdout
        );
        assert!(
            !out.all().contains(ALICE_PW) && !out.all().contains(BOB_PW),
            "{}",
            out.all()
        );
    }
    // Listing works offline too, and shows no hash.
    let out = gw.cli(&["user", "list"], None).await;
    assert!(out.ok(), "{}", out.all());
    assert!(
        out.stdout.contains("alice") && out.stdout.contains("bob"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("$argon2"),
        "user list shows a password hash"
    );
    // Adding the same user twice is an error.
    let out = add_user(&gw.config_path, &alice()).await;
    assert!(!out.ok(), "duplicate user add succeeded: {}", out.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_user_commands_work_while_gateway_runs() {
    let gw = Gateway::start().await;
    let carol = UserSpec::new(
        "carol",
        "Carol C",
        "carol@example.com",
        &["staff"],
        "Carol-pw-1357-long",
    );

    let out = add_user(&gw.config_path, &carol).await;
    assert!(out.ok(), "user add while running: {}", out.all());
    assert!(out.stdout.contains("added user carol"), "{}", out.stdout);
    assert!(
        out.stdout.contains("via running gateway"),
        "must say it went via the gateway: {}",
        out.stdout
    );

    let out = gw.cli(&["user", "list"], None).await;
    assert!(out.ok(), "user list while running: {}", out.all());
    for u in ["alice", "bob", "carol"] {
        assert!(
            out.stdout.contains(u),
            "user list lacks {u}: {}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("$argon2"));

    let out = gw.cli(&["user", "show", "carol"], None).await;
    assert!(out.ok(), "user show: {}", out.all());
    assert!(out.stdout.contains("carol@example.com"), "{}", out.stdout);
    assert!(out.stdout.contains("Carol C"), "{}", out.stdout);
    assert!(out.stdout.contains("staff"), "{}", out.stdout);
    assert!(
        !out.stdout.contains("$argon2"),
        "user show prints the hash: {}",
        out.stdout
    );

    // carol can sign in right away, and the upstream sees her.
    let b = gw.browser();
    api_sign_in(&b, "carol", &carol.password).await;
    let echo = b.get_json("/").await.echo();
    assert_eq!(echo.header("remote-user"), Some("carol"));
    assert_eq!(echo.header("remote-name"), Some("Carol C"));
    assert_eq!(echo.header("remote-groups"), Some("staff"));

    // Disabled: cannot sign in, the same answer as a wrong password.
    let out = gw.cli(&["user", "disable", "carol"], None).await;
    assert!(out.ok(), "user disable: {}", out.all());
    assert_cannot_sign_in(&gw, "carol", &carol.password, "disabled carol").await;

    // Enabled again: can.
    let out = gw.cli(&["user", "enable", "carol"], None).await;
    assert!(out.ok(), "user enable: {}", out.all());
    api_sign_in(&gw.browser(), "carol", &carol.password).await;

    // New password: the old one stops working.
    let out = gw
        .cli(&["user", "passwd", "carol"], Some("Carol-new-pw-2468\n"))
        .await;
    assert!(out.ok(), "user passwd: {}", out.all());
    assert_cannot_sign_in(&gw, "carol", &carol.password, "old password").await;
    api_sign_in(&gw.browser(), "carol", "Carol-new-pw-2468").await;

    // Removed: gone.
    let out = gw.cli(&["user", "remove", "carol"], None).await;
    assert!(out.ok(), "user remove: {}", out.all());
    let out = gw.cli(&["user", "list"], None).await;
    assert!(!out.stdout.contains("carol"), "{}", out.stdout);
    assert_cannot_sign_in(&gw, "carol", "Carol-new-pw-2468", "removed carol").await;

    // The gateway is still the only one holding the database and still serves.
    let r = gw.browser().get_json("/.portcullis/ping").await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_user_cannot_sign_in() {
    let gw = Gateway::prepare(Setup::default()).await;
    let out = gw.cli(&["user", "disable", "bob"], None).await;
    assert!(out.ok(), "user disable (offline): {}", out.all());
    let gw = gw.launch().await;
    assert_cannot_sign_in(&gw, "bob", BOB_PW, "disabled bob").await;
    // HTML face too.
    let b = gw.browser();
    let page = form_page(&b.get_html(&flow_path()).await);
    let page = next_page(&b, &submit(&b, &page, &[("uid", "bob")]).await).await;
    let r = submit(&b, &page, &[("password", BOB_PW)]).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.body.contains(INVALID_MSG), "{}", r.body);
    assert!(r.set_cookie_value(SESSION_COOKIE).is_none());
    // alice is unaffected.
    api_sign_in(&gw.browser(), "alice", ALICE_PW).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn first_start_without_users_creates_admin_with_logged_password() {
    let gw = Gateway::start_with(Setup {
        users: vec![],
        ..Setup::default()
    })
    .await;
    // The log line may come a moment after ping answers.
    let re = regex::Regex::new(r"password=([^\s\x22'\x1b,]+)").unwrap();
    let mut pw = None;
    for _ in 0..100 {
        if let Some(c) = re.captures(&gw.logs()) {
            pw = Some(c[1].to_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pw = pw.unwrap_or_else(|| panic!("no password=... in the log:\n{}", gw.logs()));
    assert!(pw.len() >= 12, "bootstrap password too short: {pw:?}");
    assert_eq!(
        gw.logs().matches(&pw).count(),
        1,
        "the admin password is logged more than once"
    );

    let b = gw.browser();
    api_sign_in(&b, "admin", &pw).await;
    assert_eq!(
        b.get_json("/").await.echo().header("remote-user"),
        Some("admin")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hash_password_prints_an_argon2id_phc_string() {
    let out = run_cli(
        vec!["hash-password".into()],
        Some("s3cret-hash-me\n".into()),
    )
    .await;
    assert!(out.ok(), "{}", out.all());
    let line = out.stdout.trim();
    assert!(line.starts_with("$argon2id$"), "{line}");
    assert!(
        !out.all().contains("s3cret-hash-me"),
        "the password is echoed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_never_contain_passwords_tokens_or_cookies() {
    let gw = Gateway::start().await;
    let carol_pw = "Carol-log-secret-9753";
    // JSON sign-in (success), a wrong password, a wrong password for an unknown user.
    let (b, s) = alice_browser(&gw).await;
    let wrong = gw.browser();
    api_start(&wrong, APP, None).await;
    wrong
        .post_json(&api_path(), &json!({ "uid": "alice" }))
        .await;
    wrong
        .post_json(&api_path(), &json!({ "password": WRONG_PW }))
        .await;
    let ghost = gw.browser();
    api_start(&ghost, APP, None).await;
    ghost
        .post_json(&api_path(), &json!({ "uid": "ghost" }))
        .await;
    ghost
        .post_json(&api_path(), &json!({ "password": "Ghost-pw-8642" }))
        .await;
    // HTML sign-in.
    let hb = gw.browser();
    let r = html_sign_in_from(&hb, &flow_path(), "bob", BOB_PW).await;
    let bob_token = r.set_cookie_value(SESSION_COOKIE).unwrap();
    // A user added through the running gateway.
    let out = add_user(
        &gw.config_path,
        &UserSpec::new("carol", "Carol C", "carol@example.com", &[], carol_pw),
    )
    .await;
    assert!(out.ok(), "{}", out.all());
    // Proxied requests and a logout.
    b.get_json("/x").await.echo();
    let flow_id = {
        let fb = gw.browser();
        api_start(&fb, APP, None).await;
        fb.cookie(&gw.url("/.portcullis/flow/"), FLOW_COOKIE)
            .unwrap()
    };
    b.post_json("/.portcullis/api/logout", &json!({})).await;

    // The log is being captured and has one line per sign-in success or failure, with the
    // user and the client address (waiting for them: a log writer may lag the answers).
    let has_line = |logs: &str, words: &[&str]| {
        logs.lines().any(|l| {
            words
                .iter()
                .all(|w| l.to_ascii_lowercase().contains(&w.to_ascii_lowercase()))
        })
    };
    let expected: [&[&str]; 4] = [
        &["alice", "127.0.0.1", "succe"],
        &["bob", "127.0.0.1", "succe"],
        &["alice", "127.0.0.1", "fail"],
        &["ghost", "127.0.0.1", "fail"],
    ];
    poll_until(std::time::Duration::from_secs(10), || {
        let logs = gw.logs();
        expected.iter().all(|words| has_line(&logs, words))
    })
    .await;
    let logs = gw.logs();
    let line_with = |words: &[&str]| has_line(&logs, words);
    assert!(
        line_with(&["alice", "127.0.0.1", "succe"]),
        "no success line for alice:\n{logs}"
    );
    assert!(
        line_with(&["bob", "127.0.0.1", "succe"]),
        "no success line for bob (HTML):\n{logs}"
    );
    assert!(
        line_with(&["alice", "127.0.0.1", "fail"]),
        "no failure line for alice:\n{logs}"
    );
    assert!(
        line_with(&["ghost", "127.0.0.1", "fail"]),
        "no failure line for an unknown user:\n{logs}"
    );
    for secret in [ALICE_PW, BOB_PW, WRONG_PW, "Ghost-pw-8642", carol_pw] {
        assert!(
            !logs.contains(secret),
            "a password appears in the log:\n{logs}"
        );
    }
    for (what, secret) in [
        ("alice's session token", s.token.as_str()),
        ("bob's session token", bob_token.as_str()),
        ("a flow execution id", flow_id.as_str()),
    ] {
        assert!(!logs.contains(secret), "{what} appears in the log:\n{logs}");
        // Not even its signature part.
        if let Some((_, sig)) = secret.rsplit_once('.') {
            assert!(!logs.contains(sig), "{what}'s signature appears in the log");
        }
    }
    let keys = gw.keys();
    let secret_b64 = keys.raw["keys"][0]["secret"].as_str().unwrap().to_string();
    assert!(
        !logs.contains(&secret_b64),
        "the signing key appears in the log"
    );
}

/// Runs the binary in `cwd` with `args`, `stdin` written to it.
fn run_in(cwd: &std::path::Path, args: &[&str], stdin: Option<&str>) -> CliOut {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    if let Some(input) = stdin {
        let mut si = child.stdin.take().unwrap();
        let _ = si.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().expect("wait for portcullis");
    CliOut {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every file and folder under `dir`, relative to it.
fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A config in `<root>/conf/` whose database is `../state/portcullis.db`, i.e. `<root>/state`.
fn relative_config(root: &std::path::Path) -> std::path::PathBuf {
    let conf_dir = root.join("conf");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let text = config_toml(
        reserved_port(),
        "127.0.0.1:9".parse().unwrap(),
        reserved_port(),
        std::path::Path::new("../state/portcullis.db"),
        &Setup::default(),
    );
    let path = conf_dir.join("portcullis.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn relative_paths_in_the_config_are_read_from_its_folder_whatever_the_working_directory() {
    tokio::task::spawn_blocking(|| {
        let root = tempfile::tempdir().unwrap();
        let root_path = std::fs::canonicalize(root.path()).unwrap();
        relative_config(&root_path);
        let elsewhere = root_path.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let db = root_path.join("state").join("portcullis.db");

        // A relative --config, from a folder that is neither the config's nor the database's.
        let out = run_in(
            &elsewhere,
            &[
                "--config",
                "../conf/portcullis.toml",
                "user",
                "add",
                "alice",
            ],
            Some(&format!("{ALICE_PW}\n")),
        );
        assert!(out.ok(), "{}", out.all());
        assert!(
            db.is_dir(),
            "the database is not beside the config: {:?}",
            tree(&root_path)
        );
        assert!(
            out.stdout.contains(&db.display().to_string()),
            "the absolute database path is not printed: {}",
            out.stdout
        );
        assert!(out.stdout.contains("created"), "{}", out.stdout);
        assert_eq!(
            tree(&elsewhere),
            Vec::<String>::new(),
            "something was created in the working directory"
        );

        // From the config's own folder, and from the root, the same database answers.
        for (cwd, config) in [
            (root_path.join("conf"), "portcullis.toml"),
            (root_path.clone(), "conf/portcullis.toml"),
        ] {
            let out = run_in(&cwd, &["--config", config, "user", "list"], None);
            assert!(out.ok(), "from {}: {}", cwd.display(), out.all());
            assert!(out.stdout.contains("alice"), "{}", out.stdout);
            assert!(
                out.stdout.contains(&format!("read {}", db.display())),
                "user list must say which database it read: {}",
                out.stdout
            );
            assert!(
                !out.stdout.contains("wrote"),
                "a read-only command says it wrote: {}",
                out.stdout
            );
        }

        // check-config names the database too.
        let out = run_in(
            &elsewhere,
            &["--config", "../conf/portcullis.toml", "check-config"],
            None,
        );
        assert!(out.ok(), "{}", out.all());
        assert!(
            out.stdout.contains(&db.display().to_string()),
            "{}",
            out.stdout
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_on_a_missing_database_refuse_say_where_they_looked_and_create_nothing() {
    tokio::task::spawn_blocking(|| {
        let root = tempfile::tempdir().unwrap();
        let root_path = std::fs::canonicalize(root.path()).unwrap();
        relative_config(&root_path);
        let db = root_path.join("state").join("portcullis.db");
        let before = tree(&root_path);
        let cases: &[(&[&str], Option<&str>, &std::path::Path)] = &[
            (&["user", "list"], None, &db),
            (&["user", "show", "alice"], None, &db),
            (&["user", "disable", "alice"], None, &db),
            (&["user", "enable", "alice"], None, &db),
            (&["user", "remove", "alice"], None, &db),
            (
                &["user", "passwd", "alice"],
                Some("Alice-new-pw-5555\n"),
                &db,
            ),
            // The keys live in the database: without one there is nothing to rotate.
            (&["keys", "rotate"], None, &db),
        ];
        for (args, stdin, looked) in cases {
            let mut all = vec!["--config", "conf/portcullis.toml"];
            all.extend_from_slice(args);
            let out = run_in(&root_path, &all, *stdin);
            assert!(
                !out.ok(),
                "{args:?} succeeded without a database: {}",
                out.all()
            );
            assert!(
                out.stderr.contains(&looked.display().to_string()),
                "{args:?} does not say where it looked ({}): {}",
                looked.display(),
                out.stderr
            );
            assert!(
                !out.all().contains("wrote"),
                "{args:?} says it wrote: {}",
                out.all()
            );
            assert_eq!(tree(&root_path), before, "{args:?} created files");
        }
        // A `user add` refused for its password creates no database either.
        let out = run_in(
            &root_path,
            &["--config", "conf/portcullis.toml", "user", "add", "alice"],
            Some("short\n"),
        );
        assert!(!out.ok(), "{}", out.all());
        assert!(out.stderr.contains("min_length"), "{}", out.stderr);
        assert_eq!(tree(&root_path), before, "a refused user add created files");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn usernames_are_one_account_whatever_their_case_width_or_composition() {
    let emilie = UserSpec::new(
        "Émilie",
        "Émilie É",
        "emilie@example.com",
        &["staff"],
        "Emilie-pw-2468-long",
    );
    let gw = Gateway::prepare(Setup {
        users: vec![alice(), bob(), emilie.clone()],
        ..Setup::default()
    })
    .await;
    assert!(
        gw.user_add_outputs[2].stdout.contains("added user émilie"),
        "the account is stored under its canonical name: {}",
        gw.user_add_outputs[2].stdout
    );
    // Another spelling of an existing name is the same account.
    for taken in ["Alice", "ALICE", "ａｌｉｃｅ", "émilie", "E\u{301}MILIE"] {
        let mut u = alice();
        u.username = taken.into();
        u.email = format!("other-{}@example.com", taken.len());
        let out = add_user(&gw.config_path, &u).await;
        assert!(
            !out.ok(),
            "`user add {taken}` made a second account: {}",
            out.all()
        );
        assert!(
            out.stderr.contains("already exists"),
            "{taken}: {}",
            out.stderr
        );
    }
    // Every user command takes any spelling.
    let out = gw.cli(&["user", "show", "ALICE"], None).await;
    assert!(out.ok(), "{}", out.all());
    assert!(out.stdout.starts_with("alice\t"), "{}", out.stdout);
    let out = gw.cli(&["user", "show", "ÉMILIE"], None).await;
    assert!(out.ok(), "{}", out.all());
    assert!(out.stdout.contains("Émilie É"), "{}", out.stdout);

    let gw = gw.launch().await;
    for (typed, pw, user) in [
        ("ALICE", ALICE_PW, "alice"),
        ("Alice", ALICE_PW, "alice"),
        ("ａｌｉｃｅ", ALICE_PW, "alice"),
        ("émilie", emilie.password.as_str(), "émilie"),
        ("ÉMILIE", emilie.password.as_str(), "émilie"),
        ("E\u{301}milie", emilie.password.as_str(), "émilie"),
    ] {
        let b = gw.browser();
        api_sign_in(&b, typed, pw).await;
        let echo = b.get_json("/").await.echo();
        assert_eq!(
            echo.header("remote-user"),
            Some(user),
            "signed in as {typed:?}"
        );
    }
    // HTML sign-in with a Unicode name, end to end.
    let b = gw.browser();
    let r = html_sign_in_from(&b, &flow_path(), "Émilie", &emilie.password).await;
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_some(),
        "{}",
        r.describe()
    );
    let echo = b.get_json("/").await.echo();
    assert_eq!(echo.header("remote-name"), Some("Émilie É"));

    // Disabling by another spelling disables the account and ends its sessions.
    let out = gw.cli(&["user", "disable", "ALICE"], None).await;
    assert!(out.ok(), "{}", out.all());
    assert!(out.stdout.contains("disabled user alice"), "{}", out.stdout);
    assert_cannot_sign_in(&gw, "alice", ALICE_PW, "alice disabled as ALICE").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn names_groups_and_passwords_that_break_the_rules_are_refused_naming_the_rule() {
    let gw = Gateway::prepare(Setup {
        users: vec![alice()],
        extra_toml: "\n[password]\nmin_length = 12\n".into(),
        ..Setup::default()
    })
    .await;
    let ok_pw = "Twelve-chars";
    let cases: &[(&str, &[&str], &str, &[&str])] = &[
        // (username, groups, password, what stderr must say)
        ("carol", &["a,b"], ok_pw, &["a,b", "comma"]),
        ("carol", &["ops\nadmins"], ok_pw, &["control"]),
        ("carol", &[" ops"], ok_pw, &["space"]),
        ("carol", &[""], ok_pw, &["empty"]),
        ("carol", &["ops"], "Eleven-char", &["min_length", "12"]),
        ("carol", &["ops"], &"x".repeat(65), &["max_length", "64"]),
        ("carol", &["ops"], "Tab\there-long-enough", &["control"]),
        ("car ol", &["ops"], ok_pw, &["not a valid username"]),
        ("carol,bob", &["ops"], ok_pw, &["not a valid username"]),
        ("carol☃", &["ops"], ok_pw, &["not a valid username"]),
    ];
    for (username, groups, password, must_say) in cases {
        let u = UserSpec::new(username, "Carol C", "carol@example.com", groups, password);
        let out = add_user(&gw.config_path, &u).await;
        assert!(!out.ok(), "accepted {username:?} {groups:?}: {}", out.all());
        for needle in *must_say {
            assert!(
                out.stderr.contains(needle),
                "{username:?} {groups:?}: the refusal does not say {needle:?}: {}",
                out.stderr
            );
        }
        assert!(!out.all().contains(password), "the password is echoed");
    }
    let out = gw.cli(&["user", "list"], None).await;
    assert!(!out.stdout.contains("carol"), "{}", out.stdout);
    // Twelve characters of any script pass; so does a passphrase of 64.
    let u = UserSpec::new(
        "carol",
        "Carol C",
        "carol@example.com",
        &["ops"],
        "Pässwörter-12",
    );
    let out = add_user(&gw.config_path, &u).await;
    assert!(out.ok(), "{}", out.all());

    // `user passwd` follows the same policy, and a refused change changes nothing.
    let out = gw
        .cli(&["user", "passwd", "alice"], Some("short-pw\n"))
        .await;
    assert!(!out.ok(), "{}", out.all());
    assert!(out.stderr.contains("min_length"), "{}", out.stderr);
    let out = gw
        .cli(
            &["user", "passwd", "alice"],
            Some(&format!("{}\n", "p".repeat(64))),
        )
        .await;
    assert!(out.ok(), "64 characters must be allowed: {}", out.all());
}

/// Devices of every class, as the setup stages store them, written straight into the database
/// before the gateway first starts.
fn put_devices(db: &std::path::Path) {
    use portcullis::store::{Device, DeviceClass, SledStore, Store};
    let store = SledStore::open(db).expect("open the database");
    let device = |id: &str, user: &str, class, name: &str, address: &str, secret| Device {
        id: id.into(),
        username: user.into(),
        class,
        name: name.into(),
        address: address.into(),
        address_hash: None,
        stage: "setup".into(),
        created: 1_764_600_000,
        last_used: if id == "dev-totp" {
            Some(1_764_603_600)
        } else {
            None
        },
        secret,
    };
    for d in [
        device(
            "dev-email",
            "alice",
            DeviceClass::Email,
            "Email",
            "alice@example.com",
            None,
        ),
        device(
            "dev-sms",
            "alice",
            DeviceClass::Sms,
            "Work phone",
            "+41791234589",
            None,
        ),
        device(
            "dev-totp",
            "alice",
            DeviceClass::Totp,
            "Authenticator app",
            "",
            Some("SEALED-TOTP-SECRET-XYZ".into()),
        ),
        device(
            "dev-static",
            "alice",
            DeviceClass::Static,
            "Recovery codes",
            "",
            Some("RECOVERY-HASHES-XYZ".into()),
        ),
        device(
            "dev-bob",
            "bob",
            DeviceClass::Webauthn,
            "Bob's key",
            "",
            Some("CRED-XYZ".into()),
        ),
    ] {
        store.put_device(&d).expect("put device");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn user_devices_lists_and_device_remove_removes_only_that_users_devices() {
    // A first start creates the device key, as in a real deployment: a TOTP device sealed
    // without one would (rightly) stop the gateway from starting.
    let mut gw = Gateway::prepare(Setup::default()).await.launch().await;
    gw.stop().await;
    put_devices(&gw.db_path);
    for running in [false, true] {
        if running {
            gw = gw.launch().await;
        }
        let how = if running {
            "via running gateway"
        } else {
            "gateway not running"
        };
        let out = gw.cli(&["user", "devices", "Alice"], None).await;
        assert!(out.ok(), "{}", out.all());
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert!(
            lines[0].starts_with("ID")
                && lines[0].contains("CLASS")
                && lines[0].contains("LAST USED"),
            "{}",
            out.stdout
        );
        // The first round removes the SMS device (offline), the second runs after that.
        let (sms, count): (&[&str], _) = if running {
            (&[], "3 device(s) of alice")
        } else {
            (
                &["dev-sms", "Work phone", "+41*******89"],
                "4 device(s) of alice",
            )
        };
        for want in [
            "dev-email",
            "dev-totp",
            "dev-static",
            "Authenticator app",
            "al***@example.com",
            "2025-12-01 14:40",
            "2025-12-01 15:40",
            "never",
            count,
            how,
        ]
        .iter()
        .chain(sms)
        {
            assert!(out.stdout.contains(want), "{want} missing:\n{}", out.stdout);
        }
        let totp = lines
            .iter()
            .find(|l| l.starts_with("dev-totp"))
            .expect("totp row");
        assert!(totp.contains("totp"), "{totp}");
        for hidden in [
            "SEALED",
            "RECOVERY-HASHES",
            "alice@example.com",
            "+41791234589",
            "dev-bob",
        ] {
            assert!(
                !out.stdout.contains(hidden),
                "{hidden} shown:\n{}",
                out.stdout
            );
        }

        // bob's device is not alice's to remove: refused, non-zero, nothing removed.
        let out = gw
            .cli(&["user", "device-remove", "alice", "dev-bob"], None)
            .await;
        assert!(!out.ok(), "{}", out.all());
        assert!(
            out.stderr.contains("alice has no device with id `dev-bob`"),
            "{}",
            out.all()
        );
        let out = gw.cli(&["user", "devices", "bob"], None).await;
        assert!(out.stdout.contains("dev-bob"), "{}", out.all());
        let out = gw.cli(&["user", "devices", "nobody"], None).await;
        assert!(
            !out.ok() && out.stderr.contains("no user named `nobody`"),
            "{}",
            out.all()
        );

        let id = if running { "dev-static" } else { "dev-sms" };
        let session = if running {
            Some(alice_browser(&gw).await.1)
        } else {
            None
        };
        let out = gw.cli(&["user", "device-remove", "alice", id], None).await;
        assert!(out.ok(), "{}", out.all());
        assert!(
            out.stdout.contains(&format!(
                "removed device {id} of alice; their sessions were ended"
            )),
            "{}",
            out.stdout
        );
        // As on the settings page: the sessions a lost device may have opened end with it.
        if let Some(s) = session {
            assert_token_refused(&gw, &s.token, "a session after its device was removed").await;
        }
        let out = gw.cli(&["user", "devices", "alice"], None).await;
        assert!(
            !out.stdout.contains(id),
            "{id} still listed:\n{}",
            out.stdout
        );
        let out = gw.cli(&["user", "device-remove", "alice", id], None).await;
        assert!(!out.ok(), "removed twice: {}", out.all());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_list_shows_the_stored_sign_in_failure_and_success_after_the_gateway_stops() {
    let mut gw = Gateway::prepare(Setup::default()).await.launch().await;
    assert_cannot_sign_in(&gw, "alice", "not-alices-password", "wrong password").await;
    api_sign_in(&gw.browser(), "alice", ALICE_PW).await;

    // sled is held by the running gateway: the command says so and what to do instead.
    let held = gw.cli(&["audit", "list"], None).await;
    assert_eq!(held.code, Some(1), "{}", held.all());
    assert!(
        held.stderr.contains("held by a running gateway") && held.stderr.contains("audit_file"),
        "{}",
        held.all()
    );

    gw.stop().await;
    let out = gw.cli(&["audit", "list", "--since", "1h"], None).await;
    assert!(out.ok(), "audit list: {}", out.all());
    let records: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .filter(|v: &serde_json::Value| v["user"] == "alice")
        .collect();
    let actions: Vec<&str> = records
        .iter()
        .map(|v| v["action"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        actions,
        ["sign_in_failure", "sign_in_success"],
        "{}",
        out.stdout
    );
    assert_eq!(records[0]["outcome"], "failure");
    assert!(
        !out.stdout.contains("not-alices-password") && !out.stdout.contains(ALICE_PW),
        "no password in the records: {}",
        out.stdout
    );

    // The limit keeps the oldest; a bad span is refused, naming the option.
    let one = gw.cli(&["audit", "list", "--limit", "1"], None).await;
    assert!(one.ok(), "{}", one.all());
    assert_eq!(one.stdout.lines().count(), 1, "{}", one.all());
    assert!(one.stdout.contains("sign_in_failure"), "{}", one.all());
    assert!(one.stderr.contains("--limit"), "{}", one.all());
    let bad = gw
        .cli(&["audit", "list", "--since", "yesterday"], None)
        .await;
    assert_eq!(bad.code, Some(1), "{}", bad.all());
    assert!(bad.stderr.contains("--since"), "{}", bad.all());
}
