//! Every page the gateway shows, in a real browser at a phone's width (390 px) and a laptop's
//! (1280 px): nothing scrolls sideways, error text keeps a 4.5:1 contrast in the light and the
//! dark scheme, the branding from `[ui]` shows (the logo loads under the page's CSP), and
//! every gateway page has a way on. Screenshots go to `target/screenshots/pages/`.

use super::chrome::{Chrome, Options};
use super::harness::*;
use serde_json::{json, Value};
use std::path::PathBuf;

const WHOAMI_APP: &str = "whoami.test";
const AUTH: &str = "auth.test";
const SITE: &str = "Example Corp";

/// A small SVG logo (the gateway serves it at `/.portcullis/logo`).
const LOGO: &str = r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64"><rect width="64" height="64" rx="12" fill="#0f766e"/><path d="M16 44V20h8v24zm12 0V20h8v24zm12 0V20h8v24z" fill="#fff"/></svg>
"##;

fn branded(logo: &std::path::Path) -> Setup {
    Setup {
        extra_toml: format!(
            r##"
[[apps]]
name = "whoami"
hosts = ["{WHOAMI_APP}"]
upstream = "builtin:whoami"
flow = "{FLOW}"

[ui]
site_title = "{SITE}"
logo = {logo}
accent_color = "#0f766e"

[[ui.footer_links]]
label = "Privacy"
url = "https://example.com/privacy"

[[ui.footer_links]]
label = "Help desk"
url = "https://example.com/help"
"##,
            logo = toml_str(&logo.display().to_string()),
        ),
        ..Setup::default()
    }
}

fn shots() -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots/pages");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn script(chrome: &Chrome, js: &str, args: Value) -> Value {
    chrome
        .cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": js, "args": args })),
        )
        .await
}

/// Light or dark `prefers-color-scheme`, through the DevTools endpoint chromedriver exposes.
async fn scheme(chrome: &Chrome, dark: bool) {
    chrome
        .cmd(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({
                "cmd": "Emulation.setEmulatedMedia",
                "params": { "features": [
                    { "name": "prefers-color-scheme", "value": if dark { "dark" } else { "light" } }
                ] }
            })),
        )
        .await;
}

/// The viewport at exactly `width` CSS pixels (headless Chromium's window has a minimum width
/// above a phone's), as a phone shows it.
async fn viewport(chrome: &Chrome, width: u32) {
    chrome
        .cmd(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({
                "cmd": "Emulation.setDeviceMetricsOverride",
                "params": { "width": width, "height": 844, "deviceScaleFactor": 1, "mobile": width < 600 }
            })),
        )
        .await;
}

/// WCAG contrast of `selector`'s text against the first opaque background behind it.
const CONTRAST: &str = r#"
const parse = c => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null;
  const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
  return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 }; };
const lum = c => { const f = v => { v /= 255; return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
const el = document.querySelector(arguments[0]);
if (!el) return null;
const color = getComputedStyle(el).color;
let n = el, bg = null;
while (n) { const b = parse(getComputedStyle(n).backgroundColor); if (b && b.a > 0) { bg = getComputedStyle(n).backgroundColor; break; } n = n.parentElement; }
bg = bg || "rgb(255, 255, 255)";
const a = lum(parse(color)), b = lum(parse(bg));
return { ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05), color, bg };
"#;

/// The page at its current state: screenshot, no sideways scrolling, a way on, and (when the
/// page shows errors) their contrast in both schemes.
async fn check(chrome: &Chrome, width: u32, name: &str, want_link: bool) {
    // Let the page settle (a form post's answer may still be loading).
    chrome.wait_text(|t| !t.is_empty()).await;
    let m = script(
        chrome,
        "return { sw: document.documentElement.scrollWidth, iw: window.innerWidth,
                  links: document.querySelectorAll('main a[href], main button').length,
                  errors: !!document.querySelector('.errors p'),
                  title: document.title }",
        json!([]),
    )
    .await;
    use base64::Engine;
    let png = chrome.cmd(reqwest::Method::GET, "/screenshot", None).await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().unwrap())
        .unwrap();
    std::fs::write(shots().join(format!("{name}-{width}.png")), png).unwrap();

    assert_eq!(m["iw"], width, "{name}: viewport width");
    assert!(
        m["sw"].as_u64() <= m["iw"].as_u64(),
        "{name} at {width}px scrolls sideways: {m}"
    );
    if want_link {
        assert!(
            m["links"].as_u64().unwrap_or(0) > 0,
            "{name}: no way on (link or button): {m}"
        );
    }
    // Error text and the way-on link, in both schemes.
    for dark in [false, true] {
        scheme(chrome, dark).await;
        let bg = script(
            chrome,
            "return getComputedStyle(document.body).backgroundColor",
            json!([]),
        )
        .await;
        let label = if dark { "dark" } else { "light" };
        for (what, selector) in [("error text", ".errors p"), ("link", "main a[href]")] {
            let c = script(chrome, CONTRAST, json!([selector])).await;
            if c.is_null() {
                continue;
            }
            let ratio = c["ratio"].as_f64().unwrap_or(0.0);
            assert!(
                ratio >= 4.5,
                "{name} at {width}px, {label} scheme: {what} contrast {ratio:.2} < 4.5 ({c}, body {bg})"
            );
        }
        if dark {
            assert_ne!(
                bg, "rgb(255, 255, 255)",
                "{name}: dark scheme emulation took effect"
            );
            if m["errors"] == true || name == "signin" {
                let png = chrome.cmd(reqwest::Method::GET, "/screenshot", None).await;
                let png = base64::engine::general_purpose::STANDARD
                    .decode(png.as_str().unwrap())
                    .unwrap();
                std::fs::write(shots().join(format!("{name}-{width}-dark.png")), png).unwrap();
            }
        }
    }
    scheme(chrome, false).await;
}

/// Fetches `url` with `method` and `body` from the current page and shows the answer in its
/// place (for answers a link cannot lead to: 405, 413).
async fn show_fetched(chrome: &Chrome, method: &str, url: &str, body: Option<String>) -> u64 {
    let v = chrome
        .cmd(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({
                "script": "const [m, u, b, done] = arguments;
                    fetch(u, { method: m, body: b, headers: { 'content-type': 'application/x-www-form-urlencoded' } })
                      .then(r => r.text().then(t => { document.open(); document.write(t); document.close(); done(r.status); }))
                      .catch(e => done(String(e)));",
                "args": [method, url, body],
            })),
        )
        .await;
    v.as_u64().unwrap_or_else(|| panic!("fetch {url}: {v}"))
}

async fn sign_in(chrome: &Chrome, host: &str, user: &str, pw: &str) {
    chrome.go(&format!("http://{host}/")).await;
    chrome.type_into("#f-uid", user).await;
    chrome.click("button[type=submit]").await;
    chrome.wait_text(|t| t.contains("Signing in as")).await;
    chrome.type_into("#f-password", pw).await;
    chrome.click("button[type=submit]").await;
    chrome.wait_url(|u| !u.contains("/.portcullis/")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_reads_at_390_and_1280_px_with_readable_errors_in_light_and_dark() {
    let logo_dir = tempfile::tempdir().unwrap();
    let logo = logo_dir.path().join("logo.svg");
    std::fs::write(&logo, LOGO).unwrap();
    let gw = Gateway::start_with(branded(&logo)).await;

    // A second gateway with an auth host, for its root page and the unknown-host page.
    let sso = Gateway::prepare(Setup::default()).await;
    let text = std::fs::read_to_string(&sso.config_path).unwrap();
    std::fs::write(
        &sso.config_path,
        text.replacen(
            "[server]\n",
            &format!("[server]\nauth_url = \"http://{AUTH}:{}\"\n", sso.port),
            1,
        ),
    )
    .unwrap();
    let sso = sso.launch().await;

    for width in [390u32, 1280] {
        let chrome = Chrome::start_with(Options {
            window: (width, 844),
            ..Options::mapping(&[
                (APP, gw.port),
                (ADMIN_APP, gw.port),
                (DOWN_APP, gw.port),
                (UNKNOWN, gw.port),
                (WHOAMI_APP, gw.port),
                (AUTH, sso.port),
                (EXTRA_APP, sso.port),
            ])
        })
        .await;
        viewport(&chrome, width).await;

        // Sign-in: identification, its error, the password page and its error.
        chrome.go(&format!("http://{APP}/reports")).await;
        chrome.wait_url(|u| u.contains("/.portcullis/flow/")).await;
        let logo_loaded = script(
            &chrome,
            "const i = document.querySelector('.brand img'); return !!i && i.complete && i.naturalWidth > 0",
            json!([]),
        )
        .await;
        assert_eq!(logo_loaded, true, "the logo loads under the page's CSP");
        let title = script(
            &chrome,
            "return document.querySelector('h1').textContent",
            json!([]),
        )
        .await;
        assert_eq!(title, "Sign in");
        check(&chrome, width, "signin", true).await;
        chrome.click("button[type=submit]").await;
        chrome
            .wait_text(|t| t.contains("Enter your username"))
            .await;
        check(&chrome, width, "signin-error", true).await;

        chrome.type_into("#f-uid", "alice").await;
        chrome.click("button[type=submit]").await;
        chrome
            .wait_text(|t| t.contains("Signing in as alice"))
            .await;
        let pw = script(
            &chrome,
            "const u = document.querySelector('form input[name=username]');
             return { h1: document.querySelector('h1').textContent,
                      user: u && u.value, ac: u && u.getAttribute('autocomplete'), shown: !!(u && u.offsetParent) }",
            json!([]),
        )
        .await;
        assert_eq!(pw["h1"], "Enter your password", "{pw}");
        assert_eq!(
            pw["user"], "alice",
            "the password form carries the username: {pw}"
        );
        assert_eq!(pw["ac"], "username", "{pw}");
        assert_eq!(pw["shown"], false, "{pw}");
        check(&chrome, width, "password", true).await;
        chrome.type_into("#f-password", WRONG_PW).await;
        chrome.click("button[type=submit]").await;
        chrome.wait_text(|t| t.contains(INVALID_MSG)).await;
        check(&chrome, width, "password-error", true).await;

        // A stale form (its security token no longer matches): a styled page with a way on.
        script(
            &chrome,
            "document.querySelector('input[name=csrf_token]').value = 'stale'",
            json!([]),
        )
        .await;
        chrome.type_into("#f-password", ALICE_PW).await;
        chrome.click("button[type=submit]").await;
        chrome.wait_text(|t| t.contains("Page out of date")).await;
        check(&chrome, width, "csrf-failed", true).await;

        // Gateway pages.
        chrome
            .go(&format!("http://{APP}/.portcullis/nothing-here"))
            .await;
        assert!(chrome
            .wait_text(|t| t.contains("Page not found"))
            .await
            .contains("Page not found"));
        check(&chrome, width, "not-found", true).await;

        chrome.go(&format!("http://{UNKNOWN}/")).await;
        chrome.wait_text(|t| t.contains("No application")).await;
        check(&chrome, width, "unknown-host-no-auth-host", false).await;

        chrome.go(&format!("http://{DOWN_APP}/dashboard?x=1")).await;
        chrome
            .wait_text(|t| t.contains("Application unavailable"))
            .await;
        check(&chrome, width, "bad-gateway", true).await;

        chrome.go(&format!("http://{APP}/.portcullis/logout")).await;
        chrome.wait_text(|t| t.contains("Signed out")).await;
        check(&chrome, width, "signed-out", true).await;

        // From a page of the app (ours carry a CSP that forbids fetch).
        chrome.go(&format!("http://{APP}/public/start")).await;
        let status = show_fetched(&chrome, "PUT", &format!("/.portcullis/flow/{FLOW}"), None).await;
        assert_eq!(status, 405);
        chrome.wait_text(|t| t.contains("Not possible here")).await;
        check(&chrome, width, "method-not-allowed", true).await;

        // From a page of the app (ours carry a CSP that forbids fetch).
        chrome.go(&format!("http://{APP}/public/start")).await;
        let big = format!("a={}", "x".repeat(70 * 1024));
        let status = show_fetched(
            &chrome,
            "POST",
            &format!("/.portcullis/flow/{FLOW}"),
            Some(big),
        )
        .await;
        assert_eq!(status, 413);
        chrome.wait_text(|t| t.contains("Request too large")).await;
        check(&chrome, width, "payload-too-large", true).await;

        chrome.go(&format!("http://{AUTH}/")).await;
        chrome.wait_text(|t| t.contains("Not signed in")).await;
        check(&chrome, width, "auth-host-root", true).await;

        // On a gateway with an auth host, an unknown host links to it.
        chrome.go(&format!("http://{EXTRA_APP}/")).await;
        chrome.wait_text(|t| t.contains("No application")).await;
        check(&chrome, width, "unknown-host", true).await;

        // Signed in: the demo page, the sign-out confirm page, and a denial.
        sign_in(&chrome, WHOAMI_APP, "alice", ALICE_PW).await;
        chrome.go(&format!("http://{WHOAMI_APP}/a/rather/long/path/that/goes/on/and/on/and/on/and/on/without/stopping/anywhere?with=a-query-string-that-is-also-quite-long-and-has-no-spaces-at-all")).await;
        chrome.wait_text(|t| t.contains("Hello")).await;
        check(&chrome, width, "whoami", true).await;

        chrome
            .go(&format!("http://{WHOAMI_APP}/.portcullis/logout"))
            .await;
        chrome
            .wait_text(|t| t.contains("Sign out everywhere"))
            .await;
        check(&chrome, width, "logout-confirm", true).await;

        sign_in(&chrome, ADMIN_APP, "alice", ALICE_PW).await;
        chrome.wait_text(|t| t.contains("Access denied")).await;
        check(&chrome, width, "forbidden", true).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_logo_is_served_as_an_image_for_a_year_and_cannot_run_script() {
    let logo_dir = tempfile::tempdir().unwrap();
    let logo = logo_dir.path().join("logo.svg");
    std::fs::write(&logo, LOGO).unwrap();
    let gw = Gateway::start_with(branded(&logo)).await;
    let b = Browser::new(gw.port);
    let r = b
        .send(b.http.get(b.url_on(APP, "/.portcullis/logo?v=1")))
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.content_type(), "image/svg+xml");
    assert_eq!(r.body, LOGO);
    let cache = r.header("cache-control").unwrap_or_default();
    assert!(cache.contains("max-age=31536000"), "{cache}");
    assert_eq!(
        r.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("sandbox") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    // Pages allow images from their own origin and nowhere else.
    let page = b.get_html(&b.url_on(APP, "/.portcullis/logout")).await;
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("img-src 'self'"), "{csp}");
    // Unknown hosts get no logo (nothing under /.portcullis/ answers for them).
    let r = b
        .send(b.http.get(b.url_on(UNKNOWN, "/.portcullis/logo")))
        .await;
    assert_eq!(r.status, 404);
}

/// alice's devices for the settings page: long names and addresses, the one email device an
/// app's flow needs (so its row shows why it stays).
fn settings_devices(db: &std::path::Path) {
    use portcullis::store::{Device, DeviceClass, SledStore, Store};
    let store = SledStore::open(db).expect("open the database");
    let device = |id: &str, class, name: &str, address: &str, secret: Option<String>| Device {
        id: id.into(),
        username: "alice".into(),
        class,
        name: name.into(),
        address: address.into(),
        address_hash: None,
        stage: "setup".into(),
        created: 1_764_600_000,
        last_used: Some(1_764_603_600),
        secret,
    };
    let codes = json!({ "hashes": ["h1", "h2"] }).to_string();
    for d in [
        device(
            "dev-mail",
            DeviceClass::Email,
            "Email",
            "alice.with.a.rather.long.address@subdomain.example.com",
            None,
        ),
        device(
            "dev-phone",
            DeviceClass::Sms,
            "The phone I keep in the drawer of my desk at work",
            "+41791234589",
            None,
        ),
        device(
            "dev-codes",
            DeviceClass::Static,
            "Recovery codes",
            "",
            Some(codes),
        ),
    ] {
        store.put_device(&d).expect("put device");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_settings_page_reads_at_390_and_1280_px_and_is_reached_from_the_demo_page() {
    let setup = Setup {
        extra_toml: format!(
            r#"
[[apps]]
name = "whoami"
hosts = ["{WHOAMI_APP}"]
upstream = "builtin:whoami"
flow = "{FLOW}"

[[apps]]
name = "mail"
hosts = ["{EXTRA_APP}"]
upstream = "builtin:whoami"
flow = "mail-signin"

[[flows]]
slug = "mail-signin"
designation = "authentication"
stages = ["identify", "password", "mail_mfa", "login"]

[[flows]]
slug = "add-app"
title = "Add an authenticator app"
designation = "stage_configuration"
stages = ["identify", "password", "app_setup", "login"]

[stages.mail_mfa]
kind = "authenticator_validate"
device_classes = ["email"]
not_configured_action = "deny"

[stages.app_setup]
kind = "authenticator_totp"
friendly_name = "Authenticator app"
configure_flow = "add-app"
"#
        ),
        ..Setup::default()
    };
    let gw = Gateway::prepare(setup).await;
    settings_devices(&gw.db_path);
    let gw = gw.launch().await;
    // Another browser of alice's, so the sessions list has a row to sign out.
    let other = Browser::new(gw.port);
    api_sign_in(&other, "alice", ALICE_PW).await;

    for width in [390u32, 1280] {
        let chrome = Chrome::start_with(Options {
            window: (width, 844),
            ..Options::mapping(&[(APP, gw.port), (WHOAMI_APP, gw.port)])
        })
        .await;
        viewport(&chrome, width).await;
        sign_in(&chrome, WHOAMI_APP, "alice", ALICE_PW).await;
        chrome.wait_text(|t| t.contains("Hello")).await;
        chrome.click("a[href='/.portcullis/settings']").await;
        let text = chrome.wait_text(|t| t.contains("Your settings")).await;
        for want in [
            "Sign-in methods",
            "Recovery codes left: 2",
            "Add Authenticator app",
            "Where you are signed in",
            "This browser",
            "al***@subdomain.example.com",
        ] {
            assert!(text.contains(want), "{want} missing:\n{text}");
        }
        check(&chrome, width, "settings", true).await;

        // A refusal shows on the page: the email device is the last one the mail app needs.
        let refused = script(
            &chrome,
            "const f = [...document.querySelectorAll('form')].find(f => f.getAttribute('action') === '/.portcullis/settings' && f.querySelector('input[name=action][value=remove]'));
             f.querySelector('input[name=id]').value = 'dev-mail'; f.submit(); return true",
            json!([]),
        )
        .await;
        assert_eq!(refused, true);
        chrome
            .wait_text(|t| t.contains("This is your last one"))
            .await;
        check(&chrome, width, "settings-refused", true).await;

        // Renaming through the form.
        chrome
            .go(&format!("http://{WHOAMI_APP}/.portcullis/settings"))
            .await;
        chrome.wait_text(|t| t.contains("Your settings")).await;
        let e = chrome.find("#device-dev-codes input[name=name]").await;
        chrome
            .cmd(
                reqwest::Method::POST,
                &format!("/element/{e}/clear"),
                Some(json!({})),
            )
            .await;
        chrome
            .type_into("#device-dev-codes input[name=name]", "Codes in the safe")
            .await;
        chrome.click("#device-dev-codes button.secondary").await;
        let text = chrome
            .wait_text(|t| t.contains("The device was renamed."))
            .await;
        assert!(text.contains("Codes in the safe"), "{text}");
        check(&chrome, width, "settings-renamed", true).await;
        chrome
            .cmd(
                reqwest::Method::POST,
                &format!(
                    "/element/{}/clear",
                    chrome.find("#device-dev-codes input[name=name]").await
                ),
                Some(json!({})),
            )
            .await;
        chrome
            .type_into("#device-dev-codes input[name=name]", "Recovery codes")
            .await;
        chrome.click("#device-dev-codes button.secondary").await;
        chrome
            .wait_text(|t| t.contains("The device was renamed."))
            .await;
    }
}

/// Wrong passwords typed in the browser until `[regulation]` bans the address: the answer
/// is a styled page (no sideways scrolling, a way on, readable in both schemes) that reads
/// the same for a real account and a made-up name, with JavaScript on and off.
#[tokio::test(flavor = "multi_thread")]
async fn a_ban_after_wrong_passwords_is_a_page_that_tells_nothing_about_the_account() {
    let mut seen: Vec<(String, String)> = Vec::new();
    for (width, javascript, user) in [
        (390u32, true, "alice"),
        (1280, false, "alice"),
        (1280, true, "nobody-here"),
    ] {
        // A gateway of its own each time: the ban holds the address for minutes. The sign-in
        // itself would end after its own failure limit; here it outlasts the ban's.
        let gw = Gateway::start_with(Setup {
            failed_attempts: 10,
            ..Setup::default()
        })
        .await;
        let chrome = Chrome::start_with(Options {
            window: (width, 844),
            javascript,
            ..Options::mapping(&[(APP, gw.port)])
        })
        .await;
        viewport(&chrome, width).await;
        chrome.go(&format!("http://{APP}/reports")).await;
        chrome.wait_url(|u| u.contains("/.portcullis/flow/")).await;
        chrome.type_into("#f-uid", user).await;
        chrome.click("button[type=submit]").await;
        chrome.wait_text(|t| t.contains("Signing in as")).await;
        let mut banned = String::new();
        for _ in 0..6 {
            chrome.type_into("#f-password", WRONG_PW).await;
            chrome.click("button[type=submit]").await;
            let page = chrome
                .wait_text(|t| t.contains(INVALID_MSG) || t.contains("Too many"))
                .await;
            assert!(
                !page.contains("Start the sign-in again"),
                "the sign-in ended before regulation answered: {page}"
            );
            if page.contains("Too many") {
                banned = page;
                break;
            }
        }
        assert!(
            banned.contains("Too many failed attempts. Wait a moment, then try again."),
            "{user}, {width}px, js {javascript}: no ban page after six wrong passwords"
        );
        assert!(
            !banned.contains(user),
            "the ban page names the account: {banned}"
        );
        let name = format!("banned-{}", if javascript { "js" } else { "nojs" });
        check(&chrome, width, &format!("{name}-{user}"), true).await;
        seen.push((user.to_string(), banned));
    }
    // The same words for a real account and a made-up name.
    assert_eq!(seen[0].1, seen[2].1, "ban pages differ: {seen:?}");
}
