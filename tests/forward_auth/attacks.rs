//! A penetration tester's table against the forward-auth endpoints: how a proxy (or a client
//! whose headers a proxy passes along) can describe the original request so that it is judged
//! as another one. Each row names the attack and what must come back.

use crate::support::*;

const TRAEFIK: &str = "/.portcullis/auth/traefik";
const NGINX: &str = "/.portcullis/auth/nginx";
const COMPAT_TRAEFIK: &str = "/api/authz/forward-auth";
const COMPAT_NGINX: &str = "/api/authz/auth-request";

/// One forward-auth call from a trusted proxy (loopback), anonymous, as a page load.
async fn ask(gw: &Gateway, endpoint: &str, headers: &[(&str, &str)]) -> (Option<u16>, String) {
    let front = format!("127.0.0.1:{}", gw.port);
    let mut h = headers.to_vec();
    h.push(("accept", ACCEPT_HTML));
    raw_try(gw.port, &front, endpoint, &h).await
}

/// Fails naming every row that did not hold, with the gateway's log.
fn assert_all_held(what: &str, failures: &[String], gw: &Gateway) {
    assert!(
        failures.is_empty(),
        "{what}:\n{}\n{}",
        failures.join("\n"),
        gw.logs()
    );
}

/// Static roots for wiki and admin, each with a `public/info.txt` of its own (wiki's
/// [`PUBLIC_TEXT`], admin's [`ADMIN_TEXT`]) and a `secret`, and their paths.
fn app_roots() -> ([tempfile::TempDir; 2], String, String) {
    let roots = [tempdir("portcullis-wiki-"), tempdir("portcullis-admin-")];
    for (root, text) in roots.iter().zip([PUBLIC_TEXT, ADMIN_TEXT]) {
        let p = root.path().join("public/info.txt");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("{text}\n")).unwrap();
        std::fs::write(root.path().join("secret"), format!("{SECRET_TEXT}\n")).unwrap();
    }
    let [w, a] = roots.each_ref().map(|r| r.path().display().to_string());
    (roots, w, a)
}

/// The host a redirect or sign-in URL leads to, as a browser reads it.
fn leads_to(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
}

/// A described host that is not a plain `host[:port]` (userinfo, a path, a second host) is
/// never judged as the app its first characters name: with no auth host configured the
/// sign-in URL is built from it, and `wiki.example.test:1@evil.test` then sends the browser to
/// evil.test. The proxy mode refuses such a `Host` with 400; forward-auth now denies it.
#[tokio::test]
async fn a_described_host_with_userinfo_or_a_path_never_shapes_the_sign_in_url() {
    let gw = Gateway::start(Opts {
        auth_host: None,
        cookie_domain: None,
        ..Opts::default()
    })
    .await;
    let bent_hosts = [
        format!("{WIKI}:1@evil.test"),
        format!("{WIKI}:80@evil.test:80"),
        format!("{WIKI}:@evil.test"),
        format!("{WIKI}:1/@evil.test"),
        format!("{WIKI}:1#@evil.test"),
        format!("{WIKI}:1?@evil.test"),
        format!("{WIKI}:1\\@evil.test"),
        format!("{WIKI}:99999"),
        format!("{WIKI}:-1"),
    ];
    let mut failures = Vec::new();
    for host in &bent_hosts {
        for (endpoint, headers) in [
            (
                TRAEFIK,
                vec![
                    ("x-forwarded-host", host.as_str()),
                    ("x-forwarded-uri", "/secret"),
                    ("x-forwarded-proto", "http"),
                ],
            ),
            (
                COMPAT_TRAEFIK,
                vec![
                    ("x-forwarded-host", host.as_str()),
                    ("x-forwarded-uri", "/secret"),
                ],
            ),
            (
                NGINX,
                vec![
                    ("x-forwarded-host", host.as_str()),
                    ("x-original-uri", "/secret"),
                ],
            ),
            (
                COMPAT_NGINX,
                vec![
                    ("x-forwarded-host", host.as_str()),
                    ("x-original-uri", "/secret"),
                ],
            ),
        ] {
            let (status, text) = ask(&gw, endpoint, &headers).await;
            let bad_target = ["location:", "x-portcullis-redirect:"]
                .iter()
                .filter_map(|name| {
                    text.lines()
                        .find(|l| l.to_ascii_lowercase().starts_with(name))
                        .map(|l| l[name.len()..].trim().to_string())
                })
                .find(|u| leads_to(u).is_some_and(|h| h != WIKI));
            if status == Some(200) || bad_target.is_some() {
                failures.push(format!("{endpoint} {host:?} -> {status:?} {bad_target:?}"));
            }
        }
    }
    assert_all_held("described hosts that shaped the answer", &failures, &gw);
}

/// With the gateway as the proxy, wiki and admin share one upstream: an nginx serving each by
/// virtual host, the way one web server often hosts several apps. An absolute-form target
/// naming admin with `Host: wiki` is judged as wiki (its `Host`), so what the upstream serves
/// must be wiki's too: nginx picks the server block from the request line, so the target must
/// not reach it naming admin.
#[tokio::test]
async fn an_absolute_form_target_naming_another_app_reaches_only_the_judged_apps_files() {
    let (_roots, w, a) = app_roots();
    let upstream = Front::nginx(
        |port| {
            format!(
                "server {{ listen 127.0.0.1:{port} default_server; server_name {WIKI}; root {w}; default_type text/plain; }}\n\
                 server {{ listen 127.0.0.1:{port}; server_name {ADMIN}; root {a}; default_type text/plain; }}\n"
            )
        },
        "",
    )
    .await;
    // The attack is real on the upstream itself: the request line picks admin.
    let (_, text) = raw_try(
        upstream.port,
        WIKI,
        &format!("http://{ADMIN}/public/info.txt"),
        &[],
    )
    .await;
    assert!(text.contains(ADMIN_TEXT), "{text}");
    let gw = Gateway::for_upstream(format!("127.0.0.1:{}", upstream.port)).await;
    let wiki = format!("{WIKI}:{}", gw.port);
    let admin = format!("{ADMIN}:{}", gw.port);
    let mut failures = Vec::new();
    for (target, host) in [
        (format!("http://{admin}/public/info.txt"), wiki.clone()),
        (format!("http://{ADMIN}/public/info.txt"), wiki.clone()),
        (format!("HTTP://{ADMIN}/public/info.txt"), wiki.clone()),
        (format!("http://{ADMIN}:80/public/info.txt"), wiki.clone()),
        (format!("https://{admin}/public/info.txt"), wiki.clone()),
        (format!("http://x@{admin}/public/info.txt"), wiki.clone()),
        (format!("http://{admin}/secret"), admin.clone()),
        (format!("http://{wiki}/secret"), wiki.clone()),
    ] {
        let (status, text) = raw_try(gw.port, &host, &target, &[]).await;
        if text.contains(ADMIN_TEXT) || text.contains(SECRET_TEXT) {
            failures.push(format!("{target} (Host {host}) -> {status:?}"));
        }
    }
    // Two Host headers, wiki's first: judged as wiki, so admin's must not be what is served.
    for second in [admin.as_str(), ADMIN] {
        let (status, text) = raw_try(gw.port, &wiki, "/public/info.txt", &[("host", second)]).await;
        if text.contains(ADMIN_TEXT) {
            failures.push(format!("Host {wiki} then Host {second} -> {status:?}"));
        }
    }
    assert_all_held("reached another app's files anonymously", &failures, &gw);
    // The judged app's own public file is still served.
    let (status, text) = raw_get(gw.port, &wiki, "/public/info.txt", &[]).await;
    assert!(status == 200 && text.contains(PUBLIC_TEXT), "{text}");
}

/// What the attack is, the endpoint, the headers, the statuses that mean it held.
type Row<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a [u16]);

/// Header spellings a proxy passes along (or a client adds) that must not turn a protected
/// request into a public one or into another app's: judged as the app the host names, in any
/// letter case and with any port; an unknown spelling is no app at all; the nginx URL must name
/// the routed host; a caller outside `trusted_proxies` is judged as its own request.
#[tokio::test]
async fn header_spellings_get_the_decision_of_the_host_they_name() {
    let gw = Gateway::start(Opts::default()).await;
    let public = "/public/info.txt";
    let wiki_url = format!("http://{WIKI}{public}");
    let upper = WIKI.to_ascii_uppercase();
    let upper_port = format!("{upper}:8443");
    let dotted = format!("{WIKI}.");
    let two = format!("{WIKI}, {ADMIN}");
    let userinfo = format!("http://{WIKI}@{ADMIN}{public}");
    let mut failures = Vec::new();
    let rows: Vec<Row> = vec![
        (
            "upper case, public",
            TRAEFIK,
            vec![("x-forwarded-host", &upper), ("x-forwarded-uri", public)],
            &[200],
        ),
        (
            "upper case and port, protected",
            TRAEFIK,
            vec![
                ("x-forwarded-host", &upper_port),
                ("x-forwarded-uri", "/secret"),
            ],
            &[302],
        ),
        (
            "trailing dot",
            TRAEFIK,
            vec![("x-forwarded-host", &dotted), ("x-forwarded-uri", public)],
            &[403],
        ),
        (
            "two hosts",
            COMPAT_TRAEFIK,
            vec![("x-forwarded-host", &two), ("x-forwarded-uri", public)],
            &[403],
        ),
        (
            "another app's public path",
            TRAEFIK,
            vec![("x-forwarded-host", ADMIN), ("x-forwarded-uri", public)],
            &[302],
        ),
        (
            "uri without a slash",
            TRAEFIK,
            vec![
                ("x-forwarded-host", WIKI),
                ("x-forwarded-uri", "public/info.txt"),
            ],
            &[403],
        ),
        (
            "uri as an absolute URL",
            TRAEFIK,
            vec![
                ("x-forwarded-host", ADMIN),
                ("x-forwarded-uri", wiki_url.as_str()),
            ],
            &[403],
        ),
        (
            "unknown proto",
            TRAEFIK,
            vec![
                ("x-forwarded-host", WIKI),
                ("x-forwarded-uri", public),
                ("x-forwarded-proto", "javascript"),
            ],
            &[403],
        ),
        (
            "nginx URL for another host than routed",
            NGINX,
            vec![
                ("x-original-url", wiki_url.as_str()),
                ("x-forwarded-host", ADMIN),
            ],
            &[400],
        ),
        (
            "Authelia nginx URL for another host than routed",
            COMPAT_NGINX,
            vec![
                ("x-original-url", wiki_url.as_str()),
                ("x-forwarded-host", ADMIN),
            ],
            &[400],
        ),
        (
            "nginx URL with userinfo",
            NGINX,
            vec![("x-original-url", &userinfo)],
            &[403],
        ),
        (
            "nginx URI plus Traefik's headers",
            NGINX,
            vec![
                ("x-forwarded-host", ADMIN),
                ("x-forwarded-uri", public),
                ("x-original-uri", "/x"),
            ],
            &[401],
        ),
    ];
    for (what, endpoint, headers, want) in &rows {
        let (status, text) = ask(&gw, endpoint, headers).await;
        if !status.is_some_and(|s| want.contains(&s)) {
            failures.push(format!(
                "{what}: {endpoint} -> {status:?}, want {want:?}\n{text}"
            ));
        }
    }
    // Not from a trusted proxy: the described request is ignored, the call is judged as it
    // arrived (its own path on its own host), never as wiki's public file.
    let untrusted = Gateway::start(Opts {
        trusted_proxies: Some("[]".into()),
        ..Opts::default()
    })
    .await;
    for host in [format!("127.0.0.1:{}", untrusted.port), WIKI.to_string()] {
        for endpoint in [TRAEFIK, NGINX, COMPAT_TRAEFIK] {
            let (status, text) = raw_try(
                untrusted.port,
                &host,
                endpoint,
                &[
                    ("x-forwarded-host", WIKI),
                    ("x-forwarded-uri", public),
                    ("x-original-url", &wiki_url),
                    ("accept", ACCEPT_HTML),
                ],
            )
            .await;
            if status == Some(200) {
                failures.push(format!("untrusted {host} {endpoint} -> 200\n{text}"));
            }
        }
    }
    assert_all_held("header spellings that changed the decision", &failures, &gw);
}

/// Rows of the traversal list that are plain paths: `+`, a space, three or four dots and the
/// fullwidth solidus and full stop are ordinary characters to nginx, Python, Node, Go and Java
/// (Windows best-fit mapping and trailing-dot trimming are not judged here).
const PLAIN_BY_DESIGN: &[&str] = &[
    "/public/..+/secret",
    "/public/..%20/secret",
    "/public/.../secret",
    "/public/..../secret",
    "/public/..%ef%bc%8fsecret",
    "/public/%ef%bc%8e%ef%bc%8e/secret",
];

/// Spellings beyond the shipped bent-path table, from the usual traversal lists: overlong
/// UTF-8 of `/` and `.` in three and four bytes, IIS's `%u`, double and mixed encodings,
/// `+`, whitespace, upper case, very long paths and the asterisk target. None reaches a
/// protected file of a real nginx static upstream anonymously, with the gateway as the proxy
/// or on the Traefik endpoint.
#[tokio::test]
async fn traversal_list_spellings_reach_no_protected_file() {
    let long_up = format!("/public/{}{}secret", "a/".repeat(3000), "../".repeat(3001));
    let long_plain = format!("/public/{}info.txt", "x/../".repeat(1000));
    let variants: Vec<String> = [
        "/public/..%e0%80%afsecret",
        "/public/%e0%80%ae%e0%80%ae/secret",
        "/public/..%f0%80%80%afsecret",
        "/public/..%u002fsecret",
        "/public/%u002e%u002e/secret",
        "/public/..%252fsecret",
        "/public/..%25%32%66secret",
        "/public/..%%32%66secret",
        "/public/%%32%65%%32%65/secret",
        "/public/..%2f%2e%2e%2fsecret",
        "/public/..+/secret",
        "/public/..%20/secret",
        "/public/..%09/secret",
        "/public/%0d%0a/../secret",
        "/PUBLIC/../secret",
        "/Public/..%2Fsecret",
        "/public/.../secret",
        "/public/..../secret",
        "/public/..%c0%afsecret",
        "/public/..%c1%9csecret",
        "/public/..%ef%bc%8fsecret",
        "/public/%ef%bc%8e%ef%bc%8e/secret",
        "*",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([long_up, long_plain])
    .collect();

    let site = StaticSite::start().await;
    let gw = Gateway::for_upstream(format!("127.0.0.1:{}", site.nginx.port)).await;
    let host = format!("{WIKI}:{}", gw.port);
    let leaks = |t: &str| t.contains(SECRET_TEXT) || t.contains(ADMIN_TEXT);
    let mut failures = Vec::new();
    for v in &variants {
        let (status, text) = raw_try(gw.port, &host, v, &[("accept", "application/json")]).await;
        if leaks(&text) || status == Some(200) {
            failures.push(format!("proxy {:.60} -> {status:?}", v));
        }
        let (status, _) = ask(
            &gw,
            TRAEFIK,
            &[("x-forwarded-host", WIKI), ("x-forwarded-uri", v)],
        )
        .await;
        // Names that are plain by design (no upstream here reads them as a separator or a dot
        // segment) may be public; every encoded separator or dot may not.
        if status == Some(200) && !PLAIN_BY_DESIGN.contains(&v.as_str()) {
            failures.push(format!("traefik {:.60} -> 200", v));
        }
    }
    assert_all_held("traversal spellings that got through", &failures, &gw);
}

/// nginx configs written for Authelia send `X-Original-URL` built from `$http_host` and no
/// `X-Forwarded-Host`. nginx routes on the host as sent (`wiki%2eexample%2etest` matches no
/// server name, so a catch-all server answers), while a URL parser decodes it into wiki's
/// name: the URL must be judged as written, as its path is, or a catch-all server would be
/// let in on wiki's bypass.
#[tokio::test]
async fn an_original_url_whose_host_a_parser_rewrites_gets_no_apps_decision() {
    let gw = Gateway::start(Opts::default()).await;
    let public = "/public/info.txt";
    let mut failures = Vec::new();
    for (url, want) in [
        (format!("http://{WIKI}{public}"), 200),
        (format!("http://{}{public}", WIKI.to_ascii_uppercase()), 200),
        (format!("http://{WIKI}:80{public}"), 200),
        (format!("http://{}{public}", WIKI.replace('.', "%2e")), 403),
        (format!("http://{}{public}", WIKI.replace('.', "%2E")), 403),
        (format!("http://%77{}{public}", &WIKI[1..]), 403),
        (format!("http://wi\tki{}{public}", &WIKI[4..]), 403),
        (format!("http://{WIKI}.{public}"), 403),
    ] {
        for endpoint in [NGINX, COMPAT_NGINX] {
            let (status, _) = ask(&gw, endpoint, &[("x-original-url", &url)]).await;
            if status != Some(want) {
                failures.push(format!("{endpoint} {url:?} -> {status:?}, want {want}"));
            }
        }
    }
    assert_all_held("original URLs judged as another host", &failures, &gw);
}

/// The same through a real nginx with an Authelia-style config (`X-Original-URL` from
/// `$http_host`, no `X-Forwarded-Host`): admin is the default server, wholly protected; wiki
/// has the public bypass. `Host: wiki%2eexample%2etest` is routed to admin, and must not be
/// judged as wiki.
#[tokio::test]
async fn an_encoded_host_through_an_authelia_style_nginx_config_gets_no_bypass() {
    let (_roots, w, a) = app_roots();
    let gw = Gateway::start(Opts::default()).await;
    let g = gw.port;
    let auth = format!(
        "location / {{ auth_request /.auth; }}\n\
         location = /.auth {{ internal; proxy_pass http://127.0.0.1:{g}/api/authz/auth-request; \
         proxy_pass_request_body off; proxy_set_header Content-Length \"\"; \
         proxy_set_header X-Original-URL $scheme://$http_host$request_uri; \
         proxy_set_header X-Original-Method $request_method; }}"
    );
    let nginx = Front::nginx(
        |port| {
            format!(
                "server {{ listen 127.0.0.1:{port} default_server; server_name {ADMIN}; root {a}; default_type text/plain; {auth} }}\n\
                 server {{ listen 127.0.0.1:{port}; server_name {WIKI}; root {w}; default_type text/plain; {auth} }}\n"
            )
        },
        "",
    )
    .await;
    // The config works: wiki's public file is public, admin's is not.
    let (status, text) = raw_get(nginx.port, WIKI, "/public/info.txt", &[]).await;
    assert!(
        status == 200 && text.contains(PUBLIC_TEXT),
        "{text}\n{}",
        nginx.logs()
    );
    let (status, text) = raw_get(nginx.port, ADMIN, "/public/info.txt", &[]).await;
    assert!(status == 401 && !text.contains(ADMIN_TEXT), "{text}");
    for host in [
        WIKI.replace('.', "%2e"),
        WIKI.replace('.', "%2E"),
        format!("%77{}", &WIKI[1..]),
    ] {
        let (status, text) = raw_try(nginx.port, &host, "/public/info.txt", &[]).await;
        assert!(
            !text.contains(ADMIN_TEXT),
            "Host {host:?} reached admin anonymously ({status:?})\n{}\n{}",
            nginx.logs(),
            gw.logs()
        );
    }
}
