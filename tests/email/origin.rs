//! Magic links in mail point at the configured origin of the host the sign-in runs on (its
//! scheme and port from config), never at the `Host` header the request carried.

use crate::harness::Browser;
use crate::smtp::{SmtpOpts, SmtpServer};
use crate::support::*;
use serde_json::json;

/// Starts a link-mode sign-in as alice with every request carrying `Host: host`, up to the
/// point where the link is mailed.
async fn start_link_sign_in(b: &Browser, host: &str) {
    let url = b.url(&api(EMAIL_ONLY));
    let send = |rb: reqwest::RequestBuilder| {
        b.send(rb.header("host", host).header("accept", "application/json"))
    };
    let r = send(b.http.get(&url)).await;
    assert_eq!(r.json()["component"], "identification", "{}", r.describe());
    let r = send(b.http.post(&url).json(&json!({ "uid": "alice" }))).await;
    // The inline setup's page reads as the validation's (see enumeration.rs).
    assert_eq!(
        r.json()["component"],
        "authenticator_validate",
        "{}",
        r.describe()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn magic_link_in_the_mail_is_built_from_config_not_from_the_host_header() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let mut spec = Spec::new(smtp.email_toml()).otp("mode = \"link\"");
    spec.extra.push_str(&format!(
        "\n[[apps]]\nname = \"links\"\nhosts = [\"link.test\"]\nupstream = \"127.0.0.1:9\"\nflow = \"{EMAIL_ONLY}\"\nscheme = \"https\"\nport = 8443\n"
    ));
    let gw = Gw::start(spec).await;
    // (Host the client sent, where the mailed link must point.)
    let cases = [
        ("link.test:8666", "https://link.test:8443".to_string()),
        ("LINK.test", "https://link.test:8443".to_string()),
        ("app.test:8666", format!("http://app.test:{}", gw.port)),
    ];
    for (n, (host, origin)) in cases.iter().enumerate() {
        start_link_sign_in(&gw.browser(), host).await;
        let link = smtp.nth(n + 1).await.link();
        assert!(
            link.starts_with(&format!("{origin}/.portcullis/link?token=")),
            "Host {host}: the link points elsewhere: {link}"
        );
    }
}
