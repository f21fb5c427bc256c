//! SMS delivery over HTTP (reqwest): Twilio's Messages API or any JSON endpoint.
//!
//! Any answer with status 400 or higher, a timeout or a connection error is a failed send.
//! The error names the provider, status and (truncated) body for the operator; it never holds
//! the code (an echoed code is redacted from the body) nor the request URL (it may carry a key).

use super::NotifyError;
use crate::config::{GenericAuth, SmsProvider};
use async_trait::async_trait;
use minijinja::{context, Environment};
use std::time::Duration;

/// One SMS to send.
pub struct OutgoingSms {
    /// The number, normalised (`+41791234567`).
    pub to: String,
    /// The code alone (the generic payload's `Body`).
    pub token: String,
    /// The full message (Twilio's `Body`, the generic payload's `Message`).
    pub text: String,
}

/// Sends SMS. Implementations must give up within their configured timeout.
#[async_trait]
pub trait SmsSender: Send + Sync {
    /// Delivers one SMS.
    ///
    /// # Errors
    /// [`NotifyError::Sms`] when the provider refused, failed or did not answer in time.
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
                        .basic_auth(account_sid, Some(auth_token.expose()))
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
                    let req = self.client.post(url.expose().clone()).json(&payload);
                    match auth {
                        GenericAuth::None => req,
                        GenericAuth::Bearer(token) => req.bearer_auth(token.expose()),
                        GenericAuth::Basic { username, password } => {
                            req.basic_auth(username, password.as_ref().map(|p| p.expose()))
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
            // The URL stays out: a generic provider's URL may carry an API key in its query.
            self.failed(None, format!("{kind}: {}", e.without_url()))
        })?;
        let status = response.status();
        if status.as_u16() >= 400 {
            let body = response.text().await.unwrap_or_default();
            let shown = shown_body(&body, &msg.token);
            return Err(self.failed(Some(status.as_u16()), format!("answered {status}: {shown}")));
        }
        Ok(())
    }
}

/// What of a provider's error answer goes to the log: the code redacted (a provider that
/// echoes the request would otherwise put the one-time code in the log), then cut to
/// [`BODY_LOG_LIMIT`] characters. Redacting before cutting means no prefix of the code is
/// left at the cut either.
fn shown_body(body: &str, token: &str) -> String {
    let redacted = if token.is_empty() {
        body.to_string()
    } else {
        body.replace(token, REDACTED)
    };
    let mut shown: String = redacted.chars().take(BODY_LOG_LIMIT).collect();
    if redacted.chars().count() > BODY_LOG_LIMIT {
        shown.push('…');
    }
    shown
}

/// What stands in the log for the one-time code.
const REDACTED: &str = "******";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echoed_code_is_redacted_from_the_logged_body() {
        let shown = shown_body(r#"{"error":"bad To","echo":{"Body":"482913"}}"#, "482913");
        assert!(!shown.contains("482913"), "{shown}");
        assert!(shown.contains(r#""Body":"******""#), "{shown}");
    }

    #[test]
    fn a_long_body_is_cut_after_redaction() {
        let body = format!("{}123456", "x".repeat(BODY_LOG_LIMIT - 3));
        let shown = shown_body(&body, "123456");
        assert!(
            !shown.contains("123"),
            "a prefix of the code survived the cut: {shown}"
        );
        assert!(shown.ends_with('…'), "{shown}");
    }
}
