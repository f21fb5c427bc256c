//! A client of Duo's Auth API v2 over the [`HttpClient`] port: `check`, `preauth`, `auth`
//! (push, asynchronous, and passcode), `auth_status`, `enroll` and `enroll_status`.
//!
//! Every request is signed as Duo documents for the Auth API: the canonical request is the
//! date (RFC 2822), the method in upper case, the API host in lower case, the path, and the
//! parameters sorted by name and percent-encoded (RFC 3986 unreserved characters kept), one per
//! line; its HMAC-SHA512 under the secret key, in lower-case hex, is the Basic-auth password
//! and the integration key the user. The date travels in `X-Duo-Date` (and `Date`).
//!
//! # Security
//! The secret key, the signature and passcodes never reach a log or an error: errors carry
//! Duo's status, error code and message, which hold none of them.

use crate::config::DuoApi;
use crate::http_client::{HttpClient, HttpReply, HttpRequest};
use crate::secret::SecretString;
use hmac::{Hmac, Mac};
use http::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::Sha512;

/// Characters kept as they are in a canonical parameter (RFC 3986 unreserved); everything
/// else, space included, becomes `%XX` with upper-case hex.
const ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The date header Duo reads the signed date from.
pub const DATE_HEADER: &str = "x-duo-date";

/// Why a call to Duo gave no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DuoError {
    /// Duo could not be reached, timed out, limited the rate (429) or failed (5xx): the user
    /// may try again in a moment.
    #[error("Duo unavailable: {0}")]
    Unavailable(String),
    /// Duo refused the request (bad credentials, a bad parameter): the operator must act.
    #[error("Duo refused the request (status {status}, code {code}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Duo's error code (`40103`), 0 when it gave none.
        code: u32,
        /// Duo's message and detail.
        message: String,
    },
    /// An answer that is not what Duo documents.
    #[error("Duo answered something unexpected: {0}")]
    Malformed(String),
}

impl DuoError {
    /// Whether trying again later may succeed (Duo down or rate-limiting).
    pub fn retryable(&self) -> bool {
        matches!(self, DuoError::Unavailable(_))
    }
}

/// Who a request is about: the user id Duo gave at enrolment, or a username Duo already knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DuoUser {
    /// Duo's `user_id` (`DU...`), from `enroll`.
    UserId(String),
    /// A username Duo already had (an account linked after `preauth` said `auth`).
    Username(String),
}

impl DuoUser {
    /// As stored in a device's `secret`: the user id alone, or `username:NAME`.
    pub fn stored(&self) -> String {
        match self {
            DuoUser::UserId(id) => id.clone(),
            DuoUser::Username(name) => format!("username:{name}"),
        }
    }

    /// The user a device's `secret` names (see [`DuoUser::stored`]).
    pub fn from_stored(s: &str) -> DuoUser {
        match s.strip_prefix("username:") {
            Some(name) => DuoUser::Username(name.to_string()),
            None => DuoUser::UserId(s.to_string()),
        }
    }

    fn param(&self) -> (&'static str, &str) {
        match self {
            DuoUser::UserId(id) => ("user_id", id),
            DuoUser::Username(name) => ("username", name),
        }
    }
}

/// What `preauth` says about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preauth {
    /// Duo knows the user and has a device to ask.
    Auth,
    /// Duo lets the user through without a second factor (a bypass).
    Allow,
    /// Duo refuses the user; the message says why.
    Deny(String),
    /// Duo does not know the user (or has no device for them): enrol first.
    Enroll,
}

/// A started enrolment: what the user activates Duo Mobile with.
#[derive(Debug, Serialize, Deserialize)]
pub struct Enrollment {
    /// Duo's id of the new user.
    pub user_id: String,
    /// The `duo://` code Duo Mobile scans (shown here as a QR code drawn by the gateway).
    pub activation_code: SecretString,
    /// A page that installs and activates Duo Mobile when opened on the phone.
    pub activation_url: String,
    /// When the activation code stops working, unix seconds.
    pub expiration: i64,
}

/// What `enroll_status` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollStatus {
    /// The device is activated.
    Success,
    /// Not activated yet.
    Waiting,
    /// The activation code is not (or no longer) valid.
    Invalid,
}

/// The verdict of `auth` or `auth_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Approved.
    Allow,
    /// Refused, timed out or reported as fraud; `status` is Duo's (`deny`, `timeout`,
    /// `fraud`), `message` its text for the user.
    Deny {
        /// Duo's status word.
        status: String,
        /// Duo's message.
        message: String,
    },
    /// The push is not answered yet.
    Waiting,
}

/// Duo's envelope: `{"stat": "OK", "response": ...}` or `{"stat": "FAIL", "code", "message"}`.
#[derive(Deserialize)]
struct Envelope {
    stat: String,
    #[serde(default)]
    response: serde_json::Value,
    #[serde(default)]
    code: Option<u32>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    message_detail: Option<String>,
}

/// The canonical request Duo signs: date, method, host, path and parameters, one per line.
pub fn canonical(
    date: &str,
    method: &str,
    host: &str,
    path: &str,
    params: &[(&str, &str)],
) -> String {
    format!(
        "{date}\n{}\n{}\n{path}\n{}",
        method.to_ascii_uppercase(),
        host.to_ascii_lowercase(),
        canonical_params(params)
    )
}

/// `a=1&b=x%20y`: parameters percent-encoded (RFC 3986) and sorted by encoded name, then value.
pub fn canonical_params(params: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| {
            (
                percent_encoding::utf8_percent_encode(k, ENCODE).to_string(),
                percent_encoding::utf8_percent_encode(v, ENCODE).to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The lower-case hex HMAC-SHA512 of `canonical` under `secret`.
pub fn signature(secret: &str, canonical: &str) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha512>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(canonical.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `Tue, 21 Aug 2012 17:29:18 +0000` for `unix` seconds.
pub fn rfc2822(unix: i64) -> String {
    use time::format_description::well_known::Rfc2822;
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc2822).ok())
        .unwrap_or_default()
}

/// One Duo integration, over an [`HttpClient`], at a moment.
pub struct DuoClient<'a> {
    api: &'a DuoApi,
    http: &'a dyn HttpClient,
    /// Unix seconds: the signed date.
    now: i64,
}

impl<'a> DuoClient<'a> {
    /// A client of the integration `api`, signing with the date `now` (unix seconds).
    pub fn new(api: &'a DuoApi, http: &'a dyn HttpClient, now: i64) -> Self {
        Self { api, http, now }
    }

    /// The signed request for `method` `path` with `params`.
    fn request(
        &self,
        method: &http::Method,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<HttpRequest, DuoError> {
        let date = rfc2822(self.now);
        let canon = canonical(&date, method.as_str(), &self.api.host, path, params);
        let sig = signature(self.api.client_secret.expose(), &canon);
        let base = format!("{}://{}{path}", self.api.scheme, self.api.host);
        // The host was checked as a URL host when the config was loaded.
        let mut url = url::Url::parse(&base)
            .map_err(|e| DuoError::Malformed(format!("the API hostname makes no URL: {e}")))?;
        let request = if *method == http::Method::GET {
            let query = canonical_params(params);
            url.set_query((!query.is_empty()).then_some(query.as_str()));
            HttpRequest::get(url)
        } else {
            let mut sorted: Vec<(String, String)> = params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            sorted.sort();
            HttpRequest::form(url, sorted)
        };
        let mut request = request
            .timeout(self.api.timeout)
            .basic_auth(&self.api.client_id, Some(&sig));
        if let Ok(v) = HeaderValue::from_str(&date) {
            request = request
                .header(HeaderName::from_static(DATE_HEADER), v.clone())
                .header(http::header::DATE, v);
        }
        Ok(request)
    }

    /// Sends and unwraps Duo's envelope: the `response` of an `OK` answer.
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<serde_json::Value, DuoError> {
        let request = self.request(&method, path, params)?;
        let reply = self
            .http
            .post(request)
            .await
            .map_err(|e| DuoError::Unavailable(e.to_string()))?;
        Self::unwrap(path, &reply)
    }

    fn unwrap(path: &str, reply: &HttpReply) -> Result<serde_json::Value, DuoError> {
        let status = reply.status.as_u16();
        let envelope: Option<Envelope> = reply.json().ok();
        let told = |e: &Envelope| {
            let mut m = e.message.clone().unwrap_or_default();
            if let Some(d) = &e.message_detail {
                m.push_str(": ");
                m.push_str(d);
            }
            m.chars().take(200).collect::<String>()
        };
        if status == 429 || status >= 500 {
            let why = envelope.as_ref().map(told).unwrap_or_default();
            return Err(DuoError::Unavailable(format!(
                "{path} answered {status} {why}"
            )));
        }
        match envelope {
            Some(e) if status == 200 && e.stat == "OK" => Ok(e.response),
            Some(e) => Err(DuoError::Refused {
                status,
                code: e.code.unwrap_or(0),
                message: told(&e),
            }),
            None => Err(DuoError::Malformed(format!(
                "{path} answered {status}, not JSON"
            ))),
        }
    }

    /// `GET /auth/v2/check`: whether the credentials work.
    ///
    /// # Errors
    /// [`DuoError`].
    pub async fn check(&self) -> Result<(), DuoError> {
        self.call(http::Method::GET, "/auth/v2/check", &[])
            .await
            .map(|_| ())
    }

    /// `POST /auth/v2/preauth`: whether `user` can authenticate, must enrol, or is let
    /// through or refused by Duo's policy.
    ///
    /// # Errors
    /// [`DuoError`].
    pub async fn preauth(&self, user: &DuoUser) -> Result<Preauth, DuoError> {
        let r = self
            .call(http::Method::POST, "/auth/v2/preauth", &[user.param()])
            .await?;
        let message = text(&r, "status_msg");
        match r["result"].as_str() {
            Some("auth") => Ok(Preauth::Auth),
            Some("allow") => Ok(Preauth::Allow),
            Some("deny") => Ok(Preauth::Deny(message)),
            Some("enroll") => Ok(Preauth::Enroll),
            _ => Err(DuoError::Malformed("preauth: no known result".into())),
        }
    }

    /// `POST /auth/v2/auth` with `factor=push`, `device=auto`, `async=1`: sends a push and
    /// returns its transaction id at once.
    ///
    /// # Errors
    /// [`DuoError`].
    pub async fn push(&self, user: &DuoUser, ipaddr: Option<&str>) -> Result<String, DuoError> {
        let mut params = vec![
            user.param(),
            ("factor", "push"),
            ("device", "auto"),
            ("async", "1"),
        ];
        if let Some(ip) = ipaddr {
            params.push(("ipaddr", ip));
        }
        let r = self
            .call(http::Method::POST, "/auth/v2/auth", &params)
            .await?;
        match r["txid"].as_str() {
            Some(txid) if !txid.is_empty() => Ok(txid.to_string()),
            _ => Err(DuoError::Malformed("auth: no txid".into())),
        }
    }

    /// `POST /auth/v2/auth` with `factor=passcode`: checks a passcode (from Duo Mobile, a
    /// hardware token or an SMS Duo sent) at once.
    ///
    /// # Errors
    /// [`DuoError`].
    pub async fn passcode(
        &self,
        user: &DuoUser,
        passcode: &SecretString,
        ipaddr: Option<&str>,
    ) -> Result<Verdict, DuoError> {
        let mut params = vec![
            user.param(),
            ("factor", "passcode"),
            ("passcode", passcode.expose()),
        ];
        if let Some(ip) = ipaddr {
            params.push(("ipaddr", ip));
        }
        let r = self
            .call(http::Method::POST, "/auth/v2/auth", &params)
            .await?;
        verdict(&r)
    }

    /// `GET /auth/v2/auth_status?txid=...`: the verdict on a push sent with [`Self::push`].
    ///
    /// # Errors
    /// [`DuoError`].
    pub async fn auth_status(&self, txid: &str) -> Result<Verdict, DuoError> {
        let r = self
            .call(http::Method::GET, "/auth/v2/auth_status", &[("txid", txid)])
            .await?;
        verdict(&r)
    }

    /// `POST /auth/v2/enroll`: a new Duo user (named `username`, or a name Duo picks when
    /// `None`) and the code that activates Duo Mobile for them, valid `valid_secs`.
    ///
    /// # Errors
    /// [`DuoError`] (a `Refused` when Duo already has a user of that name).
    pub async fn enroll(
        &self,
        username: Option<&str>,
        valid_secs: u32,
    ) -> Result<Enrollment, DuoError> {
        let secs = valid_secs.to_string();
        let mut params = vec![("valid_secs", secs.as_str())];
        if let Some(name) = username {
            params.push(("username", name));
        }
        let r = self
            .call(http::Method::POST, "/auth/v2/enroll", &params)
            .await?;
        let (Some(user_id), Some(code), Some(url)) = (
            r["user_id"].as_str(),
            r["activation_code"].as_str(),
            r["activation_url"].as_str(),
        ) else {
            return Err(DuoError::Malformed("enroll: missing fields".into()));
        };
        Ok(Enrollment {
            user_id: user_id.to_string(),
            activation_code: SecretString::new(code),
            activation_url: url.to_string(),
            expiration: r["expiration"]
                .as_i64()
                .unwrap_or(self.now + i64::from(valid_secs)),
        })
    }

    /// `POST /auth/v2/enroll_status`: whether the user activated Duo Mobile with the code.
    ///
    /// # Errors
    /// [`DuoError`].
    pub async fn enroll_status(
        &self,
        user_id: &str,
        activation_code: &SecretString,
    ) -> Result<EnrollStatus, DuoError> {
        let r = self
            .call(
                http::Method::POST,
                "/auth/v2/enroll_status",
                &[
                    ("user_id", user_id),
                    ("activation_code", activation_code.expose()),
                ],
            )
            .await?;
        match r.as_str() {
            Some("success") => Ok(EnrollStatus::Success),
            Some("waiting") => Ok(EnrollStatus::Waiting),
            Some("invalid") => Ok(EnrollStatus::Invalid),
            _ => Err(DuoError::Malformed("enroll_status: no known status".into())),
        }
    }
}

fn text(r: &serde_json::Value, key: &str) -> String {
    r[key]
        .as_str()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

/// `{"result": "allow" | "deny" | "waiting", "status", "status_msg"}`.
fn verdict(r: &serde_json::Value) -> Result<Verdict, DuoError> {
    match r["result"].as_str() {
        Some("allow") => Ok(Verdict::Allow),
        Some("waiting") => Ok(Verdict::Waiting),
        Some("deny") => Ok(Verdict::Deny {
            status: text(r, "status"),
            message: text(r, "status_msg"),
        }),
        _ => Err(DuoError::Malformed("auth: no known result".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::testing::ScriptedHttpClient;
    use http::StatusCode;
    use std::time::Duration;

    fn api() -> DuoApi {
        DuoApi {
            host: "api-xxxxxxxx.duosecurity.com".into(),
            scheme: "https",
            client_id: "DIWJ8X6AEYOR5OMC6TQ1".into(),
            client_secret: Secret::new("Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep".into()),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn parameters_are_sorted_and_encoded_as_rfc_3986() {
        let cases: [(&[(&str, &str)], &str); 5] = [
            (&[], ""),
            (
                &[("username", "root"), ("realname", "First Last")],
                "realname=First%20Last&username=root",
            ),
            (&[("a~b", "c.d-e_f")], "a~b=c.d-e_f"),
            (&[("k", "ü+/=&?")], "k=%C3%BC%2B%2F%3D%26%3F"),
            (&[("b", "1"), ("a", "2"), ("A", "3")], "A=3&a=2&b=1"),
        ];
        for (params, want) in cases {
            assert_eq!(canonical_params(params), want, "{params:?}");
        }
    }

    /// The expected value was computed independently (Python's `hmac` over the same text).
    #[test]
    fn the_signature_is_hmac_sha512_hex_of_the_canonical_request() {
        let canon = canonical(
            "Tue, 21 Aug 2012 17:29:18 -0000",
            "post",
            "API-XXXXXXXX.DUOSECURITY.COM",
            "/accounts/v1/account/list",
            &[("realname", "First Last"), ("username", "root")],
        );
        assert_eq!(
            canon,
            "Tue, 21 Aug 2012 17:29:18 -0000\nPOST\napi-xxxxxxxx.duosecurity.com\n/accounts/v1/account/list\nrealname=First%20Last&username=root"
        );
        let sig = signature("Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep", &canon);
        assert_eq!(sig, "1bffb8924348f7db7da9e7d7d749ded93aafd02d8e904960da7b96c57510220185a64a2827ee8f24ac5d30802a9ee97e59de44b304b18242f0d596d15a8122af");
    }

    #[test]
    fn dates_are_rfc_2822() {
        assert_eq!(rfc2822(1_345_570_158), "Tue, 21 Aug 2012 17:29:18 +0000");
    }

    #[tokio::test]
    async fn a_request_carries_the_signed_date_and_basic_auth_but_debug_shows_neither() {
        let http = ScriptedHttpClient::new();
        http.push(Ok(HttpReply::new(
            StatusCode::OK,
            r#"{"stat":"OK","response":{"result":"enroll","status_msg":"Enroll"}}"#,
        )));
        let api = api();
        let c = DuoClient::new(&api, http.as_ref(), 1_345_570_158);
        let got = c.preauth(&DuoUser::Username("alice".into())).await.unwrap();
        assert_eq!(got, Preauth::Enroll);
        let reqs = http.requests();
        let r = &reqs[0];
        assert_eq!(
            r.url.as_str(),
            "https://api-xxxxxxxx.duosecurity.com/auth/v2/preauth"
        );
        assert_eq!(r.headers[DATE_HEADER], "Tue, 21 Aug 2012 17:29:18 +0000");
        let canon = canonical(
            "Tue, 21 Aug 2012 17:29:18 +0000",
            "POST",
            &api.host,
            "/auth/v2/preauth",
            &[("username", "alice")],
        );
        let sig = signature(api.client_secret.expose(), &canon);
        let want = crate::http_client::HttpRequest::get(r.url.clone())
            .basic_auth(&api.client_id, Some(&sig));
        assert_eq!(
            r.headers[http::header::AUTHORIZATION],
            want.headers[http::header::AUTHORIZATION]
        );
        let shown = format!("{r:?}");
        assert!(
            !shown.contains(&sig) && !shown.contains("Zh5eGm"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn rate_limits_and_outages_are_retryable_and_refusals_are_not() {
        let cases = [
            (
                429,
                r#"{"stat":"FAIL","code":42901,"message":"Too Many Requests"}"#,
                true,
            ),
            (503, "<html>down</html>", true),
            (
                401,
                r#"{"stat":"FAIL","code":40103,"message":"Invalid signature in request credentials"}"#,
                false,
            ),
            (
                400,
                r#"{"stat":"FAIL","code":40002,"message":"Invalid request parameters","message_detail":"username"}"#,
                false,
            ),
            (200, "not json", false),
        ];
        for (status, body, retryable) in cases {
            let http = ScriptedHttpClient::new();
            http.push(Ok(HttpReply::new(
                StatusCode::from_u16(status).unwrap(),
                body,
            )));
            let api = api();
            let e = DuoClient::new(&api, http.as_ref(), 0)
                .auth_status("tx")
                .await
                .unwrap_err();
            assert_eq!(e.retryable(), retryable, "{status}: {e}");
        }
    }

    #[test]
    fn stored_users_round_trip() {
        for u in [
            DuoUser::UserId("DUABC".into()),
            DuoUser::Username("a:b".into()),
        ] {
            assert_eq!(DuoUser::from_stored(&u.stored()), u);
        }
    }
}
