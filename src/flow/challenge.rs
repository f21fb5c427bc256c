//! What a stage asks of the user. Both faces render this one value: the HTML page as a form,
//! the JSON API as-is.

use serde::Serialize;

/// One input the stage wants.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Field {
    /// The key its value is submitted under.
    pub name: String,
    /// An HTML input type: `text`, `email`, `tel`, `password`, `hidden`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What the page shows beside it.
    pub label: String,
    /// Whether the page marks it required (the stage still checks).
    pub required: bool,
    /// A value to pre-fill (hidden fields, a known address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// An example of the expected input, shown in the empty field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// For `choice` fields: the values to pick from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<Choice>,
    /// The browser's `autocomplete` hint, so password managers and one-time-code autofill work.
    #[serde(skip)]
    pub autocomplete: &'static str,
}

impl Field {
    /// A required field with no value, placeholder or autocomplete hint.
    pub fn new(name: &str, kind: &str, label: &str) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            label: label.into(),
            required: true,
            value: None,
            placeholder: None,
            options: Vec::new(),
            autocomplete: "off",
        }
    }

    /// With the browser hint `hint` (`username`, `one-time-code`, ...).
    pub fn autocomplete(mut self, hint: &'static str) -> Self {
        self.autocomplete = hint;
        self
    }

    /// With the values a `choice` field picks from.
    pub fn choices(mut self, options: Vec<Choice>) -> Self {
        self.options = options;
        self
    }

    /// Not marked required.
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    /// Pre-filled with `v`.
    pub fn value(mut self, v: impl Into<String>) -> Self {
        self.value = Some(v.into());
        self
    }
}

/// One option of a `choice` field.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Choice {
    /// Submitted when picked.
    pub value: String,
    /// Shown.
    pub label: String,
}

/// A stage's question: which component (the stage kind), the fields it wants, and messages.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Challenge {
    /// The stage kind asking (`password`, `authenticator_email`, ...).
    pub component: String,
    /// What to fill in.
    pub fields: Vec<Field>,
    /// Why the last answer was refused.
    pub errors: Vec<String>,
    /// Informational lines ("Signing in as alice", "A new code was sent").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub info: Vec<String>,
    /// Extra submit buttons the stage accepts besides its fields (e.g. `resend`); sent as the
    /// field `action`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    /// The stage waits for something that happens elsewhere (a link opened in another tab):
    /// ask again after this many seconds. The HTML page refreshes itself; API clients poll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll: Option<u32>,
    /// What this step asks, as the page's heading ("Check your email"); `None` lets the page
    /// pick one from the component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A WebAuthn ceremony for the browser: `{"mode": "create" | "get", "publicKey": {...},
    /// "mediation"?}`, the options of `navigator.credentials.create` / `get` with binary
    /// members in base64url. The answer goes back as the field `credential` (JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webauthn: Option<serde_json::Value>,
    /// Text to scan (an app's activation code): the page draws it as a QR code, inline SVG
    /// made by the gateway (no image service, no script); the JSON carries the text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr: Option<String>,
    /// A link the page offers besides its buttons (an activation page to open on the phone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
    /// An authenticator app being set up: its secret and URL (`qr` carries the URL too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totp: Option<TotpEnrolment>,
    /// Recovery codes shown once, while the user saves them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recovery_codes: Vec<String>,
    /// Other flows this step offers ("Sign up", "Forgot password?"): paths on this host under
    /// `/.portcullis/flow/`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// A captcha for the browser to draw with its provider's script; the token goes back in
    /// the field named `response_field`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captcha: Option<Box<CaptchaWidget>>,
}

/// What a page needs to draw a captcha.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CaptchaWidget {
    /// `turnstile`, `hcaptcha`, `recaptcha_v2` or `recaptcha_v3`.
    pub provider: &'static str,
    /// The site key.
    pub site_key: String,
    /// The provider's script.
    pub js_url: String,
    /// The action the token is bound to (Turnstile, reCAPTCHA v3); the verify answer must
    /// name it.
    pub action: String,
    /// Whether the user solves something; `false`: scored silently (reCAPTCHA v3).
    pub interactive: bool,
    /// The field the token is posted in.
    pub response_field: &'static str,
    /// The element class the provider's script draws the widget in.
    #[serde(skip)]
    pub widget_class: &'static str,
    /// The sources the page's CSP adds to `script-src` and `frame-src`.
    #[serde(skip)]
    pub csp_sources: Vec<String>,
}

/// A link a challenge offers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Link {
    /// Where it leads (an `https` URL from a provider's answer).
    pub href: String,
    /// Its text.
    pub label: String,
}

/// What an authenticator app needs to be set up.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TotpEnrolment {
    /// The secret, base32 without padding, for typing in.
    pub secret: String,
    /// The `otpauth://totp/...` URL the QR code carries.
    pub otpauth_url: String,
}

/// A button besides the main submit.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Action {
    /// Sent as the value of the `action` field.
    pub name: String,
    /// The button's text.
    pub label: String,
}

impl Challenge {
    /// A challenge of `component` asking for `fields`, with nothing else.
    pub fn new(component: &str, fields: Vec<Field>) -> Self {
        Self {
            component: component.into(),
            fields,
            errors: Vec::new(),
            info: Vec::new(),
            actions: Vec::new(),
            poll: None,
            title: None,
            webauthn: None,
            qr: None,
            link: None,
            totp: None,
            recovery_codes: Vec::new(),
            links: Vec::new(),
            captcha: None,
        }
    }

    /// With the page heading `title`.
    pub fn titled(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Whether `name` is something a response to this challenge may carry.
    pub fn accepts(&self, name: &str) -> bool {
        name == "action" && !self.actions.is_empty() || self.fields.iter().any(|f| f.name == name)
    }
}
