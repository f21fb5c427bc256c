//! The proxy: routing by host, identity headers in and out, bypass, unauthenticated answers,
//! group restriction, unknown hosts and a dead upstream.

use crate::harness::*;
use serde_json::json;

const SPOOFED: &[(&str, &str)] = &[
    ("Remote-User", "mallory"),
    ("Remote-Name", "Mallory Spoofer"),
    ("Remote-Email", "mallory@evil.example"),
    ("Remote-Groups", "admins,root"),
];

/// No header value the upstream saw carries any of the spoofed values.
fn assert_no_spoofed_values(echo: &Echo, what: &str) {
    for (name, value) in &echo.headers {
        for bad in ["mallory", "Mallory", "root", "evil.example"] {
            assert!(
                !value.contains(bad),
                "{what}: upstream saw spoofed value {bad:?} in header {name}: {value:?}"
            );
        }
    }
}

fn spoof(rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let mut rb = rb;
    for (k, v) in SPOOFED {
        rb = rb.header(*k, *v);
    }
    // Lower-case and duplicated variants too, and the `_` spellings that CGI, WSGI, PHP and
    // Rack read as the same header.
    rb.header("remote-user", "mallory2")
        .header("REMOTE-GROUPS", "root")
        .header("Remote_User", "mallory3")
        .header("remote_groups", "root")
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_host_headers_are_refused_before_anything_uses_them() {
    let gw = Gateway::start().await;
    for host in [
        format!("app.test:{}@evil.example", gw.port),
        "app.test:1@evil.example".to_string(),
        "app.test^".to_string(),
        "user@app.test".to_string(),
    ] {
        let before = gw.upstream.hits();
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
            .await
            .unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(
            format!("GET /.portcullis/flow/{FLOW}?rd=/ HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        assert!(
            out.starts_with("HTTP/1.1 400"),
            "Host {host:?} was not refused: {out}"
        );
        assert!(
            !out.contains("evil.example"),
            "Host {host:?} leaked into the answer: {out}"
        );
        assert_eq!(gw.upstream.hits(), before, "Host {host:?} reached the app");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_headers_reach_upstream_with_exact_values() {
    let gw = Gateway::start().await;
    let (b, _) = alice_browser(&gw).await;
    let r = b.get_json("/hello/world?x=1&y=two").await;
    let echo = r.echo();
    assert_eq!(echo.method, "GET");
    assert_eq!(echo.path, "/hello/world?x=1&y=two");
    assert_eq!(
        echo.header("remote-user"),
        Some("alice"),
        "{:?}",
        echo.headers
    );
    assert_eq!(
        echo.header("remote-name"),
        Some("Alice A"),
        "{:?}",
        echo.headers
    );
    assert_eq!(
        echo.header("remote-email"),
        Some("alice@example.com"),
        "{:?}",
        echo.headers
    );
    assert_eq!(
        echo.header("remote-groups"),
        Some("staff,ops"),
        "{:?}",
        echo.headers
    );
    // The Host the client used reaches the upstream unchanged.
    assert_eq!(
        echo.header("host")
            .map(|h| h.split(':').next().unwrap().to_string()),
        Some(APP.to_string())
    );

    // bob, in group admins only.
    let b2 = gw.browser();
    api_sign_in(&b2, "bob", BOB_PW).await;
    let echo = b2.get_json("/x").await.echo();
    assert_eq!(echo.header("remote-user"), Some("bob"));
    assert_eq!(echo.header("remote-name"), Some("Bob B"));
    assert_eq!(echo.header("remote-email"), Some("bob@example.com"));
    assert_eq!(echo.header("remote-groups"), Some("admins"));
}

#[tokio::test(flavor = "multi_thread")]
async fn session_cookie_is_removed_from_upstream_cookie_header_other_cookies_stay() {
    let gw = Gateway::start().await;
    let (b, signed) = alice_browser(&gw).await;
    b.add_cookie(&gw.url("/"), "theme=dark; Path=/");
    b.add_cookie(&gw.url("/"), "lang=en-GB; Path=/");
    let sent = b.cookies_for(&gw.url("/page"));
    assert!(
        sent.iter().any(|(k, _)| k == SESSION_COOKIE),
        "the client must be sending the session cookie for this test to mean anything: {sent:?}"
    );

    let echo = b.get_json("/page").await.echo();
    assert_eq!(echo.header("remote-user"), Some("alice"));
    let cookies = echo.cookies();
    assert!(
        cookies.contains(&("theme".to_string(), "dark".to_string())),
        "other cookies must reach the upstream: {cookies:?}"
    );
    assert!(
        cookies.contains(&("lang".to_string(), "en-GB".to_string())),
        "other cookies must reach the upstream: {cookies:?}"
    );
    assert!(
        !cookies
            .iter()
            .any(|(k, _)| k == SESSION_COOKIE || k == FLOW_COOKIE),
        "the gateway's cookies must not reach the upstream: {cookies:?}"
    );
    for (name, value) in &echo.headers {
        assert!(
            !value.contains(&signed.token),
            "the session token leaked to the upstream in header {name}"
        );
    }

    // Only the session cookie: the upstream gets no Cookie header carrying it at all.
    let raw = gw.raw();
    let echo = raw
        .get_with_token("/only", &signed.token, "application/json")
        .await
        .echo();
    assert_eq!(echo.header("remote-user"), Some("alice"));
    assert!(
        echo.header("cookie")
            .is_none_or(|c| !c.contains(SESSION_COOKIE) && !c.contains(&signed.token)),
        "session cookie reached the upstream: {:?}",
        echo.header("cookie")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn spoofed_identity_headers_never_reach_upstream_when_signed_in() {
    let gw = Gateway::start().await;
    let (b, _) = alice_browser(&gw).await;
    let r = b
        .send(spoof(
            b.http
                .get(gw.url("/whoami"))
                .header("accept", "application/json"),
        ))
        .await;
    let echo = r.echo();
    assert_no_spoofed_values(&echo, "signed in");
    assert_eq!(echo.header("remote-user"), Some("alice"));
    assert_eq!(echo.header("remote-name"), Some("Alice A"));
    assert_eq!(echo.header("remote-email"), Some("alice@example.com"));
    assert_eq!(echo.header("remote-groups"), Some("staff,ops"));

    // A POST with a body, same story.
    let r = b
        .send(spoof(
            b.http
                .post(gw.url("/submit"))
                .header("content-type", "application/json")
                .body(r#"{"k":"v"}"#),
        ))
        .await;
    let echo = r.echo();
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.body, r#"{"k":"v"}"#);
    assert_no_spoofed_values(&echo, "signed in POST");
    assert_eq!(echo.header("remote-user"), Some("alice"));
}

#[tokio::test(flavor = "multi_thread")]
async fn spoofed_identity_headers_never_reach_upstream_on_unauthenticated_bypass_route() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let r = b
        .send(spoof(
            b.http
                .get(gw.url("/public/info"))
                .header("accept", ACCEPT_HTML),
        ))
        .await;
    let echo = r.echo();
    assert_eq!(echo.path, "/public/info");
    assert_no_spoofed_values(&echo, "unauthenticated bypass");
    assert!(
        echo.remote_headers().is_empty(),
        "no identity header may reach the upstream on an unauthenticated bypass route: {:?}",
        echo.remote_headers()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn spoofed_identity_headers_never_reach_upstream_on_bypass_route_when_signed_in() {
    let gw = Gateway::start().await;
    let (b, _) = alice_browser(&gw).await;
    let r = b
        .send(spoof(
            b.http
                .get(gw.url("/public/info?a=b"))
                .header("accept", ACCEPT_HTML),
        ))
        .await;
    let echo = r.echo();
    assert_eq!(echo.path, "/public/info?a=b");
    assert_no_spoofed_values(&echo, "signed-in bypass");
    // Whatever the gateway sets on a bypass route, it can only be alice's real identity.
    if let Some(u) = echo.header("remote-user") {
        assert_eq!(u, "alice");
    }
    if let Some(g) = echo.header("remote-groups") {
        assert_eq!(g, "staff,ops");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bypass_route_works_without_a_session() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    for (path, accept) in [
        ("/public/", ACCEPT_HTML),
        ("/public/style.css", "text/css"),
        ("/public/api/status?full=1", "application/json"),
    ] {
        let r = b
            .send(b.http.get(gw.url(path)).header("accept", accept))
            .await;
        let echo = r.echo();
        assert_eq!(echo.path, path);
        assert!(
            echo.remote_headers().is_empty(),
            "{:?}",
            echo.remote_headers()
        );
    }
    let r = b
        .send(
            b.http
                .post(gw.url("/public/form"))
                .header("content-type", "text/plain")
                .body("hi"),
        )
        .await;
    let echo = r.echo();
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.body, "hi");

    // The regex is anchored: these are not bypass paths.
    let hits = gw.upstream.hits();
    let r = b.get_html("/publicity").await;
    assert_eq!(r.status, 302, "{}", r.describe());
    let r = b.get_json("/x/public/y").await;
    assert_eq!(r.status, 401, "{}", r.describe());
    assert_eq!(gw.upstream.hits(), hits);
}

#[tokio::test(flavor = "multi_thread")]
async fn navigation_without_session_redirects_to_flow_with_original_url() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let r = b.get_html("/orig/path?q=1&r=two").await;
    assert_eq!(r.status, 302, "{}", r.describe());
    let loc = url::Url::parse(&r.location_absolute()).unwrap();
    assert_eq!(loc.host_str(), Some(APP));
    assert_eq!(loc.path(), format!("/.portcullis/flow/{FLOW}"));
    let rd: Vec<_> = loc
        .query_pairs()
        .filter(|(k, _)| k == "rd")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(rd, vec![gw.url("/orig/path?q=1&r=two")], "location: {loc}");
    // HEAD is a navigation too.
    let r = b
        .send(
            b.http
                .head(gw.url("/head/me"))
                .header("accept", "text/html"),
        )
        .await;
    assert_eq!(r.status, 302, "{}", r.describe());
    assert!(r
        .location()
        .contains(&format!("/.portcullis/flow/{FLOW}?rd=")));
    assert_eq!(
        gw.upstream.hits(),
        0,
        "nothing may reach the upstream without a session"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn non_navigation_request_without_session_gets_401_json_with_login_url() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let nav = b.get_html("/api/data?id=7").await;
    assert_eq!(nav.status, 302);
    let login_url = nav.location();

    let r = b.get_json("/api/data?id=7").await;
    assert_eq!(r.status, 401, "{}", r.describe());
    assert!(
        r.content_type().starts_with("application/json"),
        "{}",
        r.content_type()
    );
    let v = r.json();
    assert_eq!(v["error"], "unauthenticated", "{v}");
    let login = v["login"]
        .as_str()
        .unwrap_or_else(|| panic!("no login in {v}"));
    assert_eq!(
        login, login_url,
        "the 401's login URL must be the navigation's redirect"
    );

    // A POST accepting HTML is not a navigation either.
    let r = b
        .send(
            b.http
                .post(gw.url("/api/data"))
                .header("accept", ACCEPT_HTML)
                .header("content-type", "application/json")
                .body("{}"),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.describe());
    assert_eq!(r.json()["error"], "unauthenticated");

    // No Accept at all.
    let r = b.send(b.http.get(gw.url("/api/data"))).await;
    assert_eq!(r.status, 401, "{}", r.describe());
    assert_eq!(gw.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn group_restriction_gives_403() {
    let gw = Gateway::start().await;
    // alice (staff, ops) on the admins-only app.
    let alice = gw.browser();
    api_sign_in_on(&alice, ADMIN_APP, None, "alice", ALICE_PW).await;
    let r = alice.get_html(&gw.url_on(ADMIN_APP, "/dashboard")).await;
    assert_eq!(r.status, 403, "{}", r.describe());
    assert!(
        r.content_type().starts_with("text/html"),
        "{}",
        r.content_type()
    );
    let r = alice.get_json(&gw.url_on(ADMIN_APP, "/api/x")).await;
    assert_eq!(r.status, 403, "{}", r.describe());
    assert_eq!(
        gw.upstream.hits(),
        0,
        "a forbidden request reached the upstream"
    );

    // bob (admins) gets through.
    let bob = gw.browser();
    api_sign_in_on(&bob, ADMIN_APP, None, "bob", BOB_PW).await;
    let echo = bob
        .get_json(&gw.url_on(ADMIN_APP, "/dashboard"))
        .await
        .echo();
    assert_eq!(echo.header("remote-user"), Some("bob"));
    assert_eq!(echo.header("remote-groups"), Some("admins"));

    // alice is fine on the unrestricted app.
    let a2 = gw.browser();
    api_sign_in(&a2, "alice", ALICE_PW).await;
    assert_eq!(
        a2.get_json("/").await.echo().header("remote-user"),
        Some("alice")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_host_gets_404_and_is_never_forwarded() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    for (path, accept) in [
        ("/", ACCEPT_HTML),
        ("/api/x", "application/json"),
        ("/public/x", ACCEPT_HTML),
    ] {
        let r = b
            .send(
                b.http
                    .get(gw.url_on(UNKNOWN, path))
                    .header("accept", accept),
            )
            .await;
        assert_eq!(r.status, 404, "{path}: {}", r.describe());
        assert!(
            r.header("location").is_none(),
            "{path}: unknown host must not redirect"
        );
    }
    let r = b.get_html(&gw.url_on(UNKNOWN, &flow_path())).await;
    assert_eq!(r.status, 404, "{}", r.describe());
    // Even with a valid app.test session token.
    let (_, s) = alice_browser(&gw).await;
    let r = b
        .send(
            b.http
                .get(gw.url_on(UNKNOWN, "/"))
                .header("cookie", format!("{SESSION_COOKIE}={}", s.token)),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.describe());
    assert_eq!(gw.upstream.hits(), 0, "an unknown host was forwarded");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_down_gives_502_and_gateway_stays_up() {
    let mut gw = Gateway::start().await;
    for i in 0..3 {
        // A fresh connection each time (see the keep-alive test below for reuse).
        let b = gw.browser();
        let r = b
            .get_html(&gw.url_on(DOWN_APP, &format!("/page/{i}")))
            .await;
        assert_eq!(r.status, 502, "{}", r.describe());
        assert!(
            r.content_type().starts_with("text/html"),
            "{}",
            r.describe()
        );
        let b = gw.browser();
        let r = b.get_json(&gw.url_on(DOWN_APP, "/api")).await;
        assert_eq!(r.status, 502, "{}", r.describe());
    }
    assert!(gw.is_running(), "gateway died after an upstream failure");
    let b = gw.browser();
    let r = b.send(b.http.get(gw.url("/.portcullis/ping"))).await;
    assert_eq!((r.status, r.body.trim()), (200, "pong"));
    // Other apps still work.
    let echo = b.get_json("/public/still-up").await.echo();
    assert_eq!(echo.path, "/public/still-up");
}

/// Reads one HTTP/1.1 response (head + Content-Length body) from a raw stream.
async fn read_raw_response(s: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    Some((head, buf[head_end..head_end + len].to_vec()))
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_connection_after_a_502_is_reusable_or_announced_closed() {
    // After a 502 the gateway must either keep the client connection usable or announce
    // `Connection: close`; closing it silently makes a keep-alive client's next request on the
    // pooled connection race against the close (reset by peer).
    use tokio::io::AsyncWriteExt;
    let gw = Gateway::start().await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .unwrap();
    let req = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {DOWN_APP}:{}\r\nAccept: text/html\r\n\r\n",
            gw.port
        )
    };
    s.write_all(req("/first").as_bytes()).await.unwrap();
    let (head, _) = read_raw_response(&mut s)
        .await
        .expect("no response to the first request");
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let announced_close = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("connection:")
            && l.to_ascii_lowercase().contains("close")
    });
    if announced_close {
        return;
    }
    // Not announced: the connection must still serve the next request.
    let _ = s.write_all(req("/second").as_bytes()).await;
    let second = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        read_raw_response(&mut s),
    )
    .await
    .expect("second response timed out");
    let (head2, _) = second.unwrap_or_else(|| {
        panic!("the gateway closed the connection after a 502 without `Connection: close`:\n{head}")
    });
    assert!(head2.starts_with("HTTP/1.1 502"), "{head2}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_answers_pong_on_every_host() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    for host in [APP, ADMIN_APP, DOWN_APP, UNKNOWN] {
        let r = b
            .send(b.http.get(gw.url_on(host, "/.portcullis/ping")))
            .await;
        assert_eq!(r.status, 200, "{host}: {}", r.describe());
        assert_eq!(r.body.trim(), "pong", "{host}");
    }
    assert_eq!(gw.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_endpoints_are_never_forwarded() {
    let gw = Gateway::start().await;
    let (b, _) = alice_browser(&gw).await;
    let hits = gw.upstream.hits();
    let r = b.get_json("/.portcullis/does-not-exist").await;
    assert_eq!(r.status, 404, "{}", r.describe());
    let r = b.get_json("/.portcullis/api/flow/no-such-flow").await;
    assert_eq!(r.status, 404, "{}", r.describe());
    assert_eq!(gw.upstream.hits(), hits);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_connections_are_reused_across_many_requests() {
    let gw = Gateway::start().await;
    let (b, _) = alice_browser(&gw).await;
    for i in 0..40 {
        let r = b.post_json(&format!("/echo/{i}"), &json!({ "i": i })).await;
        let echo = r.echo();
        assert_eq!(echo.path, format!("/echo/{i}"));
        assert_eq!(echo.body, json!({ "i": i }).to_string());
        assert_eq!(echo.header("remote-user"), Some("alice"));
    }
    assert_eq!(gw.upstream.hits(), 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_alias_identity_headers_are_stripped_too() {
    let gw = Gateway::start_with(Setup {
        extra_toml: "\n[headers]\nstrip = [\"X-Forwarded-User\", \"X-Auth-Groups\"]\n".into(),
        ..Setup::default()
    })
    .await;
    let send = |b: &Browser, path: &str| {
        b.http
            .get(gw.url(path))
            .header("accept", "application/json")
            .header("X-Forwarded-User", "mallory")
            .header("x-auth-groups", "root")
            .header("X-Not-An-Alias", "kept")
    };
    // Unauthenticated bypass.
    let b = gw.browser();
    let echo = b.send(send(&b, "/public/a")).await.echo();
    assert_eq!(echo.header("x-forwarded-user"), None, "{:?}", echo.headers);
    assert_eq!(echo.header("x-auth-groups"), None, "{:?}", echo.headers);
    assert_eq!(echo.header("x-not-an-alias"), Some("kept"));
    // Signed in.
    let (b, _) = alice_browser(&gw).await;
    let echo = b.send(send(&b, "/private")).await.echo();
    assert_eq!(echo.header("x-forwarded-user"), None, "{:?}", echo.headers);
    assert_eq!(echo.header("x-auth-groups"), None, "{:?}", echo.headers);
    assert_eq!(echo.header("x-not-an-alias"), Some("kept"));
    assert_eq!(echo.header("remote-user"), Some("alice"));
}

#[tokio::test(flavor = "multi_thread")]
async fn several_upstreams_are_used_round_robin() {
    let one = Upstream::start().await;
    let two = Upstream::start().await;
    let gw = Gateway::start_with(Setup {
        extra_toml: format!(
            "\n[[apps]]\nname = \"rr\"\nhosts = [\"{EXTRA_APP}\"]\nupstream = [\"{}\", \"{}\"]\nflow = \"{FLOW}\"\nbypass = [\"^/\"]\n",
            one.addr, two.addr
        ),
        ..Setup::default()
    })
    .await;
    let b = gw.browser();
    for i in 0..10 {
        let echo = b
            .get_json(&gw.url_on(EXTRA_APP, &format!("/rr/{i}")))
            .await
            .echo();
        assert_eq!(echo.path, format!("/rr/{i}"));
    }
    assert_eq!(one.hits() + two.hits(), 10);
    assert!(
        one.hits() >= 3 && two.hits() >= 3,
        "not round-robin: {} vs {}",
        one.hits(),
        two.hits()
    );
    assert_eq!(gw.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_display_name_that_is_not_ascii_reaches_the_upstream_as_utf8() {
    let jose = UserSpec::new(
        "jose",
        "José Müller",
        "jose@example.com",
        &["staff"],
        "Jose-pw-8821-abc",
    );
    let gw = Gateway::start_with(Setup {
        users: vec![jose],
        ..Setup::default()
    })
    .await;
    let b = gw.browser();
    api_sign_in(&b, "jose", "Jose-pw-8821-abc").await;
    let r = b.get_json("/whoami").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let echo = r.echo();
    assert_eq!(echo.header("remote-user"), Some("jose"));
    assert_eq!(echo.header("remote-name"), Some("José Müller"));
}
