//! SMTP delivery with lettre on tokio and rustls.

use super::{EmailSender, NotifyError, OutgoingEmail};
use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::PathBuf;
use std::time::Duration;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain SMTP (a relay on localhost or a trusted network).
    None,
    /// `use_tls`: plain connect, then STARTTLS, which is required.
    StartTls,
    /// `use_ssl`: TLS from the first byte (port 465).
    Implicit,
}

/// Connection settings, global (`[email]`) or per stage.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub security: SmtpSecurity,
    pub timeout: Duration,
    pub from: String,
    /// Extra CA certificate (PEM) to trust, for relays with a private CA.
    pub ca_file: Option<PathBuf>,
}

/// An [`EmailSender`] over SMTP. The transport is built once; lettre pools connections.
pub struct SmtpSender {
    /// Built on first use: lettre's connection pool must be created inside the runtime that
    /// will drive it, and the sender is constructed before Pingora starts its runtimes.
    transport: tokio::sync::OnceCell<AsyncSmtpTransport<Tokio1Executor>>,
    settings: SmtpSettings,
    from: Mailbox,
    host: String,
    port: u16,
    timeout: Duration,
}

impl SmtpSender {
    /// # Errors
    /// [`NotifyError::Address`] for a bad `from`, [`NotifyError::Tls`] for an unreadable CA file.
    pub fn new(s: &SmtpSettings) -> Result<Self, NotifyError> {
        let from: Mailbox = s
            .from
            .parse()
            .map_err(|_| NotifyError::Address(s.from.clone()))?;
        // Read the CA file now so a bad path refuses start instead of failing the first user.
        tls_security(s)?;
        Ok(Self {
            transport: tokio::sync::OnceCell::new(),
            settings: s.clone(),
            from,
            host: s.host.clone(),
            port: s.port,
            timeout: s.timeout,
        })
    }
}

fn tls_security(s: &SmtpSettings) -> Result<Tls, NotifyError> {
    Ok(match s.security {
        SmtpSecurity::None => Tls::None,
        SmtpSecurity::StartTls => Tls::Required(tls_params(s)?),
        SmtpSecurity::Implicit => Tls::Wrapper(tls_params(s)?),
    })
}

fn build(s: &SmtpSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, NotifyError> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
        .port(s.port)
        .tls(tls_security(s)?)
        .timeout(Some(s.timeout));
    if let Some(user) = &s.username {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            s.password.clone().unwrap_or_default(),
        ));
    }
    Ok(builder.build())
}

fn tls_params(s: &SmtpSettings) -> Result<TlsParameters, NotifyError> {
    let mut b = TlsParameters::builder(s.host.clone());
    if let Some(path) = &s.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| NotifyError::Tls(format!("cannot read {}: {e}", path.display())))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| NotifyError::Tls(format!("{}: {e}", path.display())))?;
        b = b.add_root_certificate(cert);
    }
    b.build_rustls()
        .map_err(|e| NotifyError::Tls(e.to_string()))
}

#[async_trait]
impl EmailSender for SmtpSender {
    async fn send(&self, msg: OutgoingEmail) -> Result<(), NotifyError> {
        let to: Mailbox = msg
            .to
            .parse()
            .map_err(|_| NotifyError::Address(msg.to.clone()))?;
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(msg.subject)
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(msg.text),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(msg.html),
                    ),
            )
            .map_err(|e| NotifyError::Build(e.to_string()))?;
        // lettre's timeout covers each network step; this bounds the whole exchange, so a
        // server that accepts and then stalls cannot hold the user's request forever.
        let limit = self.timeout + Duration::from_secs(1);
        let transport = self
            .transport
            .get_or_try_init(|| async { build(&self.settings) })
            .await?;
        match tokio::time::timeout(limit, transport.send(email)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(NotifyError::Smtp {
                host: self.host.clone(),
                port: self.port,
                reason: e.to_string(),
            }),
            Err(_) => Err(NotifyError::Timeout {
                host: self.host.clone(),
                port: self.port,
                secs: limit.as_secs(),
            }),
        }
    }
}
