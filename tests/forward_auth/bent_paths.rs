//! Paths that cannot be bent: requests whose path a real static upstream (nginx, which decodes
//! `%2F` and merges slashes before it resolves `..`) reads as a protected file, while the text
//! of the path starts with the bypass prefix `/public/`. None of them may reach a protected
//! file anonymously: with the gateway as the proxy, through the shipped nginx and Caddy
//! configs, and on the Traefik endpoint. Sent as raw request lines (a client library would
//! normalise them).

use crate::support::*;

const TRAEFIK: &str = "/.portcullis/auth/traefik";

/// Origin-form attacks on `/secret`, `/admin/index.html` and `/private/note.txt`, each
/// starting with the bypass prefix as text.
const VARIANTS: &[&str] = &[
    // Encoded slash.
    "/public/..%2fsecret",
    "/public/..%2Fsecret",
    "/public/%2F../secret",
    "/public/%2f../secret",
    "/public/%2e%2e%2fsecret",
    "/public/%2F%2E%2E%2Fsecret",
    "/public/..%2f..%2fpublic%2f..%2fsecret",
    "/public/x/..%2f..%2fsecret",
    "/public/info.txt/..%2f..%2fsecret",
    "/public/info.txt%2f..%2f..%2fsecret",
    "/public/..%2fadmin/",
    "/public/..%2fadmin/index.html",
    "/public/%2e%2e%2Fadmin/index.html",
    "/public/%2F../admin/index.html",
    "/public/..%2F%2E%2E%2Fpublic%2F..%2Fadmin/",
    "/public/..%2fprivate/note.txt",
    "/public/..%2fsecret?x=1",
    // Empty segments (merged by nginx before `..` is resolved).
    "/public//../secret",
    "/public///../secret",
    "/public/.//../secret",
    "/public/..//secret",
    "//public/../secret",
    "/public//../admin/",
    "/public//../private/note.txt",
    // Encoded dots.
    "/public/%2e%2e/secret",
    "/public/%2E%2E/secret",
    "/public/.%2e/secret",
    "/public/%2e./secret",
    "/public/%2e/../secret",
    "/public/.%2E/admin/index.html",
    "/public/%2e%2e/private/note.txt",
    "/public/%2e%2e/%2e%2e/public/../secret",
    "/public/%252e%252e/secret",
    "/public/%c0%ae%c0%ae/secret",
    // Plain dot segments.
    "/public/../secret",
    "/public/./../secret",
    "/public/.././secret",
    // Backslashes, raw and encoded.
    "/public/..%5csecret",
    "/public/..%5Csecret",
    "/public/%5C../secret",
    "/public/..\\secret",
    "/public\\..\\secret",
    // Path parameters.
    "/public/..;/secret",
    "/public;/../secret",
    "/public/x;/../../secret",
    // NUL, encoded and raw; a fragment.
    "/public/..%00/secret",
    "/public/%00/../../secret",
    "/public/x\0/../../secret",
    "/public/..%2fsecret#frag",
];

/// Absolute-form request targets (nginx and the gateway read the path after the authority).
fn absolute_variants(host: &str) -> Vec<String> {
    [
        "/public/..%2fsecret",
        "/public//../admin/",
        "/public/%2e%2e/private/note.txt",
    ]
    .iter()
    .map(|p| format!("http://{host}{p}"))
    .collect()
}

fn all_variants(host: &str) -> Vec<String> {
    let mut v: Vec<String> = VARIANTS.iter().map(|s| s.to_string()).collect();
    v.extend(absolute_variants(host));
    v
}

fn leaks(text: &str) -> bool {
    text.contains(SECRET_TEXT) || text.contains(ADMIN_TEXT) || text.contains(PRIVATE_TEXT)
}

/// Every variant, anonymously, through the front door at `port`: no protected file's text, no
/// `200`; and the real public file still served without signing in.
async fn assert_no_variant_reaches_a_protected_file(
    mode: &str,
    port: u16,
    logs: &dyn Fn() -> String,
) {
    let host = format!("{WIKI}:{port}");
    let mut failures = Vec::new();
    for target in all_variants(&host) {
        let (status, text) = raw_try(port, &host, &target, &[("accept", "application/json")]).await;
        if leaks(&text) || status == Some(200) {
            failures.push(format!("{target:?} -> {status:?}: {text}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{mode}: {} of {} variants reached a protected file anonymously:\n{}\n{}",
        failures.len(),
        all_variants(&host).len(),
        failures.join("\n"),
        logs()
    );
    // The bypass still works for what it names, and only for that.
    for (target, want) in [("/public/info.txt", Some(PUBLIC_TEXT)), ("/secret", None)] {
        let (status, text) = raw_get(port, &host, target, &[("accept", "application/json")]).await;
        match want {
            Some(body) => assert!(
                status == 200 && text.contains(body),
                "{mode}: {target} not served anonymously: {text}\n{}",
                logs()
            ),
            None => assert!(
                status != 200 && !leaks(&text),
                "{mode}: {target} served anonymously: {text}"
            ),
        }
    }
}

#[tokio::test]
async fn the_variants_do_reach_protected_files_on_the_static_upstream_itself() {
    // The table is worth running only if the upstream really reads these paths as protected
    // files: asked directly, nginx serves one for most of them.
    let site = StaticSite::start().await;
    let host = format!("{WIKI}:{}", site.nginx.port);
    let mut reached = Vec::new();
    for target in all_variants(&host) {
        let (_, text) = raw_try(site.nginx.port, &host, &target, &[]).await;
        if leaks(&text) {
            reached.push(target);
        }
    }
    assert!(
        reached.len() >= 25,
        "only {} variants reach a protected file on the upstream: {reached:?}",
        reached.len()
    );
    assert!(
        all_variants(&host).len() >= 40,
        "the table has fewer than 40 variants"
    );
}

#[tokio::test]
async fn bent_paths_get_no_protected_file_with_the_gateway_as_the_proxy() {
    let site = StaticSite::start().await;
    let gw = Gateway::for_upstream(format!("127.0.0.1:{}", site.nginx.port)).await;
    let logs = || format!("--- gateway ---\n{}", gw.logs());
    assert_no_variant_reaches_a_protected_file("proxy", gw.port, &logs).await;
}

/// [`assert_no_variant_reaches_a_protected_file`] through the shipped example of `kind`.
async fn through_the_example(kind: Kind, mode: &str) {
    let site = StaticSite::start().await;
    let upstream = format!("127.0.0.1:{}", site.nginx.port);
    let gw = Gateway::for_upstream(&upstream).await;
    let front = start_example(kind, &upstream, &gw).await;
    let logs = || logs_of(&front, &gw);
    assert_no_variant_reaches_a_protected_file(mode, front.port, &logs).await;
}

#[tokio::test]
async fn bent_paths_get_no_protected_file_through_the_nginx_example() {
    through_the_example(Kind::Nginx, "nginx auth_request").await;
}

#[tokio::test]
async fn bent_paths_get_no_protected_file_through_the_caddy_example() {
    through_the_example(Kind::Caddy, "caddy forward_auth").await;
}

/// Traefik is not packaged: its ForwardAuth call is made as Traefik makes it, with
/// `X-Forwarded-Uri` the request target it received (the path and query, for an absolute-form
/// target too).
#[tokio::test]
async fn bent_paths_are_never_let_in_by_the_traefik_endpoint() {
    let gw = Gateway::start(Opts::default()).await;
    let front = format!("127.0.0.1:{}", gw.port);
    let ask = |uri: String| {
        let front = front.clone();
        async move {
            let headers = [
                ("x-forwarded-method", "GET"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", WIKI),
                ("x-forwarded-uri", uri.as_str()),
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-port", "443"),
                ("x-forwarded-server", "traefik-1"),
                ("x-real-ip", "203.0.113.7"),
                ("accept", "application/json"),
            ];
            raw_try(gw.port, &front, TRAEFIK, &headers).await
        }
    };
    let mut failures = Vec::new();
    let abs_prefix = format!("http://{WIKI}");
    for target in all_variants(WIKI) {
        let uri = target
            .strip_prefix(&abs_prefix)
            .map(str::to_string)
            .unwrap_or(target);
        let (status, text) = ask(uri.clone()).await;
        if status == Some(200) {
            failures.push(format!("{uri:?} -> {text}"));
        }
    }
    assert!(
        failures.is_empty(),
        "the Traefik endpoint let in {} bent paths:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        gw.logs()
    );
    let (status, text) = ask("/public/info.txt".into()).await;
    assert_eq!(status, Some(200), "{text}");
    let (status, text) = ask("/secret".into()).await;
    assert_eq!(status, Some(401), "{text}");
}
