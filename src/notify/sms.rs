//! SMS delivery over HTTP (the [`HttpClient`] port): Twilio's Messages API or any JSON
//! endpoint.
//!
//! Any answer with status 400 or higher, a timeout or a connection error is a failed send.
//! The error names the provider, status and (truncated) body for the operator; it never holds
//! the code (an echoed code is redacted from the body) nor the request URL (it may carry a key).

use super::NotifyError;
use crate::config::{GenericAuth, SmsProvider};
use crate::http_client::{HttpClient, HttpRequest};
use crate::secret::SecretString;
use async_trait::async_trait;
use minijinja::{context, Environment};
use std::sync::Arc;
use std::time::Duration;

/// One SMS to send.
///
/// # Security
/// The code and the text holding it are [`SecretString`]s: `Debug` shows the number only, and
/// they are read (with [`SecretString::expose`]) by the sender that builds the provider's
/// request and nothing else.
#[derive(Debug)]
pub struct OutgoingSms {
    /// The number, normalised (`+41791234567`).
    pub to: String,
    /// The code alone (the generic payload's `Body`).
    pub token: SecretString,
    /// The full message (Twilio's `Body`, the generic payload's `Message`).
    pub text: SecretString,
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
    http: Arc<dyn HttpClient>,
    /// How long one send may take, connecting included.
    timeout: Duration,
    provider: SmsProvider,
    from_number: String,
    /// Operator's mapping: Twilio's message text, or the generic provider's whole JSON payload.
    mapping: Option<Environment<'static>>,
    site_title: String,
}

impl HttpSmsSender {
    /// A sender to `provider` over `http`, each send given up after `timeout`.
    ///
    /// # Errors
    /// [`NotifyError::Build`] when the mapping template cannot be built.
    pub fn new(
        provider: SmsProvider,
        from_number: String,
        mapping: Option<String>,
        timeout: Duration,
        site_title: String,
        http: Arc<dyn HttpClient>,
    ) -> Result<Self, NotifyError> {
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
            http,
            timeout,
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
            token => msg.token.expose(),
            message => msg.text.expose(),
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
        let sent = self.post(msg).await;
        crate::metrics::sent("sms", self.provider_name(), sent.is_ok());
        sent
    }
}

impl HttpSmsSender {
    /// Sends one message to the provider.
    async fn post(&self, msg: OutgoingSms) -> Result<(), NotifyError> {
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
                    // The URL stays out of the error: it names the account.
                    let url = url::Url::parse(&url).map_err(|e| {
                        self.failed(
                            None,
                            format!("request failed: the account SID makes a bad URL: {e}"),
                        )
                    })?;
                    let body = mapped.unwrap_or_else(|| msg.text.expose().to_owned());
                    HttpRequest::form(
                        url,
                        [
                            ("To", msg.to.as_str()),
                            ("From", self.from_number.as_str()),
                            ("Body", body.as_str()),
                        ],
                    )
                    .basic_auth(account_sid, Some(auth_token.expose()))
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
                                "Body": msg.token.expose(),
                                "Message": msg.text.expose(),
                            }),
                        };
                    let req = HttpRequest::json(url.expose().clone(), payload);
                    match auth {
                        GenericAuth::None => req,
                        GenericAuth::Bearer(token) => req.bearer_auth(token.expose()),
                        GenericAuth::Basic { username, password } => {
                            req.basic_auth(username, password.as_ref().map(|p| p.expose().as_str()))
                        }
                    }
                }
            };
        // `HttpError` never holds the URL: a generic provider's may carry an API key.
        let reply = self
            .http
            .post(request.timeout(self.timeout))
            .await
            .map_err(|e| self.failed(None, e.to_string()))?;
        let status = reply.status;
        if status.as_u16() >= 400 {
            let shown = shown_body(&reply.text(), msg.token.expose());
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
    use crate::http_client::{HttpBody, HttpError, HttpReply};
    use crate::testing::ScriptedHttpClient;
    use http::header::AUTHORIZATION;
    use http::StatusCode;

    // Providers are built here only, so a change to their types is one edit.
    fn twilio() -> SmsProvider {
        SmsProvider::Twilio {
            account_sid: "AC123".into(),
            auth_token: "tok".into(),
            api_base: url::Url::parse("http://127.0.0.1:9/base/").unwrap(),
        }
    }

    fn generic(auth: GenericAuth) -> SmsProvider {
        SmsProvider::Generic {
            url: crate::secret::Secret::new(
                url::Url::parse("http://127.0.0.1:9/sms?key=K").unwrap(),
            ),
            auth,
        }
    }

    fn sender(
        provider: SmsProvider,
        mapping: Option<&str>,
    ) -> (HttpSmsSender, Arc<ScriptedHttpClient>) {
        let http = ScriptedHttpClient::new();
        let s = HttpSmsSender::new(
            provider,
            "+15550000".into(),
            mapping.map(str::to_string),
            Duration::from_secs(7),
            "Portcullis".into(),
            http.clone(),
        )
        .unwrap();
        (s, http)
    }

    fn code_to(to: &str) -> OutgoingSms {
        OutgoingSms {
            to: to.into(),
            token: SecretString::new("482913"),
            text: SecretString::new("Your code is 482913"),
        }
    }

    #[tokio::test]
    async fn twilio_gets_a_form_with_basic_auth_at_the_account_url() {
        let (s, http) = sender(twilio(), None);
        s.send(code_to("+15551234")).await.unwrap();
        let requests = http.requests();
        let r = &requests[0];
        assert_eq!(
            r.url.as_str(),
            "http://127.0.0.1:9/base/2010-04-01/Accounts/AC123/Messages.json"
        );
        assert_eq!(r.headers[AUTHORIZATION], "Basic QUMxMjM6dG9r");
        assert_eq!(r.timeout, Duration::from_secs(7));
        let want: Vec<(String, String)> = [
            ("To", "+15551234"),
            ("From", "+15550000"),
            ("Body", "Your code is 482913"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert!(r.body == HttpBody::Form(want));
    }

    #[tokio::test]
    async fn a_generic_provider_gets_json_with_its_auth_or_the_mapped_payload() {
        let (s, http) = sender(generic(GenericAuth::Bearer("BT".into())), None);
        s.send(code_to("+1")).await.unwrap();
        {
            let r = &http.requests()[0];
            assert_eq!(r.url.as_str(), "http://127.0.0.1:9/sms?key=K");
            assert_eq!(r.headers[AUTHORIZATION], "Bearer BT");
            let want = serde_json::json!({
                "From": "+15550000", "To": "+1", "Body": "482913", "Message": "Your code is 482913",
            });
            assert!(r.body == HttpBody::Json(want));
        }

        let mapping = r#"{"to": "{{ device.phone_number }}", "otp": "{{ token }}"}"#;
        let (s, http) = sender(generic(GenericAuth::None), Some(mapping));
        s.send(code_to("+2")).await.unwrap();
        let r = &http.requests()[0];
        assert!(r.headers.get(AUTHORIZATION).is_none());
        assert!(r.body == HttpBody::Json(serde_json::json!({"to": "+2", "otp": "482913"})));
    }

    /// What a failed send tells the operator, by what the provider did.
    #[tokio::test]
    async fn a_failed_send_names_status_and_reason_but_never_the_code_or_url() {
        let cases: Vec<(Result<HttpReply, HttpError>, Option<u16>, &str)> = vec![
            (
                Ok(HttpReply::new(
                    StatusCode::BAD_REQUEST,
                    r#"{"echo":"482913"}"#,
                )),
                Some(400),
                "answered 400 Bad Request",
            ),
            (
                Ok(HttpReply::new(StatusCode::TOO_MANY_REQUESTS, "slow down")),
                Some(429),
                "slow down",
            ),
            (Err(HttpError::Timeout), None, "timed out"),
            (
                Err(HttpError::Connect("tcp connect error".into())),
                None,
                "connection failed",
            ),
        ];
        for (reply, want_status, want_text) in cases {
            let (s, http) = sender(generic(GenericAuth::None), None);
            http.push(reply);
            let err = s.send(code_to("+1")).await.unwrap_err();
            let NotifyError::Sms { status, reason, .. } = &err else {
                panic!("{err:?}");
            };
            assert_eq!(*status, want_status, "{err}");
            let shown = err.to_string();
            assert!(shown.contains(want_text), "{shown}");
            assert!(
                !shown.contains("482913") && !shown.contains("key=K"),
                "{shown}"
            );
            assert!(!reason.is_empty());
        }
        // Any status below 400 is a delivery.
        let (s, http) = sender(generic(GenericAuth::None), None);
        http.push(Ok(HttpReply::new(StatusCode::ACCEPTED, "queued")));
        assert!(s.send(code_to("+1")).await.is_ok());
    }

    #[test]
    fn an_outgoing_sms_debug_shows_the_number_but_never_the_code() {
        let shown = format!("{:?}", code_to("+15551234"));
        assert!(shown.contains("+15551234"), "{shown}");
        assert!(!shown.contains("482913"), "{shown}");
    }

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
