//! Delivery of one-time codes and links: e-mail over SMTP (lettre) behind [`EmailSender`] and
//! SMS over HTTP (reqwest) behind [`SmsSender`], so stages see traits and never a transport.

mod email;
mod sms;
mod templates;

pub use email::SmtpSender;
pub use sms::{HttpSmsSender, OutgoingSms, SmsSender};
pub use templates::{MessageTemplates, RenderedMessage};

use async_trait::async_trait;

/// Why a message was not delivered. The text is for the operator's log; it never contains
/// the code or link being sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    #[error("invalid address `{0}`")]
    Address(String),
    #[error("could not build the message: {0}")]
    Build(String),
    #[error("SMTP {host}:{port}: {reason}")]
    Smtp {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("SMTP {host}:{port}: no answer within {secs} s")]
    Timeout { host: String, port: u16, secs: u64 },
    #[error("template `{name}`: {reason}")]
    Template { name: String, reason: String },
    #[error("SMS provider {provider}{}: {reason}", status.map(|s| format!(" (status {s})")).unwrap_or_default())]
    Sms {
        provider: &'static str,
        status: Option<u16>,
        reason: String,
    },
    #[error("TLS settings: {0}")]
    Tls(String),
}

/// A message ready to send: both parts already rendered.
pub struct OutgoingEmail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Sends e-mail. Implementations must give up within their configured timeout.
#[async_trait]
pub trait EmailSender: Send + Sync {
    async fn send(&self, msg: OutgoingEmail) -> Result<(), NotifyError>;
}
