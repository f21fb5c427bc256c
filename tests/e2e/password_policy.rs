//! Password policies end to end: a prompt's new password refused by zxcvbn and by the offline
//! breached-password list, with the policy's message in both faces; the other answers stay in
//! the form, the password never does, and neither it nor its hash reaches the log.

use crate::harness::*;
use serde_json::json;

const WEAK: &str = "password123";
const BREACHED: &str = "Marmalade-Tugboat-Quarry-61";
const STRONG: &str = "tangerine-Orbit-lantern-58";

/// A range folder holding `BREACHED`, seen 4 times, as the HIBP downloader writes it.
fn range_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let hex = sha1_upper(BREACHED);
    let (prefix, suffix) = hex.split_at(5);
    std::fs::write(
        dir.path().join(format!("{prefix}.txt")),
        format!("00000000000000000000000000000000001:9\r\n{suffix}:4\r\n"),
    )
    .expect("range file");
    dir
}

fn sha1_upper(s: &str) -> String {
    // The test computes the hash itself with the system's sha1sum, apart from the gateway's code.
    let out = std::process::Command::new("sha1sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .expect("sha1sum");
    String::from_utf8_lossy(&out.stdout)[..40].to_ascii_uppercase()
}

fn setup(hibp: &std::path::Path) -> Setup {
    Setup {
        extra_toml: format!(
            r#"
[policies.strong_password]
kind = "password"
password_field = "new_password"
length_min = 10
check_zxcvbn = true
zxcvbn_score_threshold = 2
hibp_directory = {dir}
message = "Choose a stronger password."

[stages.choose_password]
kind = "prompt"
fields = [{{ key = "nickname", label = "Nickname" }}, {{ key = "new_password", label = "New password", type = "password" }}]
validation_policies = ["strong_password"]

[[flows]]
slug = "choose"
title = "Choose a password"
designation = "authentication"
stages = ["identify", "password", "choose_password", "login"]
"#,
            dir = toml_str(&hibp.display().to_string())
        ),
        ..Setup::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_weak_or_breached_password_is_refused_with_the_message_in_both_faces() {
    let hibp = range_dir();
    let gw = Gateway::start_with(setup(hibp.path())).await;

    // JSON face.
    let b = gw.browser();
    let api = b.url_on(APP, "/.portcullis/api/flow/choose");
    b.get_json(&api).await;
    b.post_json(&api, &json!({ "uid": "alice" })).await;
    let r = b.post_json(&api, &json!({ "password": ALICE_PW })).await;
    assert_eq!(r.json()["component"], "prompt", "{}", r.body);
    for (pw, why) in [(WEAK, None), (BREACHED, Some("appeared 4 times"))] {
        let r = b
            .post_json(&api, &json!({ "nickname": "Al", "new_password": pw }))
            .await;
        let v = r.json();
        assert_eq!(v["component"], "prompt", "{pw}: {v}");
        assert_eq!(v["errors"][0], "Choose a stronger password.", "{pw}: {v}");
        if let Some(why) = why {
            assert!(v["errors"].to_string().contains(why), "{pw}: {v}");
        }
        let fields = v["fields"].as_array().expect("fields");
        let field = |n: &str| fields.iter().find(|f| f["name"] == n).expect(n).clone();
        assert_eq!(field("nickname")["value"], "Al", "{v}");
        assert!(field("new_password").get("value").is_none(), "{v}");
    }
    let r = b
        .post_json(&api, &json!({ "nickname": "Al", "new_password": STRONG }))
        .await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.body);

    // HTML face.
    let b = gw.browser();
    let start = b.get_html(&b.url_on(APP, "/.portcullis/flow/choose")).await;
    let page = form_page(&start);
    let page = next_page(&b, &submit(&b, &page, &[("uid", "alice")]).await).await;
    let page = next_page(&b, &submit(&b, &page, &[("password", ALICE_PW)]).await).await;
    for (pw, why) in [(WEAK, None), (BREACHED, Some("appeared 4 times"))] {
        let r = submit(&b, &page, &[("nickname", "Al"), ("new_password", pw)]).await;
        let again = if r.status == 303 {
            next_page(&b, &r).await
        } else {
            form_page(&r)
        };
        assert!(
            again.html.contains("Choose a stronger password."),
            "{pw}:\n{}",
            again.html
        );
        if let Some(why) = why {
            assert!(again.html.contains(why), "{pw}:\n{}", again.html);
        }
        assert_eq!(input_value(&again.html, "nickname").as_deref(), Some("Al"));
        assert!(!again.html.contains(pw), "{pw} echoed in the page");
    }

    // Neither the password nor its hash is logged.
    let logs = gw.logs();
    for secret in [WEAK, BREACHED, STRONG] {
        let hex = sha1_upper(secret);
        for needle in [secret.to_string(), hex.clone(), hex[5..].to_string()] {
            assert!(
                !logs
                    .to_ascii_uppercase()
                    .contains(&needle.to_ascii_uppercase()),
                "{needle} in the log"
            );
        }
    }
}
