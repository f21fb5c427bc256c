//! SMS delivery over HTTP (reqwest): Twilio's Messages API or any JSON endpoint.
//!
//! Any answer with status 400 or higher, a timeout or a connection error is a failed send.
//! The error names the provider, status and (truncated) body for the operator; it never holds
//! the code.

use super::NotifyError;
use async_trait::async_trait;
use minijinja::{context, Environment};
use std::time::Duration;

/// Which HTTP API delivers SMS.
#[derive(Debug, Clone)]
pub enum SmsProvider {
    /// `POST {api_base}/2010-04-01/Accounts/{account_sid}/Messages.json`, form fields
    /// `To`, `From`, `Body`, HTTP Basic auth with the SID and token.
    Twilio {
        account_sid: String,
        auth_token: String,
        api_base: url::Url,
    },
    /// `POST url` with a JSON payload.
    Generic { url: url::Url, auth: GenericAuth },
}

#[derive(Debug, Clone)]
pub enum GenericAuth {
    None,
    Bearer(String),
    Basic {
        username: String,
        password: Option<String>,
    },
}

/// One SMS to send.
pub struct OutgoingSms {
    pub to: String,
    /// The code alone (the generic payload's `Body`).
    pub token: String,
    /// The full message (Twilio's `Body`, the generic payload's `Message`).
    pub text: String,
}

#[async_trait]
pub trait SmsSender: Send + Sync {
    async fn send(&self, msg: OutgoingSms) -> Result<(), NotifyError>;
}

/// What the operator sees of a failed provider answer.
const BODY_LOG_LIMIT: usize = 300;

/// An [`SmsSender`] for one configured provider.
pub struct HttpSmsSender {
    client: reqwest::Client,
    provider: SmsProvider,
    from_number: String,
    /// Operator's mapping: Twilio's message text, or the generic provider's whole JSON payload.
    mapping: Option<Environment<'static>>,
    site_title: String,
}

impl HttpSmsSender {
    /// # Errors
    /// [`NotifyError::Build`] when the HTTP client or the mapping template cannot be built.
    pub fn new(
        provider: SmsProvider,
        from_number: String,
        mapping: Option<String>,
        timeout: Duration,
        site_title: String,
    ) -> Result<Self, NotifyError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Build(e.to_string()))?;
        let mapping = match mapping {
            Some(m) => {
                let mut env = Environment::new();
                env.add_template_owned("mapping", m)
                    .map_err(|e| NotifyError::Build(format!("mapping template: {e}")))?;
                Some(env)
            }
            None => None,
        };
        Ok(Self {
            client,
            provider,
            from_number,
            mapping,
            site_title,
        })
    }

    fn provider_name(&self) -> &'static str {
        match self.provider {
            SmsProvider::Twilio { .. } => "twilio",
            SmsProvider::Generic { .. } => "generic",
        }
    }

    fn render_mapping(&self, msg: &OutgoingSms) -> Result<Option<String>, NotifyError> {
        let Some(env) = &self.mapping else {
            return Ok(None);
        };
        let ctx = context! {
            token => msg.token,
            message => msg.text,
            device => context! { phone_number => msg.to },
            stage => context! { from_number => self.from_number },
            site_title => self.site_title,
            brand => context! { branding_title => self.site_title },
        };
        env.get_template("mapping")
            .and_then(|t| t.render(ctx))
            .map(Some)
            .map_err(|e| NotifyError::Template {
                name: "mapping".into(),
                reason: e.to_string(),
            })
    }

    fn failed(&self, status: Option<u16>, reason: String) -> NotifyError {
        NotifyError::Sms {
            provider: self.provider_name(),
            status,
            reason,
        }
    }
}

#[async_trait]
impl SmsSender for HttpSmsSender {
    async fn send(&self, msg: OutgoingSms) -> Result<(), NotifyError> {
        let mapped = self.render_mapping(&msg)?;
        let request =
            match &self.provider {
                SmsProvider::Twilio {
                    account_sid,
                    auth_token,
                    api_base,
                } => {
                    let url = format!(
                        "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
                        api_base.as_str().trim_end_matches('/')
                    );
                    let body = mapped.unwrap_or_else(|| msg.text.clone());
                    self.client
                        .post(url)
                        .basic_auth(account_sid, Some(auth_token))
                        .form(&[
                            ("To", msg.to.as_str()),
                            ("From", self.from_number.as_str()),
                            ("Body", body.as_str()),
                        ])
                }
                SmsProvider::Generic { url, auth } => {
                    let payload =
                        match mapped {
                            Some(text) => serde_json::from_str::<serde_json::Value>(&text)
                                .map_err(|e| NotifyError::Template {
                                    name: "mapping".into(),
                                    reason: format!("did not render to JSON: {e}"),
                                })?,
                            None => serde_json::json!({
                                "From": self.from_number,
                                "To": msg.to,
                                "Body": msg.token,
                                "Message": msg.text,
                            }),
                        };
                    let req = self.client.post(url.clone()).json(&payload);
                    match auth {
                        GenericAuth::None => req,
                        GenericAuth::Bearer(token) => req.bearer_auth(token),
                        GenericAuth::Basic { username, password } => {
                            req.basic_auth(username, password.as_ref())
                        }
                    }
                }
            };
        let response = request.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            self.failed(None, format!("{kind}: {e}"))
        })?;
        let status = response.status();
        if status.as_u16() >= 400 {
            let body = response.text().await.unwrap_or_default();
            let mut shown: String = body.chars().take(BODY_LOG_LIMIT).collect();
            if body.chars().count() > BODY_LOG_LIMIT {
                shown.push('…');
            }
            return Err(self.failed(Some(status.as_u16()), format!("answered {status}: {shown}")));
        }
        Ok(())
    }
}
