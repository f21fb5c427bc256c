//! The whole account lifecycle of issue 13, as Bob lives it, in real headless Chromium over
//! WebDriver against the real gateway, a real SMTP server (aiosmtpd) and the SMS provider
//! stand-in: an admin invites him from the CLI; he opens the link, picks a username and a
//! password, confirms his email with a code, sets up a passkey (Chromium's virtual
//! authenticator) and lands on the app; he signs out; "Forgot password?" mails him a link, he
//! proves his passkey again and sets a new password, and his old session (in a second
//! browser) ends; in his settings he adds an SMS phone, renames and removes a device and signs
//! out the other browser; then he deletes his account.
//!
//! Every page is photographed at 390 px and 1280 px wide, whole, under
//! `target/screenshots/story/` (`NN-<page>-<width>.png`, in the order Bob sees them).
//!
//! The app is served on `localhost`: the one plain-HTTP origin browsers run WebAuthn on.

use super::chrome::{Chrome, Options};
use super::harness::*;
use super::mail::Mail;
use super::provider::SmsServer;
use super::smtp::{SmtpOpts, SmtpServer};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const BOB_EMAIL: &str = "bob@example.com";
const BOB: &str = "bobby";
const FIRST_PW: &str = "Bobs-first-Passw0rd-4417";
const NEW_PW: &str = "Bobs-second-Passw0rd-9902";
const PHONE: &str = "+41 79 555 12 34";
/// The port written into the config before the listener is known; replaced at start.
const PORT_PLACEHOLDER: &str = "localhost:1\"";

const SIGN_IN: &str = "story-signin";
const ENROL: &str = "story-enrol";
const RECOVER: &str = "story-recovery";
const ADD_SMS: &str = "story-add-sms";
const LEAVE: &str = "story-leave";

/// What this build has of the story's pieces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pieces {
    /// Everything: the `email` verification stage and recovery (recover), the settings page
    /// (settings), besides enrolment (enrol) and unenrolment (gate).
    All,
    /// Without recovery: the email code comes from an `authenticator_email` stage, there is
    /// no recovery flow, and settings are not reached.
    WithoutRecoveryAndSettings,
}

/// The flows and stages of the story, on `localhost`.
fn config(smtp: &SmtpServer, sms: &SmsServer, pieces: Pieces) -> String {
    let all = format!(
        r#"
[ui]
site_title = "Story"

[settings]
reauthentication_flow = "{SIGN_IN}"
max_age = "4s"

[email]
{email}

[webauthn]
rp_id = "localhost"
origins = ["http://localhost:1"]

[[apps]]
name = "story"
hosts = ["localhost"]
upstream = "builtin:whoami"
flow = "{SIGN_IN}"

[[flows]]
slug = "{SIGN_IN}"
title = "Sign in"
designation = "authentication"
stages = ["st-identify", "st-password", "st-mfa", "login"]

[[flows]]
slug = "{ENROL}"
title = "Create your account"
designation = "enrollment"
stages = ["st-invitation", "st-account", "st-write", "st-verify", "st-passkey", "login"]

[[flows]]
slug = "{RECOVER}"
title = "Reset your password"
designation = "recovery"
stages = ["st-identify", "st-mail-link", "st-mfa", "st-new-password", "st-write", "login"]

[[flows]]
slug = "{ADD_SMS}"
title = "Add a phone"
designation = "stage_configuration"
stages = ["st-sms"]

[[flows]]
slug = "{LEAVE}"
title = "Delete your account"
designation = "unenrollment"
stages = ["st-mfa", "st-delete"]

[stages.st-identify]
kind = "identification"
user_fields = ["username", "email"]

[stages.st-password]
kind = "password"
recovery_flow = "{RECOVER}"

[stages.st-mfa]
kind = "authenticator_validate"
device_classes = ["webauthn", "sms"]
not_configured_action = "deny"

[stages.st-invitation]
kind = "invitation"
continue_flow_without_invitation = false

[stages.st-account]
kind = "prompt"
fields = [
  {{ key = "username", label = "Username", type = "text" }},
  {{ key = "password", label = "Password", type = "password" }},
]

[stages.st-write]
kind = "user_write"
user_creation_mode = "create_when_required"

[stages.st-verify]
kind = "email"
mode = "code"
code_length = 6
activate_user_on_success = true

[stages.st-mail-link]
kind = "email"
mode = "link"

[stages.st-new-password]
kind = "prompt"
fields = [{{ key = "password", label = "New password", type = "password" }}]

[stages.st-passkey]
kind = "authenticator_webauthn"
user_verification = "required"
resident_key_requirement = "required"
friendly_name = "Laptop passkey"

[stages.st-sms]
kind = "authenticator_sms"
provider = "generic"
url = "{sms}/send"
auth_type = "bearer"
auth = "sms-token-story"
from_number = "+15550001"
timeout = 5
resend_cooldown = "0s"
friendly_name = "Phone"
configure_flow = "{ADD_SMS}"

[stages.st-delete]
kind = "user_delete"
"#,
        email = smtp.email_toml(),
        sms = sms.base(),
    );
    if pieces == Pieces::All {
        return all;
    }
    // Without the `email` stage and `recovery_flow`.
    let recovery = all
        .find("[[flows]]\nslug = \"story-recovery\"")
        .zip(all.find("[[flows]]\nslug = \"story-add-sms\""));
    let mut some = match recovery {
        Some((from, to)) => format!("{}{}", &all[..from], &all[to..]),
        None => all.clone(),
    };
    some = some
        .replace(&format!("recovery_flow = \"{RECOVER}\"\n"), "")
        .replace(
            "[stages.st-verify]\nkind = \"email\"\nmode = \"code\"\ncode_length = 6\nactivate_user_on_success = true",
            "[stages.st-verify]\nkind = \"authenticator_email\"\nmode = \"code\"",
        )
        .replace("[stages.st-mail-link]\nkind = \"email\"\nmode = \"link\"\n", "");
    assert!(!some.contains("kind = \"email\""), "{some}");
    some
}

/// Everything Bob's story runs against.
struct Story {
    gw: Gateway,
    smtp: SmtpServer,
    sms: SmsServer,
    /// Bob's laptop.
    laptop: Chrome,
    /// The virtual authenticator in the laptop holding Bob's passkey.
    authenticator: String,
    shots: Shots,
}

impl Story {
    async fn start(pieces: Pieces) -> Story {
        let smtp = SmtpServer::start(SmtpOpts::plain()).await;
        let sms = SmsServer::start().await;
        let setup = Setup {
            users: vec![alice()],
            extra_toml: config(&smtp, &sms, pieces),
            ..Setup::default()
        };
        let gw = Gateway::prepare(setup).await;
        let text = std::fs::read_to_string(&gw.config_path).unwrap();
        let text = text.replace(PORT_PLACEHOLDER, &format!("localhost:{}\"", gw.port));
        std::fs::write(&gw.config_path, text).unwrap();
        let gw = gw.launch().await;
        let laptop = browser(&gw).await;
        let authenticator = authenticator(&laptop).await;
        Story {
            gw,
            smtp,
            sms,
            laptop,
            authenticator,
            shots: Shots::new(match pieces {
                Pieces::All => "story",
                Pieces::WithoutRecoveryAndSettings => "partial",
            }),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.gw.port)
    }

    /// Photographs the laptop's page as `name`.
    async fn shot(&self, name: &str) {
        self.shots.take(&self.laptop, name).await;
    }
}

/// A Chromium at 1280 px wide whose `localhost` is the gateway.
async fn browser(gw: &Gateway) -> Chrome {
    let mut opts = Options::mapping(&[(APP, gw.port)]);
    opts.window = (1280, 900);
    Chrome::start_with(opts).await
}

/// A platform authenticator that stores passkeys and verifies the user.
async fn authenticator(chrome: &Chrome) -> String {
    let v = chrome
        .cmd(
            reqwest::Method::POST,
            "/webauthn/authenticator",
            Some(json!({
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserVerified": true,
                "isUserConsenting": true,
            })),
        )
        .await;
    v.as_str().expect("authenticator id").to_string()
}

async fn credentials(chrome: &Chrome, auth: &str) -> Vec<Value> {
    chrome
        .cmd(
            reqwest::Method::GET,
            &format!("/webauthn/authenticator/{auth}/credentials"),
            None,
        )
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Whole-page screenshots at the two widths, numbered in the order taken, under
/// `target/screenshots/story/` as `<prefix>-NN-<page>-<width>.png`.
pub struct Shots {
    dir: std::path::PathBuf,
    prefix: &'static str,
    n: AtomicU32,
}

/// Phone and desktop widths, with the height a phone and a laptop show at first.
const WIDTHS: [(u32, u32, bool); 2] = [(390, 844, true), (1280, 800, false)];

impl Shots {
    /// Removes the pictures an earlier run with this prefix left.
    pub fn new(prefix: &'static str) -> Shots {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots/story");
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{prefix}-"))
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Shots {
            dir,
            prefix,
            n: AtomicU32::new(0),
        }
    }

    /// The whole page as `chrome` shows it, at 390 px (as a phone) and at 1280 px.
    pub async fn take(&self, chrome: &Chrome, name: &str) {
        use base64::Engine;
        let n = self.n.fetch_add(1, Ordering::SeqCst) + 1;
        for (width, height, mobile) in WIDTHS {
            metrics(chrome, width, height, mobile).await;
            // The whole page: as tall as its content, at least a screen.
            let tall = chrome
                .cmd(
                    reqwest::Method::POST,
                    "/execute/sync",
                    Some(json!({"script": "return Math.ceil(document.documentElement.scrollHeight)", "args": []})),
                )
                .await
                .as_u64()
                .unwrap_or(u64::from(height)) as u32;
            metrics(chrome, width, tall.clamp(height, 6000), mobile).await;
            let v = chrome.cmd(reqwest::Method::GET, "/screenshot", None).await;
            let png = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap();
            let file = format!("{}-{n:02}-{name}-{width}.png", self.prefix);
            std::fs::write(self.dir.join(file), png).unwrap();
        }
        metrics(chrome, 1280, 900, false).await;
    }
}

/// Lays the page out as a `width` x `height` screen (a phone when `mobile`).
async fn metrics(chrome: &Chrome, width: u32, height: u32, mobile: bool) {
    chrome
        .cmd(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({
                "cmd": "Emulation.setDeviceMetricsOverride",
                "params": { "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile },
            })),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
}

/// Waits for the page to show `text`; fails with what it shows instead.
async fn sees(chrome: &Chrome, text: &str) -> String {
    let page = chrome.wait_text(|t| t.contains(text)).await;
    assert!(
        page.contains(text),
        "expected {text:?} on {}:\n{page}",
        chrome.url().await
    );
    page
}

/// Types into the fields (`(css, text)`) and presses the form's main button.
async fn fill_and_submit(chrome: &Chrome, fields: &[(&str, &str)]) {
    for (css, text) in fields {
        clear(chrome, css).await;
        chrome.type_into(css, text).await;
    }
    chrome.click("button[type=submit]:not([name])").await;
}

/// Empties the field `css` (a page may come back with what was typed, or prefilled).
async fn clear(chrome: &Chrome, css: &str) {
    let e = chrome.find(css).await;
    chrome
        .cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/clear"),
            Some(json!({})),
        )
        .await;
}

/// The `n`-th message to Bob, once it arrived.
async fn mail(story: &Story, n: usize) -> Mail {
    let m = story.smtp.nth(n).await;
    assert_eq!(m.rcpt_tos, vec![BOB_EMAIL], "{}", m.text());
    m
}

/// The invitation link printed by `portcullis invite create`.
fn link_in(out: &str) -> String {
    let re = regex::Regex::new(r"https?://\S+").unwrap();
    re.find(out)
        .unwrap_or_else(|| panic!("no link in the CLI's output:\n{out}"))
        .as_str()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn bob_is_invited_enrols_recovers_his_password_manages_his_settings_and_leaves() {
    let story = Story::start(Pieces::All).await;
    invited_and_enrolled(&story).await;
    let phone = signs_in_on_a_second_browser(&story, FIRST_PW).await;
    recovers_his_password(&story, &phone).await;
    drop(phone);
    let phone = signs_in_on_a_second_browser(&story, NEW_PW).await;
    manages_his_settings(&story, &phone).await;
    deletes_his_account(&story, true).await;
}

/// A shorter variant: the email code of enrolment from an `authenticator_email` stage (the
/// address becomes a device) instead of the `email` verification stage, no recovery, and
/// account deletion reached by its URL instead of the settings page's link.
#[tokio::test(flavor = "multi_thread")]
async fn bob_is_invited_enrols_with_an_email_code_and_a_passkey_and_deletes_his_account() {
    let story = Story::start(Pieces::WithoutRecoveryAndSettings).await;
    invited_and_enrolled(&story).await;
    let phone = signs_in_on_a_second_browser(&story, FIRST_PW).await;
    drop(phone);
    sign_in(&story, &story.laptop, FIRST_PW, "/before-leaving").await;
    deletes_his_account(&story, false).await;
}

/// The admin's invitation, and Bob's enrolment: username and password, the email code, a
/// passkey, the app.
async fn invited_and_enrolled(story: &Story) {
    let (chrome, gw) = (&story.laptop, &story.gw);
    let out = gw
        .cli(
            &[
                "invite", "create", "--email", BOB_EMAIL, "--group", "dev", "--flow", ENROL,
            ],
            None,
        )
        .await;
    assert!(out.ok(), "invite create: {}", out.all());
    // The link is built on the first app's origin (the harness's `app.test`); Bob opens it on
    // `localhost`, where this story's app and passkeys live. Only the host differs.
    let link = link_in(&out.stdout);
    let app_origin = format!("http://{APP}:{}", gw.port);
    assert!(link.starts_with(&app_origin), "{link}");
    let link = link.replacen(&app_origin, &story.url(""), 1);

    chrome.go(&link).await;
    sees(chrome, "Create your account").await;
    story.shot("enrol-account").await;
    fill_and_submit(chrome, &[("#f-username", BOB), ("#f-password", FIRST_PW)]).await;

    sees(chrome, "Check your email").await;
    story.shot("enrol-email-code").await;
    let code = mail(story, 1).await.code();
    fill_and_submit(chrome, &[("#f-code", &code)]).await;

    sees(chrome, "Add a passkey").await;
    story.shot("enrol-passkey").await;
    chrome.click("#webauthn-start").await;
    let at = chrome.wait_url(|u| !u.contains("/.portcullis/")).await;
    if at.contains("/.portcullis/") {
        eprintln!("LOGS:\n{}", story.gw.logs());
    }
    assert!(at.starts_with(&story.url("/")), "lands on the app: {at}");
    let page = sees(chrome, BOB).await;
    story.shot("app-after-enrolment").await;
    assert!(page.contains("dev"), "the invitation's group: {page}");
    assert_eq!(credentials(chrome, &story.authenticator).await.len(), 1);

    sign_out(story, chrome, true).await;
}

/// Signs out on the gateway's sign-out page.
async fn sign_out(story: &Story, chrome: &Chrome, shoot: bool) {
    chrome.go(&story.url("/.portcullis/logout")).await;
    sees(chrome, "signed in as").await;
    if shoot {
        story.shot("sign-out").await;
    }
    chrome.click("button[type=submit]").await;
    sees(chrome, "You have signed out").await;
    if shoot {
        story.shot("signed-out").await;
    }
}

/// Bob's phone: a second Chromium whose authenticator holds a copy of his passkey (a synced
/// passkey), signed in with `password` and the passkey.
async fn signs_in_on_a_second_browser(story: &Story, password: &str) -> Chrome {
    let phone = browser(&story.gw).await;
    let auth = authenticator(&phone).await;
    copy_passkeys(&story.laptop, &story.authenticator, &phone, &auth).await;
    sign_in(story, &phone, password, "/from-the-phone").await;
    // The passkey syncs back, with the signature counter the phone moved on (the gateway
    // refuses a passkey whose counter goes back, as a cloned key's would).
    copy_passkeys(&phone, &auth, &story.laptop, &story.authenticator).await;
    phone
}

/// Replaces the passkeys of authenticator `to_auth` in `to` with those of `from_auth` in `from`.
async fn copy_passkeys(from: &Chrome, from_auth: &str, to: &Chrome, to_auth: &str) {
    for c in credentials(to, to_auth).await {
        let id = c["credentialId"].as_str().unwrap_or_default().to_string();
        to.cmd(
            reqwest::Method::DELETE,
            &format!("/webauthn/authenticator/{to_auth}/credentials/{id}"),
            None,
        )
        .await;
    }
    for c in credentials(from, from_auth).await {
        to.cmd(
            reqwest::Method::POST,
            &format!("/webauthn/authenticator/{to_auth}/credential"),
            Some(c),
        )
        .await;
    }
}

/// Signs Bob in on `chrome` with `password` and his passkey, landing on `path`.
async fn sign_in(story: &Story, chrome: &Chrome, password: &str, path: &str) {
    chrome.go(&story.url(path)).await;
    sees(chrome, "Sign in").await;
    fill_and_submit(chrome, &[("#f-uid", BOB)]).await;
    sees(chrome, &format!("Signing in as {BOB}")).await;
    fill_and_submit(chrome, &[("#f-password", password)]).await;
    lands_with_passkey(story, chrome, path).await;
}

/// On a passkey page: presses the passkey button and lands on the app at `path`.
async fn lands_with_passkey(story: &Story, chrome: &Chrome, path: &str) {
    chrome.find("#webauthn-start").await;
    chrome.click("#webauthn-start").await;
    let at = chrome.wait_url(|u| u.ends_with(path)).await;
    assert!(at.ends_with(path), "signed in on {path}: {at}");
    sees(chrome, BOB).await;
    let _ = story;
}

/// Whether `chrome` is signed in: the app answers, or it is sent to sign in.
async fn signed_in(story: &Story, chrome: &Chrome) -> bool {
    chrome.go(&story.url("/am-i-in")).await;
    let at = chrome.wait_url(|u| !u.is_empty()).await;
    !at.contains("/.portcullis/")
}

/// "Forgot password?": the mail link, the passkey again, a new password; every old session
/// ends (the phone's too), and the old password no longer works.
async fn recovers_his_password(story: &Story, phone: &Chrome) {
    let chrome = &story.laptop;
    assert!(signed_in(story, phone).await, "the phone is signed in");
    chrome.go(&story.url("/after-recovery")).await;
    fill_and_submit(chrome, &[("#f-uid", BOB)]).await;
    sees(chrome, "Forgot password?").await;
    story.shot("password-with-forgot-link").await;
    chrome
        .click(&format!("a[href*='/.portcullis/flow/{RECOVER}']"))
        .await;
    sees(chrome, "Reset your password").await;
    story.shot("recovery-identify").await;
    fill_and_submit(chrome, &[("#f-uid", BOB)]).await;
    sees(chrome, "Check your email").await;
    story.shot("recovery-check-email").await;

    // The link, opened in the same browser, continues the reset at once.
    let link = mail(story, 2).await.link();
    chrome.go(&link).await;
    sees(chrome, "passkey").await;
    story.shot("recovery-passkey").await;
    chrome.click("#webauthn-start").await;
    sees(chrome, "New password").await;
    story.shot("recovery-new-password").await;
    fill_and_submit(chrome, &[("#f-password", NEW_PW)]).await;
    // "Forgot password?" carries no return address: the reset ends on the app's front page.
    // The session it issues proves the email, the passkey and the password just chosen: the
    // app lets it in without asking for that password again.
    let at = chrome.wait_url(|u| !u.contains("/.portcullis/")).await;
    assert!(
        at.starts_with(&story.url("/")) && !at.contains("/.portcullis/"),
        "signed in after the reset: {at}"
    );
    sees(chrome, BOB).await;
    story.shot("app-after-recovery").await;

    assert!(
        !signed_in(story, phone).await,
        "the phone's session ended with the password change"
    );
    // The old password is refused.
    sign_out(story, chrome, false).await;
    chrome.go(&story.url("/old-password")).await;
    fill_and_submit(chrome, &[("#f-uid", BOB)]).await;
    fill_and_submit(chrome, &[("#f-password", FIRST_PW)]).await;
    sees(chrome, "Invalid username or password").await;
    fill_and_submit(chrome, &[("#f-password", NEW_PW)]).await;
    lands_with_passkey(story, chrome, "/old-password").await;
}

/// The settings page: an SMS phone added through its configuration flow, the passkey
/// renamed, the phone's browser signed out, the SMS phone removed after a fresh factor.
async fn manages_his_settings(story: &Story, phone: &Chrome) {
    let chrome = &story.laptop;
    chrome.go(&story.url("/.portcullis/settings")).await;
    let page = sees(chrome, "Your settings").await;
    assert!(page.contains("Laptop passkey"), "{page}");
    assert!(page.contains(BOB_EMAIL), "{page}");
    story.shot("settings").await;

    // Add an SMS phone through the stage's configuration flow.
    chrome
        .click(&format!("a[href*='/.portcullis/flow/{ADD_SMS}']"))
        .await;
    sees(chrome, "Phone number").await;
    story.shot("add-sms-number").await;
    fill_and_submit(chrome, &[("#f-phone", PHONE)]).await;
    sees(chrome, "Enter the code we texted you").await;
    story.shot("add-sms-code").await;
    let code = story.sms.wait_for(1).await[0].code();
    fill_and_submit(chrome, &[("#f-code", &code)]).await;
    let page = sees(chrome, "Your settings").await;
    assert!(page.contains("Phone"), "the phone is listed: {page}");
    story.shot("settings-with-phone").await;

    // Rename the passkey.
    let passkey = device_item(chrome, "Laptop passkey").await;
    let field = format!("#{passkey} input[name=name]");
    clear(chrome, &field).await;
    chrome.type_into(&field, "Bob's laptop").await;
    chrome
        .click(&format!("#{passkey} form.row button[type=submit]"))
        .await;
    let page = sees(chrome, "Bob's laptop").await;
    assert!(!page.contains("Laptop passkey"), "{page}");
    story.shot("settings-passkey-renamed").await;

    // Sign out the phone's browser.
    assert!(signed_in(story, phone).await, "the phone is signed in");
    chrome.go(&story.url("/.portcullis/settings")).await;
    let page = sees(chrome, "Sign out everywhere else").await;
    assert!(page.contains("This browser"), "{page}");
    chrome
        .click("#sessions li form.inline button[type=submit]")
        .await;
    sees(chrome, "Your settings").await;
    story.shot("settings-other-browser-signed-out").await;
    assert!(
        !signed_in(story, phone).await,
        "the other browser was signed out"
    );

    // Remove the SMS phone: the sign-in is older than `[settings] max_age` (4 s here), so
    // the gateway asks for the factors again first.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    chrome.go(&story.url("/.portcullis/settings")).await;
    let phone_item = device_item(chrome, "Phone").await;
    chrome
        .click(&format!("#{phone_item} form.inline button[type=submit]"))
        .await;
    confirm_it_is_you(story, chrome, "Remove “Phone”").await;
    story.shot("remove-confirm").await;
    chrome.click("#confirm-remove button[type=submit]").await;
    let page = chrome
        .wait_text(|t| t.contains("Your settings") && !t.contains("Remove “Phone”"))
        .await;
    assert!(page.contains("Bob's laptop"), "{page}");
    assert!(
        device_id(chrome, "Phone").await.is_empty(),
        "the phone is gone: {page}"
    );
    story.shot("settings-phone-removed").await;
    assert!(signed_in(story, chrome).await, "this browser still is");
}

/// Answers the confirmation flow (password, passkey, whatever it asks) until `until` shows.
async fn confirm_it_is_you(story: &Story, chrome: &Chrome, until: &str) {
    let mut shot = false;
    for _ in 0..6 {
        let page = chrome
            .wait_text(|t| {
                t.contains(until)
                    || t.contains("Enter your password")
                    || t.contains("Use your passkey")
            })
            .await;
        if page.contains(until) {
            return;
        }
        if !shot {
            story.shot("remove-confirm-it-is-you").await;
            shot = true;
        }
        if page.contains("Enter your password") {
            fill_and_submit(chrome, &[("#f-password", NEW_PW)]).await;
        } else if page.contains("Choose how to confirm it is you") {
            // The passkey, listed first (the phone would text a code).
            chrome.click("input[type=radio]").await;
            chrome.click("button[type=submit]:not([name])").await;
        } else if page.contains("Use your passkey") {
            chrome.click("#webauthn-start").await;
        } else {
            story.shot("remove-confirm-unexpected").await;
            panic!("waiting for {until:?} at {}:\n{page}", chrome.url().await);
        }
        chrome.wait_text(|t| t != page).await;
    }
    sees(chrome, until).await;
}

/// The `id` of the settings page's item for the device named `name` (empty when none).
async fn device_id(chrome: &Chrome, name: &str) -> String {
    let v = chrome
        .cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({
                "script": "for (const li of document.querySelectorAll(\"li[id^='device-']\")) { if (li.querySelector('strong').textContent === arguments[0]) return li.id; } return '';",
                "args": [name],
            })),
        )
        .await;
    v.as_str().unwrap_or_default().to_string()
}

/// The `id` of the settings page's item for the device named `name`.
async fn device_item(chrome: &Chrome, name: &str) -> String {
    let id = device_id(chrome, name).await;
    assert!(
        !id.is_empty(),
        "no device named {name:?} on the settings page"
    );
    id
}

/// "Delete my account": the unenrollment flow asks for the passkey once more, then removes
/// Bob, his devices and his sessions; he can no longer sign in.
async fn deletes_his_account(story: &Story, from_settings: bool) {
    let chrome = &story.laptop;
    if from_settings {
        chrome.go(&story.url("/.portcullis/settings")).await;
        sees(chrome, "Delete your account").await;
        chrome
            .click(&format!("a[href*='/.portcullis/flow/{LEAVE}']"))
            .await;
    } else {
        chrome
            .go(&story.url(&format!("/.portcullis/flow/{LEAVE}")))
            .await;
    }
    sees(chrome, "Delete your account").await;
    chrome.find("#webauthn-start").await;
    story.shot("delete-account-passkey").await;
    chrome.click("#webauthn-start").await;
    let at = chrome
        .wait_url(|u| !u.contains(&format!("/.portcullis/flow/{LEAVE}")))
        .await;
    assert!(!at.contains(LEAVE), "the unenrollment flow ended: {at}");
    story.shot("after-deletion").await;
    assert!(
        !signed_in(story, chrome).await,
        "signed out with the account gone"
    );
    let gone = story.gw.cli(&["user", "show", BOB], None).await;
    assert!(!gone.ok(), "bob is gone: {}", gone.all());
    chrome.go(&story.url("/gone")).await;
    fill_and_submit(chrome, &[("#f-uid", BOB)]).await;
    let password = if from_settings { NEW_PW } else { FIRST_PW };
    fill_and_submit(chrome, &[("#f-password", password)]).await;
    sees(chrome, "Invalid username or password").await;
    story.shot("deleted-account-cannot-sign-in").await;
}
