//! The two faces of an engine step: an HTML page and a JSON document, both rendered from the
//! same [`crate::flow::View`]. Also the gateway's own pages (errors, sign-out, the demo app).

mod brand;
mod json;

pub use brand::{Brand, LOGO_PATH};
pub use json::{challenge_json, ended_json, redirect_json};

use crate::config::{Logo, UiConfig};
use crate::flow::Challenge;
use crate::secret::SecretString;
use minijinja::{context, Environment};
use std::path::PathBuf;

/// A page template that failed to render (an operator's override, usually), naming it.
#[derive(Debug, thiserror::Error)]
#[error("template `{name}`: {source}")]
pub struct UiError {
    name: &'static str,
    #[source]
    source: minijinja::Error,
}

const BUILTIN: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("flow.html", include_str!("templates/flow.html")),
    ("message.html", include_str!("templates/message.html")),
    ("logout.html", include_str!("templates/logout.html")),
    ("whoami.html", include_str!("templates/whoami.html")),
    ("link.html", include_str!("templates/link.html")),
    ("settings.html", include_str!("templates/settings.html")),
];

/// Renders pages. Templates in the configured folder replace built-in ones of the same name.
pub struct Ui {
    env: Environment<'static>,
    site_title: String,
    brand: Brand,
    logo: Option<Logo>,
}

/// A link under a message.
pub struct Link<'a> {
    /// Where it leads.
    pub href: &'a str,
    /// Its text.
    pub label: &'a str,
}

impl Ui {
    /// The built-in templates, each replaced by a file of the same name in `[ui] templates`.
    pub fn new(cfg: &UiConfig) -> Self {
        let mut env = Environment::new();
        let dir: Option<PathBuf> = cfg.templates.clone();
        env.set_loader(crate::templates::loader(dir, BUILTIN));
        env.add_filter("datetime", datetime);
        Self {
            env,
            site_title: cfg.site_title.clone(),
            brand: Brand::new(cfg),
            logo: cfg.logo.clone(),
        }
    }

    /// `[ui] site_title`.
    pub fn site_title(&self) -> &str {
        &self.site_title
    }

    /// The configured logo, served at [`brand::LOGO_PATH`].
    pub fn logo(&self) -> Option<&Logo> {
        self.logo.as_ref()
    }

    /// Renders `name` with `ctx` plus what every page shows: the site title and the branding.
    fn render(&self, name: &'static str, ctx: minijinja::Value) -> Result<String, UiError> {
        let ctx = context! { site_title => self.site_title, brand => self.brand, ..ctx };
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|source| UiError { name, source })
    }

    /// A stage's challenge as a form posting back to `action`.
    ///
    /// # Errors
    /// [`UiError`] if an operator's replacement template is broken.
    pub fn flow_page(
        &self,
        title: &str,
        stage: &str,
        challenge: &Challenge,
        csrf: &str,
        action: &str,
    ) -> Result<String, UiError> {
        let fields: Vec<_> = challenge
            .fields
            .iter()
            .map(|f| {
                context! {
                    name => f.name, kind => f.kind, label => f.label, required => f.required,
                    value => f.value, autocomplete => f.autocomplete, options => f.options,
                    placeholder => f.placeholder,
                }
            })
            .collect();
        // One main button: it submits the fields, or re-checks when there are none and no
        // other button (a link that is on its way has its page refresh instead; a send that
        // failed offers only its retry button).
        let webauthn = challenge.webauthn.as_ref().map(webauthn_context);
        // A ceremony with nothing to type (registration, a passkey as second factor) has the
        // passkey button as its only way on.
        let only_passkey =
            webauthn.is_some() && challenge.fields.iter().all(|f| f.kind == "hidden");
        let submit = !only_passkey
            && (!challenge.fields.is_empty()
                || (challenge.poll.is_none() && challenge.actions.is_empty()));
        let qr_svg = challenge
            .qr
            .as_deref()
            .and_then(qr_svg)
            .map(minijinja::Value::from_safe_string);
        // Only an https link is offered: a provider's answer decides the URL.
        let link = challenge
            .link
            .as_ref()
            .filter(|l| l.href.starts_with("https://"))
            .map(|l| context! { href => l.href, label => l.label });
        // Links to the gateway's own flows only: `/.portcullis/flow/<slug>`, the slug in a
        // flow slug's alphabet (nothing that leaves the path: `..`, `/`, `\\`, `%`), then at
        // most `?rd=` with a percent-encoded value (a "Sign up" link keeps the return address,
        // which the flow checks again when it starts).
        let flow_links: Vec<_> = challenge
            .links
            .iter()
            .filter(|l| {
                l.href
                    .strip_prefix("/.portcullis/flow/")
                    .map(|rest| rest.split_once('?').unwrap_or((rest, "rd=")))
                    .is_some_and(|(slug, query)| {
                        !slug.is_empty()
                            && slug.bytes().all(|b| {
                                b.is_ascii_lowercase()
                                    || b.is_ascii_digit()
                                    || b == b'-'
                                    || b == b'_'
                            })
                            && query.strip_prefix("rd=").is_some_and(|rd| {
                                rd.bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || b"%-_.~+".contains(&b))
                            })
                    })
            })
            .map(|l| context! { href => l.href, label => l.label })
            .collect();
        let captcha = challenge.captcha.as_deref().map(captcha_context);
        self.render(
            "flow.html",
            context! {
                title, step_title => step_title(challenge, title), stage, challenge, csrf,
                action, fields, submit, submit_label => submit_label(challenge), webauthn,
                qr_svg, link, flow_links, captcha,
            },
        )
    }

    /// A page with a heading, a sentence and an optional link: errors, denials, sign-out.
    pub fn message(&self, heading: &str, message: &str, link: Option<Link<'_>>) -> String {
        let link = link.map(|l| context! { href => l.href, label => l.label });
        self.render("message.html", context! { heading, message, link })
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "message template failed; using plain text");
                format!("{heading}\n\n{message}\n")
            })
    }

    /// 403 for `user`, whom an app's `policies` refuse: the policies' `messages` on the page
    /// for a browser (`html`), else as JSON,
    /// `{"error": "access_denied", "message": "<all>", "messages": [..]}`. The proxy and
    /// every forward-auth endpoint answer with this.
    pub fn refused(&self, user: &str, messages: &[String], html: bool) -> crate::reply::Response {
        use crate::reply::Response;
        let text = if messages.is_empty() {
            crate::policy::DENIED.to_string()
        } else {
            messages.join(" ")
        };
        if !html {
            return Response::json(
                http::StatusCode::FORBIDDEN,
                &serde_json::json!({ "error": "access_denied", "message": text, "messages": messages }),
            );
        }
        Response::html(
            http::StatusCode::FORBIDDEN,
            self.message(
                "Access denied",
                &format!("You are signed in as {user}. {text}"),
                Some(Link {
                    href: "/.portcullis/logout",
                    label: "Sign in as someone else",
                }),
            ),
        )
    }

    /// # Errors
    /// [`UiError`] if a replacement template is broken.
    pub fn logout_page(&self, user: &str, csrf: &str) -> Result<String, UiError> {
        self.render("logout.html", context! { user, csrf })
    }

    /// The page a magic link shows in a browser other than the one that asked: who asked
    /// (`requester`: `browser`, `address`, `ago`) and a CSRF-protected form to approve or
    /// decline the sign-in of that other browser.
    pub fn link_approval(
        &self,
        token: &SecretString,
        csrf: &SecretString,
        requester: minijinja::Value,
    ) -> String {
        let ctx = context! { token => token.expose(), csrf => csrf.expose(), requester };
        self.render("link.html", ctx).unwrap_or_else(|e| {
            tracing::error!(error = %e, "link template failed");
            self.message("Was this you?", "This page could not be shown.", None)
        })
    }

    /// The signed-in user's settings (`settings`: the data the JSON face sends), with a
    /// notice after a change, an error when one was refused, and the device waiting for its
    /// removal to be confirmed.
    ///
    /// # Errors
    /// [`UiError`] if a replacement template is broken.
    pub fn settings_page(
        &self,
        settings: &impl serde::Serialize,
        notice: Option<&str>,
        error: Option<&str>,
        confirm: Option<&impl serde::Serialize>,
    ) -> Result<String, UiError> {
        let s = minijinja::Value::from_serialize(settings);
        let confirm = confirm.map(minijinja::Value::from_serialize);
        self.render("settings.html", context! { s, notice, error, confirm })
    }

    /// The built-in demo upstream: shows the request and the headers it arrived with.
    ///
    /// # Errors
    /// [`UiError`] if a replacement template is broken.
    pub fn whoami(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        user: Option<&str>,
        name: Option<&str>,
    ) -> Result<String, UiError> {
        self.render(
            "whoami.html",
            context! { method, path, headers, user, name },
        )
    }
}

#[cfg(test)]
impl Ui {
    /// Built-in templates, no branding, site title "T": what unit tests render with.
    pub(crate) fn plain() -> Ui {
        Ui::new(&UiConfig {
            site_title: "T".into(),
            templates: None,
            logo: None,
            accent_color: None,
            footer_links: Vec::new(),
        })
    }
}

/// Where the pages' one script is served ([`WEBAUTHN_JS`]); `flow.html` names it.
pub const WEBAUTHN_JS_PATH: &str = "/.portcullis/webauthn.js";

/// The browser's part of the WebAuthn ceremonies.
pub const WEBAUTHN_JS: &str = include_str!("assets/webauthn.js");

/// Where the reCAPTCHA v3 helper is served ([`CAPTCHA_JS`]); `flow.html` names it.
pub const CAPTCHA_JS_PATH: &str = "/.portcullis/captcha.js";

/// Fills in a reCAPTCHA v3 token when a captcha page's form is sent.
pub const CAPTCHA_JS: &str = include_str!("assets/captcha.js");

/// What the page needs to draw a captcha: the widget's element and the provider's script
/// (reCAPTCHA v3's with the site key it renders for).
fn captcha_context(c: &crate::flow::CaptchaWidget) -> minijinja::Value {
    let script = if c.interactive {
        c.js_url.clone()
    } else {
        let sep = if c.js_url.contains('?') { '&' } else { '?' };
        let key: String = url::form_urlencoded::byte_serialize(c.site_key.as_bytes()).collect();
        format!("{}{sep}render={key}", c.js_url)
    };
    context! {
        class => c.widget_class, site_key => c.site_key, action => c.action,
        interactive => c.interactive, script, helper => CAPTCHA_JS_PATH,
    }
}

/// What the page needs to run a WebAuthn ceremony: the options (JSON, escaped into an
/// attribute by the template), the button, and what to say without JavaScript.
fn webauthn_context(w: &serde_json::Value) -> minijinja::Value {
    let create = w["mode"] == "create";
    let (label, noscript) = if create {
        (
            "Create a passkey",
            "Adding a passkey needs JavaScript, which is turned off in this browser. Turn it on for this site and reload the page.",
        )
    } else if w.get("mediation").is_some() {
        (
            "Sign in with a passkey",
            "Signing in with a passkey needs JavaScript, which is turned off in this browser. You can still sign in with your username.",
        )
    } else {
        (
            "Use your passkey",
            "Confirming with a passkey needs JavaScript, which is turned off in this browser. Turn it on for this site and reload the page.",
        )
    };
    context! {
        options => w.to_string(),
        label,
        noscript,
        class => if w.get("mediation").is_some() { "secondary" } else { "" },
    }
}

/// `text` as a QR code in inline SVG markup (dark modules as one path, no script, no external
/// reference), or `None` when it is too long for a QR code.
fn qr_svg(text: &str) -> Option<String> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).ok()?;
    let svg = code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    // The renderer starts with an XML declaration, which has no place inside HTML.
    let start = svg.find("<svg")?;
    Some(svg[start..].replacen(
        "<svg",
        "<svg role=\"img\" aria-label=\"QR code\" class=\"qr\"",
        1,
    ))
}

/// The `datetime` filter: unix seconds as `2025-12-01 14:40 UTC`.
fn datetime(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => secs.to_string(),
    }
}

/// What the step asks for, not the flow's name: the page's heading and the JSON `title`.
pub(crate) fn step_title(c: &Challenge, flow_title: &str) -> String {
    if let Some(t) = &c.title {
        return t.clone();
    }
    match c.component.as_str() {
        "identification" => "Sign in".into(),
        "password" => "Enter your password".into(),
        "authenticator_webauthn" => "Add a passkey".into(),
        _ => flow_title.into(),
    }
}

/// The main button's label; the same "Verify" for every code, whichever way it travelled.
fn submit_label(c: &Challenge) -> &'static str {
    if c.fields.iter().any(|f| f.name == "code") {
        "Verify"
    } else if c.component == "password" {
        "Sign in"
    } else {
        "Continue"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Field;

    #[test]
    fn flow_page_escapes_and_carries_csrf() {
        let ui = Ui::plain();
        let mut c = Challenge::new(
            "identification",
            vec![Field::new("uid", "text", "Username")],
        );
        c.errors.push("<script>".into());
        let html = ui
            .flow_page("Sign in", "identify", &c, "tok", "/x")
            .unwrap();
        assert!(html.contains("name=\"csrf_token\" value=\"tok\""));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("<label for=\"f-uid\">Username</label>"));
    }

    /// The QR code is inline SVG the page's CSP allows (no script, no outside reference,
    /// no XML declaration); markup in the encoded text never reaches the page; only an https
    /// link is shown.
    #[test]
    fn a_qr_code_is_inline_svg_and_hostile_text_or_links_stay_out() {
        let ui = Ui::plain();
        let mut c = Challenge::new("authenticator_duo", Vec::new());
        c.qr = Some("duo://</svg><script>alert(1)</script>".into());
        c.link = Some(crate::flow::Link {
            href: "javascript:alert(1)".into(),
            label: "Open".into(),
        });
        let html = ui.flow_page("Add Duo", "duo", &c, "tok", "/x").unwrap();
        let start = html.find("<div class=\"qr\"><svg").expect("an inline SVG");
        let end = html[start..].find("</svg></div>").expect("one SVG, closed") + start;
        let svg = &html[start..end];
        for bad in ["<script", "<?xml", "href", "<image", "javascript:"] {
            assert!(!svg.contains(bad), "{bad} in {svg}");
        }
        assert!(!html.contains("<script"), "{html}");
        assert!(
            !html.contains("javascript:"),
            "a non-https link is not shown"
        );
        c.link = Some(crate::flow::Link {
            href: "https://m-1.duosecurity.com/activate/x".into(),
            label: "Open".into(),
        });
        let html = ui.flow_page("Add Duo", "duo", &c, "tok", "/x").unwrap();
        assert!(html.contains("<a href=\"https:"), "{html}");
    }

    #[test]
    fn only_links_to_the_gateways_own_flows_are_shown() {
        let ui = Ui::plain();
        let table = [
            ("/.portcullis/flow/recovery", true),
            ("/.portcullis/flow/reset-2_b", true),
            ("https://evil.example/", false),
            ("//evil.example/.portcullis/flow/recovery", false),
            ("javascript:alert(1)", false),
            ("/.portcullis/flow/..", false),
            ("/.portcullis/flow/../logout", false),
            ("/.portcullis/flow/a/b", false),
            ("/.portcullis/flow/a\\b", false),
            ("/.portcullis/flow/a?rd=https://evil.example", false),
            ("/.portcullis/flow/a?rd=https%3A%2F%2Fapp.example%2Fx", true),
            ("/.portcullis/flow/a?next=x", false),
            ("/.portcullis/flow/a?rd=x&rd=y", false),
            ("/.portcullis/flow/%2e%2e", false),
            ("/.portcullis/flow/", false),
            ("/.portcullis/flow/Recovery", false),
        ];
        for (href, shown) in table {
            let mut c = Challenge::new("password", Vec::new());
            c.links.push(crate::flow::Link {
                href: href.into(),
                label: "Forgot password?".into(),
            });
            let html = ui
                .flow_page("Sign in", "password", &c, "tok", "/x")
                .unwrap();
            assert_eq!(html.contains("Forgot password?"), shown, "{href}");
        }
    }

    fn code_challenge(component: &str) -> Challenge {
        Challenge::new(
            component,
            vec![Field::new("code", "text", "Code").autocomplete("one-time-code")],
        )
    }

    #[test]
    fn code_fields_ask_for_digits_and_offer_one_time_code_autofill_with_one_label() {
        let ui = Ui::plain();
        for component in [
            "authenticator_email",
            "authenticator_sms",
            "authenticator_validate",
        ] {
            let html = ui
                .flow_page("Sign in", "s", &code_challenge(component), "t", "/x")
                .unwrap();
            let input = html
                .split("<input id=\"f-code\"")
                .nth(1)
                .and_then(|r| r.split('>').next())
                .unwrap_or_else(|| panic!("{component}: no code input\n{html}"));
            assert!(
                input.contains("inputmode=\"numeric\""),
                "{component}: {input}"
            );
            assert!(
                input.contains("autocomplete=\"one-time-code\""),
                "{component}: {input}"
            );
            assert!(
                html.contains("<button type=\"submit\">Verify</button>"),
                "{component}: one label for the code button\n{html}"
            );
        }
    }

    #[test]
    fn password_page_carries_the_username_for_password_managers() {
        let c = Challenge::new(
            "password",
            vec![
                Field::new("password", "password", "Password").autocomplete("current-password"),
                Field::new("username", "hidden", "Username")
                    .value("Al\"ice")
                    .autocomplete("username")
                    .optional(),
            ],
        );
        let html = Ui::plain()
            .flow_page("Sign in", "pw", &c, "t", "/x")
            .unwrap();
        assert!(
            html.contains(
                "<input type=\"text\" name=\"username\" value=\"Al&quot;ice\" autocomplete=\"username\" hidden>"
            ),
            "{html}"
        );
        // The visible field keeps the focus.
        assert!(html.contains("autocomplete=\"current-password\""));
        let focus = html.find("autofocus").unwrap();
        assert!(html[..focus].contains("id=\"f-password\""), "{html}");
        assert!(html.contains("<h1>Enter your password</h1>"), "{html}");
        assert!(
            html.contains("<p class=\"flow-title\">Sign in</p>"),
            "{html}"
        );
        assert!(
            html.contains("<title>Enter your password · T</title>"),
            "{html}"
        );
    }

    #[test]
    fn a_page_without_fields_offers_only_its_actions() {
        let mut c = Challenge::new("authenticator_email", Vec::new()).titled("Get a new code");
        c.errors.push("We could not send".into());
        c.actions.push(crate::flow::Action {
            name: "resend".into(),
            label: "Send a new code".into(),
        });
        let html = Ui::plain()
            .flow_page("Sign in", "s", &c, "t", "/x")
            .unwrap();
        assert!(!html.contains("<button type=\"submit\">"), "{html}");
        assert!(
            html.contains("value=\"resend\">Send a new code</button>"),
            "{html}"
        );
        assert!(!html.contains("f-code"), "{html}");
        assert!(html.contains("<h1>Get a new code</h1>"), "{html}");
    }

    #[test]
    fn branding_shows_logo_accent_and_footer_links_escaped() {
        let ui = Ui::new(&UiConfig {
            site_title: "Acme <Corp>".into(),
            templates: None,
            logo: Some(crate::config::Logo {
                bytes: bytes::Bytes::from_static(b"\x89PNG\r\n\x1a\n"),
                content_type: "image/png",
            }),
            accent_color: Some(crate::config::Rgb(0xff, 0xff, 0x00)),
            footer_links: vec![crate::config::FooterLink {
                label: "Privacy & terms".into(),
                url: "https://example.com/p?a=1&b=2".into(),
            }],
        });
        let html = ui.message("Signed out", "Bye", None);
        assert!(
            html.contains("<img src=\"&#x2f;.portcullis&#x2f;logo?v="),
            "{html}"
        );
        assert!(html.contains("Acme &lt;Corp&gt;"), "{html}");
        assert!(
            html.contains(
                "<a href=\"https:&#x2f;&#x2f;example.com&#x2f;p?a=1&amp;b=2\" rel=\"noopener\">Privacy &amp; terms</a>"
            ),
            "{html}"
        );
        // Yellow buttons get black text.
        assert!(
            html.contains("--accent: #ffff00; --on-accent: #000000;"),
            "{html}"
        );
    }
}
