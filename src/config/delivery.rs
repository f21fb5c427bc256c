//! The delivery settings config parses and owns: SMTP connections, SMS providers and the
//! second-factor classes. `notify` and `store` take these types; `config` imports neither.

use crate::secret::Secret;
use std::path::PathBuf;
use std::time::Duration;

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain SMTP (a relay on localhost or a trusted network).
    None,
    /// `use_tls`: plain connect, then STARTTLS, which is required.
    StartTls,
    /// `use_ssl`: TLS from the first byte (port 465).
    Implicit,
}

/// SMTP connection settings, global (`[email]`) or per stage.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// The relay's host name.
    pub host: String,
    /// The relay's port.
    pub port: u16,
    /// The login name, when the relay wants one.
    pub username: Option<String>,
    /// The login password (only with `username`).
    pub password: Option<Secret<String>>,
    /// How the connection is protected.
    pub security: SmtpSecurity,
    /// How long each network step may take.
    pub timeout: Duration,
    /// The sender of every message.
    pub from: Mailbox,
    /// Extra CA certificate (PEM) to trust, for relays with a private CA.
    pub ca_file: Option<PathBuf>,
}

/// An e-mail address with an optional display name, `Name <user@example.com>` or
/// `user@example.com`, checked when the config is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    name: Option<String>,
    address: String,
}

impl Mailbox {
    /// Parses `addr`, `Name <addr>` or `"Name" <addr>`; `None` when the address is not one.
    #[must_use]
    pub fn parse(text: &str) -> Option<Mailbox> {
        let text = text.trim();
        let (name, address) = match text.strip_suffix('>').and_then(|t| t.rsplit_once('<')) {
            Some((name, addr)) => (Some(name.trim().trim_matches('"').trim()), addr.trim()),
            None => (None, text),
        };
        let valid = email_address::EmailAddress::parse_with_options(
            address,
            email_address::Options::default().without_display_text(),
        )
        .is_ok();
        valid.then(|| Mailbox {
            name: name.filter(|n| !n.is_empty()).map(str::to_string),
            address: address.to_string(),
        })
    }

    /// The display name, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The bare address, `user@example.com`.
    pub fn address(&self) -> &str {
        &self.address
    }
}

/// Which HTTP API delivers SMS.
#[derive(Debug, Clone)]
pub enum SmsProvider {
    /// `POST {api_base}/2010-04-01/Accounts/{account_sid}/Messages.json`, form fields
    /// `To`, `From`, `Body`, HTTP Basic auth with the SID and token.
    Twilio {
        /// The account SID (the Basic-auth user).
        account_sid: String,
        /// The account's auth token (the Basic-auth password).
        auth_token: Secret<String>,
        /// Twilio's API, or a region's or a test server's.
        api_base: url::Url,
    },
    /// `POST url` with a JSON payload.
    Generic {
        /// The endpoint. A secret: providers often take their API key in its query.
        url: Secret<url::Url>,
        /// The credentials sent with it.
        auth: GenericAuth,
    },
}

/// The generic SMS provider's credentials.
#[derive(Debug, Clone)]
pub enum GenericAuth {
    /// No `Authorization` header.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret<String>),
    /// HTTP Basic auth.
    Basic {
        /// The user name.
        username: String,
        /// The password, if any.
        password: Option<Secret<String>>,
    },
}

/// The kind of second factor a device is (`device_classes = ["email", "sms"]`).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    /// Codes or links by e-mail.
    Email,
    /// Codes by SMS.
    Sms,
    /// Time-based one-time passwords from an authenticator app (RFC 6238).
    Totp,
    /// Single-use recovery codes.
    Static,
    /// Passkeys and security keys (WebAuthn).
    Webauthn,
    /// Duo push or passcode (Duo Auth API).
    Duo,
}

impl DeviceClass {
    /// Every class, strongest first: the order a user with several devices is offered them.
    ///
    /// Phishing-resistant passkeys first; then the authenticator app and Duo (something the
    /// user has, not phishing-resistant); then recovery codes (NIST SP 800-63B look-up
    /// secrets: a full authenticator, but a finite one the user should keep for emergencies);
    /// then SMS (a restricted authenticator under SP 800-63B) and e-mail (not an authenticator
    /// there at all) last.
    pub const STRONGEST_FIRST: [DeviceClass; 6] = [
        DeviceClass::Webauthn,
        DeviceClass::Totp,
        DeviceClass::Duo,
        DeviceClass::Static,
        DeviceClass::Sms,
        DeviceClass::Email,
    ];

    /// The class named `name` as written in config; `None` for an unknown name.
    pub fn named(name: &str) -> Option<DeviceClass> {
        Self::STRONGEST_FIRST
            .into_iter()
            .find(|c| c.as_str() == name)
    }

    /// Where the class stands in [`DeviceClass::STRONGEST_FIRST`] (0 is strongest).
    pub fn rank(self) -> usize {
        Self::STRONGEST_FIRST
            .iter()
            .position(|c| *c == self)
            .unwrap_or(Self::STRONGEST_FIRST.len())
    }

    /// The name as written in config and stored records.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Email => "email",
            DeviceClass::Sms => "sms",
            DeviceClass::Totp => "totp",
            DeviceClass::Static => "static",
            DeviceClass::Webauthn => "webauthn",
            DeviceClass::Duo => "duo",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes_parse_with_and_without_a_name() {
        let cases = [
            ("a@example.com", Some((None, "a@example.com"))),
            (
                "Portcullis <a@example.com>",
                Some((Some("Portcullis"), "a@example.com")),
            ),
            (
                "\"Sign-in\" <a@example.com>",
                Some((Some("Sign-in"), "a@example.com")),
            ),
            ("<a@example.com>", Some((None, "a@example.com"))),
            ("not an address", None),
            ("a@", None),
            ("Name <not an address>", None),
            ("", None),
        ];
        for (text, want) in cases {
            let got = Mailbox::parse(text);
            let got = got.as_ref().map(|m| (m.name(), m.address()));
            assert_eq!(got, want, "{text:?}");
        }
    }
}
