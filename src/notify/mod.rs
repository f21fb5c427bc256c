//! Delivery of one-time codes and links: e-mail over SMTP (lettre) behind [`EmailSender`] and
//! SMS over HTTP (reqwest) behind [`SmsSender`], so stages see traits and never a transport.
//! Also the client of Duo's Auth API ([`duo`]), over the same HTTP-client port.

pub mod duo;
mod email;
mod sms;
mod templates;

pub use email::SmtpSender;
pub use sms::{HttpSmsSender, OutgoingSms, SmsSender};
pub use templates::{MessageTemplates, RenderedMessage};

use crate::secret::SecretString;
use async_trait::async_trait;

/// Why a message was not delivered. The text is for the operator's log; it never contains
/// the code or link being sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// An address that is not one.
    #[error("invalid address `{0}`")]
    Address(String),
    /// The message or the client could not be built.
    #[error("could not build the message: {0}")]
    Build(String),
    /// The SMTP server refused or failed.
    #[error("SMTP {host}:{port}: {reason}")]
    Smtp {
        /// The relay.
        host: String,
        /// Its port.
        port: u16,
        /// What went wrong.
        reason: String,
    },
    /// The SMTP server did not answer in time.
    #[error("SMTP {host}:{port}: no answer within {secs} s")]
    Timeout {
        /// The relay.
        host: String,
        /// Its port.
        port: u16,
        /// How long it was given.
        secs: u64,
    },
    /// A message template failed.
    #[error("template `{name}`: {reason}")]
    Template {
        /// The template.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The SMS provider refused or failed.
    #[error("SMS provider {provider}{}: {reason}", status.map(|s| format!(" (status {s})")).unwrap_or_default())]
    Sms {
        /// `twilio` or `generic`.
        provider: &'static str,
        /// The HTTP status, when it answered.
        status: Option<u16>,
        /// Its answer (truncated, any code redacted) or the transport error.
        reason: String,
    },
    /// A CA file or TLS setting could not be used.
    #[error("TLS settings: {0}")]
    Tls(String),
}

/// A message ready to send: both parts already rendered.
///
/// # Security
/// Both parts carry the one-time code or the link's token, so they are [`SecretString`]s:
/// `Debug` shows the recipient and subject only, and the parts are read (with
/// [`SecretString::expose`]) by the transport that sends them and nothing else.
#[derive(Debug)]
pub struct OutgoingEmail {
    /// The recipient's address.
    pub to: String,
    /// The subject (the channel's, never holding the code).
    pub subject: String,
    /// The plain-text part.
    pub text: SecretString,
    /// The HTML part.
    pub html: SecretString,
}

/// Sends e-mail. Implementations must give up within their configured timeout.
#[async_trait]
pub trait EmailSender: Send + Sync {
    /// Delivers one message.
    ///
    /// # Errors
    /// [`NotifyError`] when it was not delivered (refused, timed out, bad address).
    async fn send(&self, msg: OutgoingEmail) -> Result<(), NotifyError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outgoing_emails_debug_names_the_recipient_but_never_its_parts() {
        let mail = OutgoingEmail {
            to: "alice@example.test".into(),
            subject: "Your sign-in code".into(),
            text: SecretString::new("Your code is 482913"),
            html: SecretString::new("<a href=\"https://g/.portcullis/link?token=T0KEN\">go</a>"),
        };
        let shown = format!("{mail:?}");
        assert!(shown.contains("alice@example.test"), "{shown}");
        for secret in ["482913", "T0KEN", "token="] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}
