//! Validation of the `authenticator_duo` stage: where Duo's Auth API is and the integration's
//! credentials.

use super::email::duration_or;
use super::error::Problem;
use super::raw::RawDuoStage;
use crate::secret::Secret;
use std::time::Duration;

type Checked<T> = Result<T, Problem>;

/// Where Duo's Auth API v2 is and how requests to it are signed.
#[derive(Debug, Clone)]
pub struct DuoApi {
    /// `api-XXXXXXXX.duosecurity.com`, lower-case; with `:port` only for a loopback test
    /// stand-in. Signed as written here.
    pub host: String,
    /// `https`, or `http` for a loopback stand-in (`danger_plain_http`).
    pub scheme: &'static str,
    /// The integration key (Duo's "client ID"): the Basic-auth user of every request.
    pub client_id: String,
    /// The secret key (Duo's "client secret"): the HMAC key requests are signed with.
    pub client_secret: Secret<String>,
    /// How long one request to Duo may take.
    pub timeout: Duration,
}

/// An `authenticator_duo` stage: enrols a Duo Mobile device (or links an account Duo already
/// knows) through the Auth API.
#[derive(Debug, Clone)]
pub struct DuoStageConfig {
    /// What users see for this kind of authenticator ("Duo").
    pub friendly_name: String,
    /// The flow (by slug) where users add or change this factor.
    pub configure_flow: Option<String>,
    /// The API and its credentials.
    pub api: DuoApi,
}

/// Whether `host` (no port) is a loopback address: `localhost`, `127.0.0.0/8` or `::1`.
fn loopback(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// `api_hostname`: a host name with an optional port, nothing else (no scheme, path or
/// credentials), lower-cased. Returns it, the host part alone, and whether a port was given.
fn api_hostname(path: &str, raw: &str) -> Checked<(String, String, bool)> {
    let v = raw.trim().to_ascii_lowercase();
    let bad = |why: &str| Problem::new(path, format!("`{raw}` {why}"));
    if v.is_empty() {
        return Err(bad(
            "is empty: set the API hostname from the Duo Admin Panel",
        ));
    }
    if v.contains("://") || v.contains('/') || v.contains('@') || v.contains('?') {
        return Err(bad(
            "is not a host name: give the API hostname alone, like api-1234abcd.duosecurity.com",
        ));
    }
    let url = url::Url::parse(&format!("https://{v}/"))
        .map_err(|e| bad(&format!("is not a host name ({e})")))?;
    let host = url.host_str().unwrap_or_default().to_string();
    Ok((v, host, url.port().is_some()))
}

pub(super) fn duo_stage(name: &str, raw: &RawDuoStage) -> Checked<DuoStageConfig> {
    let p = |k: &str| format!("stages.{name}.{k}");
    let (host, bare, port) = api_hostname(&p("api_hostname"), &raw.api_hostname)?;
    let plain = raw.danger_plain_http.unwrap_or(false);
    // # Security
    // Requests are signed but not encrypted by the signature: over plain HTTP anyone on the
    // path would read the passcodes and could answer for Duo. Only a stand-in on this machine
    // (the tests') may be reached that way.
    if plain && !loopback(&bare) {
        return Err(Problem::new(
            p("danger_plain_http"),
            format!("only a loopback api_hostname (127.0.0.1, ::1, localhost) may be reached over plain HTTP, not `{bare}`"),
        ));
    }
    if !plain && port {
        return Err(Problem::new(
            p("api_hostname"),
            "Duo's API is reached on the HTTPS port: leave the port out",
        ));
    }
    if raw.client_id.trim().is_empty() {
        return Err(Problem::new(
            p("client_id"),
            "is empty: set the integration key from the Duo Admin Panel",
        ));
    }
    let Some(secret) = raw.client_secret.as_ref().filter(|s| !s.trim().is_empty()) else {
        return Err(Problem::new(
            p("client_secret"),
            format!(
                "is missing: set the secret key, e.g. in PORTCULLIS_STAGES__{}__CLIENT_SECRET",
                name.to_ascii_uppercase().replace('-', "_")
            ),
        ));
    };
    let timeout = duration_or(
        &p("timeout"),
        &raw.timeout,
        Duration::from_secs(1),
        Duration::from_secs(10),
    )?;
    Ok(DuoStageConfig {
        friendly_name: raw.friendly_name.clone().unwrap_or_else(|| "Duo".into()),
        configure_flow: raw.configure_flow.clone(),
        api: DuoApi {
            host,
            scheme: if plain { "http" } else { "https" },
            client_id: raw.client_id.trim().to_string(),
            client_secret: Secret::new(secret.clone()),
            timeout,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(host: &str, plain: Option<bool>) -> RawDuoStage {
        RawDuoStage {
            api_hostname: host.into(),
            client_id: "DIWJ8X6AEYOR5OMC6TQ1".into(),
            client_secret: Some("Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep".into()),
            friendly_name: None,
            configure_flow: None,
            timeout: None,
            danger_plain_http: plain,
        }
    }

    #[test]
    fn plain_http_is_refused_unless_the_stand_in_is_on_loopback() {
        let cases = [
            ("api-1234abcd.duosecurity.com", None, Some("https")),
            ("API-1234ABCD.duosecurity.com", None, Some("https")),
            ("127.0.0.1:8443", Some(true), Some("http")),
            ("[::1]:8443", Some(true), Some("http")),
            ("localhost:9", Some(true), Some("http")),
            ("127.9.9.9:80", Some(true), Some("http")),
            ("api-1234abcd.duosecurity.com", Some(true), None),
            ("10.0.0.1:80", Some(true), None),
            ("127.0.0.1.evil.test", Some(true), None),
            ("localhost.evil.test:80", Some(true), None),
            ("https://api-1.duosecurity.com", None, None),
            ("api-1.duosecurity.com/auth", None, None),
            ("user@api-1.duosecurity.com", None, None),
            ("api-1.duosecurity.com:8443", None, None),
            ("", None, None),
        ];
        for (host, plain, want) in cases {
            let got = duo_stage("duo", &raw(host, plain)).map(|c| c.api.scheme);
            let shown = got.as_ref().map_err(|p| p.reason.clone());
            assert_eq!(
                got.as_ref().ok().copied(),
                want,
                "{host} {plain:?}: {shown:?}"
            );
        }
        let c = duo_stage("duo", &raw("API-1234ABCD.duosecurity.com", None))
            .unwrap_or_else(|p| panic!("{}", p.reason));
        assert_eq!(c.api.host, "api-1234abcd.duosecurity.com");
    }

    #[test]
    fn a_missing_secret_names_the_variable_and_a_printed_stage_hides_it() {
        let mut r = raw("api-1.duosecurity.com", None);
        r.client_secret = None;
        let Err(e) = duo_stage("mfa-duo", &r) else {
            panic!("a stage without a secret is refused")
        };
        assert!(
            e.reason
                .contains("PORTCULLIS_STAGES__MFA_DUO__CLIENT_SECRET"),
            "{}",
            e.reason
        );
        let c = duo_stage("duo", &raw("api-1.duosecurity.com", None))
            .unwrap_or_else(|p| panic!("{}", p.reason));
        assert!(!format!("{c:?}").contains("Zh5eGm"));
    }

    #[test]
    fn the_secret_key_can_come_from_the_environment_and_is_never_printed() {
        let path = std::path::Path::new("config/portcullis.toml");
        let text = std::fs::read_to_string(path).expect("the example config")
            + "\n[stages.mfa-duo]\nkind = \"authenticator_duo\"\napi_hostname = \"api-1234abcd.duosecurity.com\"\nclient_id = \"DIWJ8X6AEYOR5OMC6TQ1\"\n";
        let env = [(
            "PORTCULLIS_STAGES__MFA_DUO__CLIENT_SECRET".to_string(),
            "env-duo-secret-77f1".to_string(),
        )];
        let c = super::super::Config::from_toml(&text, path, env.into_iter())
            .unwrap_or_else(|e| panic!("{e}"));
        let Some(super::super::StageConfig::AuthenticatorDuo(d)) = c.stages.get("mfa-duo") else {
            panic!("the Duo stage is loaded");
        };
        assert_eq!(d.api.client_secret.expose(), "env-duo-secret-77f1");
        assert_eq!(d.friendly_name, "Duo");
        assert!(!format!("{c:?}").contains("env-duo-secret-77f1"));
        let e = super::super::Config::from_toml(&text, path, std::iter::empty())
            .expect_err("no secret anywhere");
        assert!(
            e.to_string()
                .contains("PORTCULLIS_STAGES__MFA_DUO__CLIENT_SECRET"),
            "{e}"
        );
    }
}
