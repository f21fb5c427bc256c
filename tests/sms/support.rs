//! The SMS tests' config (flows, the SMS setup stage for either provider, validation, a prompt
//! stage, optionally an email setup stage), flow drivers for both faces, and a small SMTP sink
//! (the real aiosmtpd server of `tests/support/smtp_server.py`) for the email+SMS choice.
#![allow(dead_code)]

use crate::harness::*;
use crate::provider::{Recorded, SmsServer};
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Enrols a phone: identify, password, SMS setup, login.
pub const ENROL: &str = "sms-enrol";
/// Signs in with the SMS factor: identify, password, validation, login.
pub const SIGNIN: &str = "sms-signin";
/// The phone comes from a prompt stage: identify, password, prompt, SMS setup, login.
pub const PROMPTED: &str = "sms-prompt";
/// Enrols an email address and then a phone.
pub const BOTH: &str = "sms-email-enrol";

pub const SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "twilio-auth-token-4242";
pub const FROM: &str = "+15550001";

/// As a person types it, and normalised.
pub const NUMBER: &str = "+41 79 123 45 67";
pub const NUMBER_E164: &str = "+41791234567";
pub const OTHER: &str = "+49 (151) 2345-6789";
pub const OTHER_E164: &str = "+4915123456789";

pub const SEND_FAILED: &str = "We could not send the text message just now. Try again in a moment.";
pub const BAD_NUMBER: &str = "Invalid phone number or missing region code";
pub const COOLDOWN: &str = "A code was just sent. Wait a little before asking for another.";
pub const LIMIT_NUMBER: &str = "Too many codes were sent to this number. Try again later.";
pub const LIMIT_USER: &str = "Too many codes were sent for this account. Try again later.";
pub const LIMIT_CLIENT: &str = "Too many codes were requested from your network. Try again later.";
pub const LIMIT_GLOBAL: &str = "Text messages are temporarily unavailable. Try again later.";
pub const LIMIT_SENDS: &str =
    "No more codes can be sent for this sign-in right now. Try again later.";
pub const NOT_CONFIGURED: &str =
    "This account has no second factor set up, so it cannot sign in here. Contact whoever runs this site.";

/// `[stages.sms]` provider keys for Twilio at `base`.
pub fn twilio(base: &str) -> BTreeMap<String, String> {
    keys(&[
        ("provider", "\"twilio\"".into()),
        ("account_sid", toml_str(SID)),
        ("auth_token", toml_str(TOKEN)),
        ("api_base", toml_str(base)),
    ])
}

/// `[stages.sms]` provider keys for a generic endpoint, bearer token.
pub fn generic_bearer(url: &str, token: &str) -> BTreeMap<String, String> {
    keys(&[
        ("provider", "\"generic\"".into()),
        ("url", toml_str(url)),
        ("auth_type", "\"bearer\"".into()),
        ("auth", toml_str(token)),
    ])
}

/// `[stages.sms]` provider keys for a generic endpoint, basic auth.
pub fn generic_basic(url: &str, user: &str, password: &str) -> BTreeMap<String, String> {
    keys(&[
        ("provider", "\"generic\"".into()),
        ("url", toml_str(url)),
        ("auth_type", "\"basic\"".into()),
        ("auth", toml_str(user)),
        ("auth_password", toml_str(password)),
    ])
}

fn keys(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// The config of one test: the SMS stage's keys (raw TOML values), the validation stage's,
/// the prompt stage's fields, and optionally an SMTP server for an email setup stage.
#[derive(Clone, Debug)]
pub struct Conf {
    pub sms: BTreeMap<String, String>,
    pub validate: BTreeMap<String, String>,
    /// `[[stages.ask.fields]]` tables, verbatim.
    pub prompt_fields: String,
    pub smtp_port: Option<u16>,
    /// Appended verbatim (e.g. `[ui]`).
    pub extra: String,
    pub users: Vec<UserSpec>,
}

impl Conf {
    /// Small, test-friendly defaults: no resend cooldown, a 2 s provider timeout, enough sends.
    pub fn new(provider: BTreeMap<String, String>) -> Conf {
        let mut sms = keys(&[
            ("from_number", toml_str(FROM)),
            ("friendly_name", "\"Work phone\"".into()),
            ("timeout", "2".into()),
            ("resend_cooldown", "\"0s\"".into()),
            ("max_challenges_sent", "10".into()),
        ]);
        sms.extend(provider);
        Conf {
            sms,
            validate: keys(&[
                ("device_classes", "[\"sms\"]".into()),
                ("not_configured_action", "\"deny\"".into()),
                ("max_challenges_sent", "10".into()),
            ]),
            prompt_fields: r#"
[[stages.ask.fields]]
key = "phone"
label = "Phone"
type = "tel"
required = true
placeholder = "+41 ..."
pattern = "\\+.*"
pattern_message = "Use the international format, starting with +"
"#
            .into(),
            smtp_port: None,
            extra: String::new(),
            users: vec![alice(), bob()],
        }
    }

    /// Sets (or replaces) a key of `[stages.sms]`; `value` is raw TOML.
    pub fn sms(mut self, key: &str, value: &str) -> Conf {
        self.sms.insert(key.into(), value.into());
        self
    }

    pub fn validate(mut self, key: &str, value: &str) -> Conf {
        self.validate.insert(key.into(), value.into());
        self
    }

    pub fn toml(&self) -> String {
        let table = |name: &str, kind: &str, m: &BTreeMap<String, String>| {
            let mut s = format!("\n[stages.{name}]\nkind = \"{kind}\"\n");
            for (k, v) in m {
                s.push_str(&format!("{k} = {v}\n"));
            }
            s
        };
        let mut out = String::new();
        out.push_str(&format!(
            r#"
[[flows]]
slug = "{ENROL}"
title = "Add a phone"
designation = "authentication"
stages = ["identify", "password", "sms", "login"]

[[flows]]
slug = "{SIGNIN}"
title = "Sign in with a code"
designation = "authentication"
stages = ["identify", "password", "validate", "login"]

[[flows]]
slug = "{PROMPTED}"
title = "Your details"
designation = "authentication"
stages = ["identify", "password", "ask", "sms", "login"]
"#
        ));
        if self.smtp_port.is_some() {
            out.push_str(&format!(
                r#"
[[flows]]
slug = "{BOTH}"
title = "Add email and phone"
designation = "authentication"
stages = ["identify", "password", "email_setup", "sms", "login"]
"#
            ));
        }
        out.push_str(&table("sms", "authenticator_sms", &self.sms));
        out.push_str(&table("validate", "authenticator_validate", &self.validate));
        out.push_str("\n[stages.ask]\nkind = \"prompt\"\n");
        out.push_str(&self.prompt_fields);
        if let Some(port) = self.smtp_port {
            out.push_str(&format!(
                r#"
[stages.email_setup]
kind = "authenticator_email"
friendly_name = "Mailbox"
use_global_settings = false
host = "127.0.0.1"
port = {port}
from = "gate@example.com"
timeout = 5
max_challenges_sent = 10
"#
            ));
        }
        out.push('\n');
        out.push_str(&self.extra);
        out
    }

    pub async fn start(&self) -> Gateway {
        Gateway::start_with(Setup {
            users: self.users.clone(),
            extra_toml: self.toml(),
            ..Setup::default()
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// JSON face
// ---------------------------------------------------------------------------------------------

pub fn api(slug: &str) -> String {
    format!("/.portcullis/api/flow/{slug}")
}

pub fn html(slug: &str) -> String {
    format!("/.portcullis/flow/{slug}")
}

/// POSTs to the JSON flow and returns the answer (must be 200 JSON).
pub async fn post(b: &Browser, slug: &str, body: Value) -> Value {
    let r = b.post_json(&b.url(&api(slug)), &body).await;
    assert_eq!(r.status, 200, "POST {body} to {slug}: {}", r.describe());
    r.json()
}

pub async fn get(b: &Browser, slug: &str) -> Value {
    let r = b.get_json(&b.url(&api(slug))).await;
    assert_eq!(r.status, 200, "GET {slug}: {}", r.describe());
    r.json()
}

/// Starts `slug` and answers identification and password; returns the next challenge.
pub async fn past_password(b: &Browser, slug: &str, uid: &str, pw: &str) -> Value {
    let v = get(b, slug).await;
    assert_eq!(v["component"], "identification", "first challenge: {v}");
    let v = post(b, slug, json!({ "uid": uid })).await;
    assert_eq!(v["component"], "password", "after uid: {v}");
    post(b, slug, json!({ "password": pw })).await
}

pub fn errors(v: &Value) -> Vec<String> {
    v["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub fn info(v: &Value) -> Vec<String> {
    v["info"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub fn field_names(v: &Value) -> Vec<String> {
    v["fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["fields"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("no field {name:?} in {v}"))
}

pub fn action_names(v: &Value) -> Vec<String> {
    v["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts the SMS setup stage asks for a number (and nothing else).
pub fn assert_asks_phone(v: &Value) {
    assert_eq!(
        v["component"], "authenticator_sms",
        "expected the SMS stage: {v}"
    );
    assert_eq!(
        field_names(v),
        vec!["phone"],
        "expected one phone field: {v}"
    );
    assert_eq!(field(v, "phone")["type"], "tel", "phone field type: {v}");
}

/// Asserts a code challenge of `component` with a resend action.
pub fn assert_asks_code(v: &Value, component: &str) {
    assert_eq!(v["component"], component, "expected {component}: {v}");
    assert_eq!(field_names(v), vec!["code"], "expected one code field: {v}");
    assert!(
        action_names(v).contains(&"resend".to_string()),
        "no resend action: {v}"
    );
}

/// Asserts the flow ended with a session: `redirect` and a session cookie set.
pub fn assert_signed_in(r: &Resp) {
    assert_eq!(r.status, 200, "final step: {}", r.describe());
    let v = r.json();
    assert_eq!(
        v["component"], "redirect",
        "expected the flow to finish: {v}"
    );
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_some(),
        "no session cookie on the final step: {}",
        r.describe()
    );
}

/// POSTs the code; asserts the flow finished with a session cookie.
pub async fn finish_with_code(b: &Browser, slug: &str, code: &str) {
    let r = b
        .post_json(&b.url(&api(slug)), &json!({ "code": code }))
        .await;
    assert_signed_in(&r);
}

/// Starts a JSON enrolment of `number` for `uid` up to the code challenge; returns the client
/// and the one request the provider received.
pub async fn start_enrol(
    gw: &Gateway,
    sms: &SmsServer,
    uid: &str,
    pw: &str,
    number: &str,
) -> (Browser, Recorded) {
    let b = gw.browser();
    let v = past_password(&b, ENROL, uid, pw).await;
    assert_asks_phone(&v);
    let before = sms.count();
    let v = post(&b, ENROL, json!({ "phone": number })).await;
    assert_asks_code(&v, "authenticator_sms");
    assert!(errors(&v).is_empty(), "enrolment of {number}: {v}");
    let seen = sms.wait_for(before + 1).await;
    assert_eq!(seen.len(), before + 1, "exactly one SMS per enrolment");
    (b, seen[before].clone())
}

/// The whole JSON enrolment of `number` for `uid`; returns the request the provider received.
pub async fn enrol(gw: &Gateway, sms: &SmsServer, uid: &str, pw: &str, number: &str) -> Recorded {
    let (b, req) = start_enrol(gw, sms, uid, pw, number).await;
    finish_with_code(&b, ENROL, &req.code()).await;
    req
}

/// A code that is certainly not `code` (same length).
pub fn other_code(code: &str) -> String {
    code.chars()
        .map(|c| char::from(b'0' + ((c as u8 - b'0' + 1) % 10)))
        .collect()
}

/// `phone=` of `portcullis user show NAME`.
pub async fn user_phone(gw: &Gateway, name: &str) -> String {
    let out = gw.cli(&["user", "show", name], None).await;
    assert!(out.ok(), "user show {name}: {}", out.all());
    out.stdout
        .split('\t')
        .find_map(|p| p.trim().strip_prefix("phone="))
        .unwrap_or_else(|| panic!("no phone= in `user show {name}`: {}", out.stdout))
        .trim()
        .to_string()
}

/// Asserts the gateway log never contains `code`.
pub fn assert_log_free_of(gw: &Gateway, code: &str) {
    let logs = gw.logs();
    assert!(
        !logs.contains(code),
        "the gateway log contains the one-time code {code}:\n{logs}"
    );
}

// ---------------------------------------------------------------------------------------------
// HTML face
// ---------------------------------------------------------------------------------------------

/// Whether the page has `<button ... name="action" value="resend">`.
pub fn has_resend_button(html: &str) -> bool {
    let re = regex::Regex::new(r#"(?is)<button\b[^>]*>"#).unwrap();
    let found = re.find_iter(html).any(|m| {
        let t = m.as_str();
        t.contains(r#"name="action""#) && t.contains(r#"value="resend""#)
    });
    found
}

/// The radio inputs named `name`: (value, checked).
pub fn radios(html: &str, name: &str) -> Vec<String> {
    inputs(html)
        .into_iter()
        .filter(|i| {
            i.get("type").map(String::as_str) == Some("radio")
                && i.get("name").map(String::as_str) == Some(name)
        })
        .map(|i| i.get("value").cloned().unwrap_or_default())
        .collect()
}

/// Identification and password through the HTML forms of `slug`; returns the next page.
pub async fn html_past_password(b: &Browser, slug: &str, uid: &str, pw: &str) -> FormPage {
    let first = b.get_html(&b.url(&html(slug))).await;
    let page = form_page(&first);
    assert!(has_input(&page.html, "uid"), "no uid field:\n{}", page.html);
    let r = submit(b, &page, &[("uid", uid)]).await;
    let page = next_page(b, &r).await;
    assert!(
        has_input(&page.html, "password"),
        "no password field:\n{}",
        page.html
    );
    let r = submit(b, &page, &[("password", pw)]).await;
    if r.status == 200 {
        // The next stage answered at once with an error (e.g. a failed send): its page.
        return form_page(&r);
    }
    next_page(b, &r).await
}

/// The error lines of an HTML flow page.
pub fn page_errors(html: &str) -> Vec<String> {
    let block = regex::Regex::new(r#"(?is)<div class="errors"[^>]*>(.*?)</div>"#).unwrap();
    let p = regex::Regex::new(r"(?is)<p>(.*?)</p>").unwrap();
    let lines = match block.captures(html) {
        Some(c) => p
            .captures_iter(&c[1])
            .map(|m| m[1].trim().to_string())
            .collect(),
        None => Vec::new(),
    };
    lines
}

// ---------------------------------------------------------------------------------------------
// SMTP sink for the email device
// ---------------------------------------------------------------------------------------------

pub struct SmtpSink {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-sms-smtp-")
            .tempdir()
            .unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("--dir")
            .arg(dir.path())
            .arg("--port")
            .arg("0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3 tests/support/smtp_server.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the SMTP server did not say `ready <port>` within 20 s");
        let port = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the SMTP server: {line:?}"));
        SmtpSink { port, dir, child }
    }

    /// Raw contents of the stored messages, oldest first.
    pub fn messages(&self) -> Vec<Value> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP server received {} message(s), expected {n}",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The 6-digit code of a stored message: the line that is only the code, in whichever part
/// (7bit, quoted-printable or base64).
pub fn mail_code(msg: &Value) -> String {
    let raw = msg["content"]
        .as_str()
        .unwrap_or_default()
        .replace("\r\n", "\n");
    let line = regex::Regex::new(r"(?m)^\s*(\d{6})\s*$").unwrap();
    let mut texts = vec![raw.clone()];
    // base64 parts: decode every blank-line separated block that decodes.
    for block in raw.split("\n\n") {
        let clean: String = block
            .lines()
            .take_while(|l| !l.starts_with("--"))
            .collect::<Vec<_>>()
            .join("");
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(clean.trim()) {
            texts.push(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    for t in texts {
        if let Some(c) = line.captures(&t) {
            return c[1].to_string();
        }
    }
    panic!("no code line in the message:\n{raw}");
}
