//! Hot reload: `SIGHUP` and `portcullis reload` put a changed config in force without a
//! restart, refuse a broken one while the running one keeps serving, let sign-ins in flight
//! finish (or end clearly when their flow changed), and swap TLS certificates.

use crate::harness::*;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

/// An app on `extra.test` with a bypass rule and a deny rule.
const EXTRA: &str = r#"
[[apps]]
name = "extra"
hosts = ["extra.test"]
upstream = "{upstream}"
flow = "default-authentication"
default_policy = "one_factor"

[[apps.rules]]
resources = ["^/open/"]
policy = "bypass"

[[apps.rules]]
resources = ["^/closed"]
policy = "deny"
"#;

/// Writes the standard config with `setup`'s changes over the running gateway's file.
fn rewrite(gw: &Gateway, setup: Setup) {
    let text = config_toml(gw.port, gw.upstream.addr, gw.down_port, &gw.db_path, &setup);
    std::fs::write(&gw.config_path, text).expect("write the config");
}

/// The standard setup plus the `extra.test` app.
fn with_extra(gw: &Gateway) -> Setup {
    Setup {
        extra_toml: EXTRA.replace("{upstream}", &gw.upstream.addr.to_string()),
        ..gw.setup.clone()
    }
}

/// Sends `SIGHUP` and waits for the log line that says how the reload went.
async fn sighup(gw: &Gateway) -> String {
    let before = reloads(&gw.logs());
    let pid = gw.pid().expect("running");
    let status = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let done = poll_until(Duration::from_secs(20), || reloads(&gw.logs()) > before).await;
    assert!(done, "no reload logged:\n{}", gw.logs());
    gw.logs()
}

/// How many reloads the log reports, done or refused.
fn reloads(logs: &str) -> usize {
    logs.matches("configuration reloaded").count()
        + logs.matches("configuration reload refused").count()
}

async fn get(b: &Browser, host: &str, path: &str) -> Resp {
    b.send(
        b.http
            .get(b.url_on(host, path))
            .header("accept", "application/json"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_and_a_rule_added_then_sighup_route_the_new_app() {
    let mut gw = Gateway::start().await;
    let b = gw.browser();
    assert_eq!(
        get(&b, EXTRA_APP, "/open/x").await.status,
        404,
        "unknown before"
    );

    rewrite(&gw, with_extra(&gw));
    let logs = sighup(&gw).await;
    assert!(logs.contains("configuration reloaded"), "{logs}");
    assert!(gw.is_running(), "SIGHUP must not end the gateway");

    let r = get(&b, EXTRA_APP, "/open/x").await;
    assert_eq!(r.status, 200, "the new app's bypass rule: {}", r.describe());
    assert_eq!(r.echo().path, "/open/x");
    let r = get(&b, EXTRA_APP, "/closed").await;
    assert_eq!(r.status, 403, "the new app's deny rule: {}", r.describe());
    let r = get(&b, EXTRA_APP, "/other").await;
    assert_eq!(r.status, 401, "the new app's default: {}", r.describe());
    // The old apps still route, and the reload is an audit event.
    assert_eq!(get(&b, APP, "/public/p").await.status, 200);
    assert!(
        logs.lines()
            .any(|l| l.contains("config_reload") && l.contains("done")),
        "audit line: {logs}"
    );
    // Removing it again takes it away.
    rewrite(&gw, gw.setup.clone());
    sighup(&gw).await;
    assert_eq!(get(&b, EXTRA_APP, "/open/x").await.status, 404);
}

/// Broken configs: each is refused by `SIGHUP` and by `portcullis reload`, naming the key;
/// the running config keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_config_is_refused_and_the_running_one_keeps_serving() {
    let mut gw = Gateway::start().await;
    let b = gw.browser();
    let broken = [
        (
            "[[apps]]\nname = \"bad\"\nhosts = [\"extra.test\"]\nupstream = \"127.0.0.1:1\"\nflow = \"nowhere\"\n",
            "apps[3].flow",
        ),
        // A weak setup is refused on reload as at start.
        ("[passwords]\nmemory_kib = 1024\n", "passwords.memory_kib"),
        ("[stages.mail]\nkind = \"authenticator_email\"\ntoken_expiry = \"1h\"\n", "stages.mail.token_expiry"),
        ("this is not toml", "portcullis.toml"),
    ];
    for (extra, key) in broken {
        rewrite(
            &gw,
            Setup {
                extra_toml: extra.into(),
                ..with_extra(&gw)
            },
        );
        let logs = sighup(&gw).await;
        let refusal = logs
            .lines()
            .rfind(|l| l.contains("configuration reload refused"))
            .unwrap_or_else(|| panic!("{key}: not refused:\n{logs}"));
        assert!(refusal.contains(key), "{key} not named: {refusal}");
        assert!(gw.is_running());
        // Still the running config: app.test serves, extra.test is unknown.
        assert_eq!(get(&b, APP, "/public/p").await.status, 200, "{key}");
        assert_eq!(get(&b, EXTRA_APP, "/open/x").await.status, 404, "{key}");

        let out = gw.cli(&["reload"], None).await;
        assert_eq!(out.code, Some(2), "{key}: {}", out.all());
        assert!(out.stderr.contains(key), "{key} not named: {}", out.all());
    }
    // Fixed, it goes through, also by the command.
    rewrite(&gw, with_extra(&gw));
    let out = gw.cli(&["reload"], None).await;
    assert!(out.ok(), "{}", out.all());
    assert!(out.stdout.contains("reloaded"), "{}", out.all());
    assert_eq!(get(&b, EXTRA_APP, "/open/x").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_that_need_a_restart_are_named_and_the_rest_applies() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let mut setup = with_extra(&gw);
    setup.server_toml = "threads = 3".into();
    setup.flow_lifetime = "10m".into();
    rewrite(&gw, setup);
    let out = gw.cli(&["reload"], None).await;
    assert!(out.ok(), "{}", out.all());
    for key in ["server.threads", "session"] {
        assert!(out.stdout.contains(key), "{key} not named: {}", out.all());
    }
    assert!(out.stdout.contains("need a restart"), "{}", out.all());
    assert_eq!(
        get(&b, EXTRA_APP, "/open/x").await.status,
        200,
        "the rest applies"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_started_before_a_reload_finishes_after_it() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    api_start(&b, APP, None).await;
    let url = b.url_on(APP, &api_path());
    let r = b.post_json(&url, &json!({ "uid": "alice" })).await;
    assert_eq!(r.json()["component"], "password", "{}", r.describe());

    rewrite(&gw, with_extra(&gw));
    let out = gw.cli(&["reload"], None).await;
    assert!(out.ok(), "{}", out.all());

    let r = b.post_json(&url, &json!({ "password": ALICE_PW })).await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.describe());
    let token = r.set_cookie_value(SESSION_COOKIE).expect("a session");
    // And the session works on the app the reload added.
    let r = b
        .send(
            b.http
                .get(b.url_on(EXTRA_APP, "/other"))
                .header("accept", "application/json")
                .header("cookie", format!("{SESSION_COOKIE}={token}")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
}

/// A sign-in whose flow a reload changed (a stage added, so the index it is at names another
/// stage) or removed ends with a page saying to start again, never a 500 or a skipped stage.
#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_whose_flow_changed_or_went_away_is_told_to_start_again() {
    let gw = Gateway::start().await;
    // Changed: the administrator closes sign-ins with a deny stage first. The execution
    // waiting at the password (index 1) would find the password at index 1 again, its state
    // matching, and complete without the deny stage ever running.
    let reordered = Setup {
        extra_toml: String::new(),
        ..gw.setup.clone()
    };
    let reordered_text = config_toml(
        gw.port,
        gw.upstream.addr,
        gw.down_port,
        &gw.db_path,
        &reordered,
    )
    .replace(
        "stages = [\"identify\", \"password\", \"login\"]",
        "stages = [\"nope\", \"password\", \"login\"]",
    );
    // Removed: every app now signs in through another flow.
    let removed_text = config_toml(
        gw.port,
        gw.upstream.addr,
        gw.down_port,
        &gw.db_path,
        &gw.setup,
    )
    .replace("\"default-authentication\"", "\"renamed\"");
    for (what, text) in [("changed", reordered_text), ("removed", removed_text)] {
        let b = gw.browser();
        api_start(&b, APP, None).await;
        let url = b.url_on(APP, &api_path());
        let r = b.post_json(&url, &json!({ "uid": "alice" })).await;
        assert_eq!(
            r.json()["component"],
            "password",
            "{what}: {}",
            r.describe()
        );
        std::fs::write(&gw.config_path, &text).unwrap();
        let out = gw.cli(&["reload"], None).await;
        assert!(out.ok(), "{what}: {}", out.all());
        let r = b.post_json(&url, &json!({ "password": ALICE_PW })).await;
        assert!(r.status < 500, "{what}: {}", r.describe());
        assert!(
            r.set_cookie_value(SESSION_COOKIE).is_none(),
            "{what}: signed in past a changed flow: {}",
            r.describe()
        );
        assert!(
            r.body.contains("Start again") || r.body.contains("start again"),
            "{what}: {}",
            r.describe()
        );
        if what == "changed" {
            assert!(r.body.contains("changed"), "{}", r.describe());
        }
        // The page a browser gets says so too.
        let r = b.get_html(&b.url_on(APP, &flow_path())).await;
        assert!(r.status < 500, "{what}: {}", r.describe());
        if what == "removed" {
            assert_eq!(r.status, 404, "{}", r.describe());
            assert!(r.body.contains("Start again"), "{}", r.describe());
        }
        // Back to the standard config for the next case.
        rewrite(&gw, gw.setup.clone());
        assert!(gw.cli(&["reload"], None).await.ok());
    }
}

/// A self-signed certificate for `localhost`, written as `<name>.pem` and `<name>.key`.
fn certificate(dir: &std::path::Path, name: &str) -> (String, reqwest::Certificate) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), c.cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), c.key_pair.serialize_pem()).unwrap();
    (
        c.cert.pem(),
        reqwest::Certificate::from_pem(c.cert.pem().as_bytes()).unwrap(),
    )
}

/// Whether a client trusting only `root` completes a request over TLS to the gateway.
async fn trusted_by(root: &reqwest::Certificate, addr: SocketAddr) -> bool {
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root.clone())
        .resolve("localhost", addr)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/.portcullis/ping", addr.port());
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_swapped_on_disk_is_served_after_reload() {
    let certs = tempfile::tempdir().unwrap();
    let (_, first) = certificate(certs.path(), "first");
    let (second_pem, second) = certificate(certs.path(), "second");
    let live = certs.path().join("live.pem");
    let live_key = certs.path().join("live.key");
    std::fs::copy(certs.path().join("first.pem"), &live).unwrap();
    std::fs::copy(certs.path().join("first.key"), &live_key).unwrap();
    let tls = Listener::bind();
    let addr = tls.addr();
    let gw = Gateway::start_with(Setup {
        server_toml: format!(
            "tls_listen = [\"{addr}\"]\n[[server.certificates]]\ncert = {}\nkey = {}\n",
            toml_str(&live.display().to_string()),
            toml_str(&live_key.display().to_string()),
        ),
        listeners: vec![tls],
        ..Setup::default()
    })
    .await;
    assert!(trusted_by(&first, addr).await, "the first certificate");
    assert!(!trusted_by(&second, addr).await);

    // Half swapped (the new certificate, the old key): refused through the command, naming
    // the key file, and the first certificate is still served.
    std::fs::write(&live, &second_pem).unwrap();
    let out = gw.cli(&["reload"], None).await;
    assert_eq!(out.code, Some(2), "{}", out.all());
    assert!(out.stderr.contains("live.key"), "{}", out.all());
    assert!(
        trusted_by(&first, addr).await,
        "still the first after a refusal"
    );

    std::fs::copy(certs.path().join("second.key"), &live_key).unwrap();
    let logs = sighup(&gw).await;
    let last = logs
        .lines()
        .rfind(|l| l.contains("configuration reload"))
        .unwrap_or_default();
    assert!(last.contains("configuration reloaded"), "{logs}");
    assert!(
        trusted_by(&second, addr).await,
        "the second certificate after reload"
    );
    assert!(!trusted_by(&first, addr).await);
}
