//! Every absolute URL the gateway hands out comes from configuration (`[server] auth_url`, each
//! app's hosts with its `scheme` and `port`), never from the request's `Host` header: the
//! sign-in redirect and its return address, the return address after sign-in, and the
//! redirect to HTTPS. A Host with another port (or case) on one of our hosts gets links built
//! from config; a Host that is not ours gets no link at all.

use crate::harness::*;
use serde_json::json;

/// Host headers a client (or an attacker) may send for app.test; all must give the same links.
const APP_HOSTS: &[&str] = &["app.test", "app.test:8666", "APP.Test:1", "app.test:80"];

/// GET `path` on the gateway with this exact `Host` header.
async fn get_with_host(b: &Browser, host: &str, path: &str, accept: &str) -> Resp {
    b.send(
        b.http
            .get(b.url(path))
            .header("host", host)
            .header("accept", accept),
    )
    .await
}

fn rd_of(location: &str) -> String {
    let u = url::Url::parse(&format!("http://base.invalid{location}"))
        .or_else(|_| url::Url::parse(location))
        .unwrap_or_else(|e| panic!("Location {location:?}: {e}"));
    u.query_pairs()
        .find(|(k, _)| k == "rd")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no rd in {location}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_redirect_is_built_from_config_whatever_host_port_the_request_carried() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let expected_rd = format!("http://app.test:{}/reports?q=1", gw.port);
    for host in APP_HOSTS {
        let r = get_with_host(&b, host, "/reports?q=1", ACCEPT_HTML).await;
        assert_eq!(r.status, 302, "Host {host}: {}", r.describe());
        let loc = r.location();
        assert!(
            loc.starts_with(&format!("/.portcullis/flow/{FLOW}?rd=")),
            "Host {host}: sign-in on the app's own host: {loc}"
        );
        assert_eq!(rd_of(&loc), expected_rd, "Host {host}");
        // An API call gets the same URL in its 401.
        let r = get_with_host(&b, host, "/reports?q=1", "application/json").await;
        assert_eq!(r.status, 401, "Host {host}: {}", r.describe());
        assert_eq!(rd_of(r.json()["login"].as_str().unwrap()), expected_rd);
    }
    // A host that is not ours shapes no link.
    for host in [
        "evil.example",
        "evil.example:8666",
        "unknown.test:9000",
        "app.test.",
        "app.test.evil.example",
        "evil.app.test",
    ] {
        let r = get_with_host(&b, host, "/reports", ACCEPT_HTML).await;
        assert_eq!(r.status, 404, "Host {host}: {}", r.describe());
        assert!(
            r.header("location").is_none(),
            "Host {host}: {}",
            r.describe()
        );
    }
    // A Host that only looks like ours is refused before anything is built from it.
    for host in [
        "app.test:1@evil.example",
        "evil.example#app.test",
        "app.test:99999",
    ] {
        let r = get_with_host(&b, host, "/reports", ACCEPT_HTML).await;
        assert_eq!(r.status, 400, "Host {host}: {}", r.describe());
        assert!(
            r.header("location").is_none(),
            "Host {host}: {}",
            r.describe()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_auth_url_and_an_app_port_the_sign_in_url_is_exactly_what_config_says() {
    let gw = Gateway::start_with(Setup {
        server_toml: "auth_url = \"https://auth.test:8443\"".into(),
        app_toml: "scheme = \"https\"\nport = 9443".into(),
        ..Setup::default()
    })
    .await;
    let b = gw.browser();
    for host in APP_HOSTS {
        let r = get_with_host(&b, host, "/x?y=1", ACCEPT_HTML).await;
        assert_eq!(r.status, 302, "Host {host}: {}", r.describe());
        let loc = r.location();
        assert!(
            loc.starts_with(&format!(
                "https://auth.test:8443/.portcullis/flow/{FLOW}?rd="
            )),
            "Host {host}: {loc}"
        );
        assert_eq!(rd_of(&loc), "https://app.test:9443/x?y=1", "Host {host}");
    }
    // admin.test has no scheme/port of its own: the auth_url's (https, 8443).
    let r = get_with_host(&b, "admin.test:1234", "/", ACCEPT_HTML).await;
    assert_eq!(rd_of(&r.location()), "https://admin.test:8443/");
}

/// Signs alice in through the JSON API, every request carrying `Host: host`; returns the
/// flow's final `to`.
async fn sign_in_with_host(b: &Browser, host: &str, rd: Option<&str>) -> String {
    let send = |rb: reqwest::RequestBuilder| {
        b.send(rb.header("host", host).header("accept", "application/json"))
    };
    let r = send(b.http.get(b.url(&api_path_rd(rd)))).await;
    assert_eq!(r.json()["component"], "identification", "{}", r.describe());
    let r = send(
        b.http
            .post(b.url(&api_path()))
            .json(&json!({"uid": "alice"})),
    )
    .await;
    assert_eq!(r.json()["component"], "password", "{}", r.describe());
    let r = send(
        b.http
            .post(b.url(&api_path()))
            .json(&json!({"password": ALICE_PW})),
    )
    .await;
    let v = r.json();
    assert_eq!(v["component"], "redirect", "{v}");
    v["to"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_return_address_after_sign_in_is_the_configured_origin() {
    let gw = Gateway::start().await;
    let root = format!("http://app.test:{}/", gw.port);
    // (Host, rd) -> where the finished sign-in goes.
    let cases: Vec<(&str, Option<&str>, String)> = vec![
        ("app.test:8666", None, root.clone()),
        ("app.test", None, root.clone()),
        (
            "app.test:8666",
            Some("/deep/page?x=1"),
            format!("{root}deep/page?x=1"),
        ),
        // A return address on our host but another port or scheme: our origin, same path.
        (
            "app.test:8666",
            Some("http://app.test:8666/a"),
            format!("{root}a"),
        ),
        (
            "app.test",
            Some("https://app.test/b?c"),
            format!("{root}b?c"),
        ),
        // Not ours: the fallback, which is config's too.
        (
            "app.test:8666",
            Some("http://evil.example:8666/"),
            root.clone(),
        ),
        (
            "admin.test:7",
            None,
            format!("http://admin.test:{}/", gw.port),
        ),
    ];
    for (host, rd, want) in cases {
        let b = gw.browser();
        let to = sign_in_with_host(&b, host, rd).await;
        assert_eq!(to, want, "Host {host}, rd {rd:?}");
    }
}

/// Writes the dev certificate into `dir` and returns the `[server]` lines for an HTTPS
/// listener on `tls_port` using it, with `extra` added.
async fn tls_server_toml(dir: &std::path::Path, tls_port: u16, extra: &str) -> String {
    let out = run_cli(
        vec![
            "certs".into(),
            "dev".into(),
            "--out".into(),
            dir.display().to_string(),
        ],
        None,
    )
    .await;
    assert!(out.ok(), "certs dev: {}", out.all());
    format!(
        "tls_listen = [\"127.0.0.1:{tls_port}\"]\n{extra}\n[[server.certificates]]\ncert = {}\nkey = {}\n",
        toml_str(&dir.join("dev.pem").display().to_string()),
        toml_str(&dir.join("dev.key").display().to_string()),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn https_redirect_goes_to_the_configured_origin_never_the_requested_host() {
    let certs = tempfile::tempdir().unwrap();
    let tls = Listener::bind();
    let tls_port = tls.port();
    let gw = Gateway::start_with(Setup {
        server_toml: tls_server_toml(certs.path(), tls_port, "redirect_http = true").await,
        listeners: vec![tls],
        ..Setup::default()
    })
    .await;
    let b = gw.browser();
    for host in APP_HOSTS {
        let r = get_with_host(&b, host, "/page?action=edit&x=1", ACCEPT_HTML).await;
        assert_eq!(r.status, 308, "Host {host}: {}", r.describe());
        assert_eq!(
            r.location(),
            format!("https://app.test:{tls_port}/page?action=edit&x=1"),
            "Host {host}"
        );
    }
    for host in ["evil.example", "evil.example:443", "unknown.test:8666"] {
        let r = get_with_host(&b, host, "/page", ACCEPT_HTML).await;
        assert!(
            r.header("location").is_none(),
            "Host {host} got a redirect: {}",
            r.describe()
        );
        assert_eq!(r.status, 404, "Host {host}: {}", r.describe());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_redirect_uses_the_apps_configured_port() {
    let certs = tempfile::tempdir().unwrap();
    let tls = Listener::bind();
    let tls_port = tls.port();
    let gw = Gateway::start_with(Setup {
        server_toml: tls_server_toml(certs.path(), tls_port, "redirect_http = true").await,
        listeners: vec![tls],
        app_toml: "port = 443".into(),
        ..Setup::default()
    })
    .await;
    let b = gw.browser();
    let r = get_with_host(&b, "app.test:8666", "/p", ACCEPT_HTML).await;
    assert_eq!(r.location(), "https://app.test/p", "{}", r.describe());
    // admin.test keeps the default: the first HTTPS listener's port.
    let r = get_with_host(&b, "admin.test:8666", "/p", ACCEPT_HTML).await;
    assert_eq!(r.location(), format!("https://admin.test:{tls_port}/p"));
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_allow_forms_to_lead_exactly_to_the_configured_origins() {
    let gw = Gateway::start_with(Setup {
        server_toml: "auth_url = \"https://auth.test\"".into(),
        app_toml: "scheme = \"https\"\nport = 9443".into(),
        ..Setup::default()
    })
    .await;
    let b = gw.browser();
    let r = get_with_host(&b, "auth.test:8666", &flow_path(), ACCEPT_HTML).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let csp = r.header("content-security-policy").expect("a CSP");
    let form_action = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("form-action "))
        .unwrap_or_else(|| panic!("no form-action in {csp}"));
    let mut sources: Vec<&str> = form_action.split(' ').skip(1).collect();
    sources.sort();
    assert_eq!(
        sources,
        vec![
            "'self'",
            "https://admin.test",
            "https://app.test:9443",
            "https://auth.test",
            "https://down.test",
        ],
        "{csp}"
    );
    for strict in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(strict), "{csp}");
    }
}

#[test]
fn auth_urls_that_are_not_just_an_origin_are_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let cases: &[(&str, &str, &str)] = &[
        ("auth_url = \"auth.test\"", "", "server.auth_url"),
        ("auth_url = \"ftp://auth.test\"", "", "server.auth_url"),
        (
            "auth_url = \"https://auth.test/sso\"",
            "",
            "server.auth_url",
        ),
        (
            "auth_url = \"https://auth.test/?a=1\"",
            "",
            "server.auth_url",
        ),
        (
            "auth_url = \"https://u:p@auth.test\"",
            "",
            "server.auth_url",
        ),
        ("auth_url = \"https://[::1]:8443\"", "", "server.auth_url"),
        ("auth_url = \"https://app.test\"", "", "server.auth_url"),
        (
            "auth_host = \"auth.test\"",
            "",
            "auth_url = \"https://auth.test\"",
        ),
        ("", "scheme = \"ftp\"", "apps[0].scheme"),
        ("", "port = 0", "apps[0].port"),
    ];
    for (server, app, named) in cases {
        let setup = Setup {
            server_toml: server.to_string(),
            app_toml: app.to_string(),
            ..Setup::default()
        };
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            config_toml(9000, "127.0.0.1:9".parse().unwrap(), 9, &db, &setup),
        )
        .unwrap();
        let out = check_config(&path);
        assert!(!out.ok(), "{server} / {app} accepted: {}", out.all());
        let text = out.all();
        assert!(
            text.contains(named),
            "{server} / {app}: the message does not name {named}: {text}"
        );
    }
}
