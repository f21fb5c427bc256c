//! SMTP delivery with lettre on tokio and rustls.

use super::{EmailSender, NotifyError, OutgoingEmail};
use crate::config::{SmtpSecurity, SmtpSettings};
use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

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
        let address = s.from.address();
        let from = Mailbox::new(
            s.from.name().map(str::to_string),
            address
                .parse()
                .map_err(|_| NotifyError::Address(address.to_string()))?,
        );
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
            s.password
                .as_ref()
                .map(|p| p.expose().clone())
                .unwrap_or_default(),
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
        let sent = self.deliver(msg).await;
        crate::metrics::sent("email", "smtp", sent.is_ok());
        sent
    }
}

impl SmtpSender {
    /// Hands one message to the SMTP server.
    async fn deliver(&self, msg: OutgoingEmail) -> Result<(), NotifyError> {
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
                            .body(msg.text.expose().to_owned()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(msg.html.expose().to_owned()),
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
