//! `[webauthn]` (the relying party: its id and the origins its pages are served from) and the
//! options of `authenticator_webauthn` stages, as authentik names them.

use super::error::Problem;
use super::UserVerification;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

type Checked<T> = Result<T, Problem>;

/// `[webauthn]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebauthn {
    pub rp_id: Option<String>,
    pub rp_name: Option<String>,
    #[serde(default)]
    pub origins: Vec<String>,
    pub timeout: Option<String>,
}

/// `[stages.NAME] kind = "authenticator_webauthn"` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebauthnStage {
    pub user_verification: Option<String>,
    pub resident_key_requirement: Option<String>,
    pub authenticator_attachment: Option<String>,
    #[serde(default)]
    pub device_type_restrictions: Vec<String>,
    pub friendly_name: Option<String>,
    pub configure_flow: Option<String>,
}

/// The relying party every WebAuthn ceremony names: credentials are bound to `rp_id`, and a
/// response is accepted only from one of `origins`.
///
/// # Security
/// Both come from config only, never from a request's `Host` or `Origin`: a response signed
/// for another site (a phishing origin) then fails the origin check in the ceremony.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingPartyConfig {
    /// `rp_id`: a domain (`example.com`) that each origin's host equals or ends in.
    pub id: String,
    /// `rp_name`: shown by some authenticators; the site title unless set.
    pub name: String,
    /// `origins`: `scheme://host[:port]` of every page that runs a ceremony.
    pub origins: Vec<url::Url>,
    /// `timeout`: how long the browser waits for the authenticator (default 5 minutes).
    pub timeout: Duration,
}

/// `resident_key_requirement`: whether the credential is discoverable (a passkey that can
/// sign in without a username).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResidentKey {
    /// Not asked for.
    Discouraged,
    /// Asked for where the authenticator can.
    #[default]
    Preferred,
    /// Required: authenticators that cannot store one refuse.
    Required,
}

/// `authenticator_attachment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    /// Built into the device (Touch ID, Windows Hello, a phone's screen lock).
    Platform,
    /// Removable (a security key) or another device (a phone over hybrid).
    CrossPlatform,
}

/// An `authenticator_webauthn` stage.
#[derive(Debug, Clone)]
pub struct WebauthnStageConfig {
    /// `[webauthn]`.
    pub rp: Arc<RelyingPartyConfig>,
    /// `user_verification` (default `preferred`).
    pub user_verification: UserVerification,
    /// `resident_key_requirement` (default `preferred`).
    pub resident_key_requirement: ResidentKey,
    /// `authenticator_attachment` (default: no preference).
    pub authenticator_attachment: Option<Attachment>,
    /// `device_type_restrictions`: AAGUIDs allowed to enrol; empty allows every device.
    pub device_type_restrictions: Vec<[u8; 16]>,
    /// `friendly_name`: the device's name in choices and `user devices` (default "Passkey").
    pub friendly_name: String,
    /// The flow (by slug) where users add another passkey.
    pub configure_flow: Option<String>,
}

/// `[webauthn]`, when written.
pub(super) fn relying_party(
    raw: Option<RawWebauthn>,
    site_title: &str,
) -> Checked<Option<Arc<RelyingPartyConfig>>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let Some(id) = raw.rp_id.map(|s| s.trim().to_ascii_lowercase()) else {
        return Err(Problem::new(
            "webauthn.rp_id",
            "needs the domain passkeys are bound to, e.g. \"example.com\"",
        ));
    };
    let dns = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    if !dns(&id) || id.parse::<std::net::IpAddr>().is_ok() {
        return Err(Problem::new(
            "webauthn.rp_id",
            format!("`{id}` is not a domain name (an IP address cannot be a relying party id)"),
        ));
    }
    if raw.origins.is_empty() {
        return Err(Problem::new(
            "webauthn.origins",
            "needs at least one origin, e.g. \"https://auth.example.com\"",
        ));
    }
    let mut origins = Vec::with_capacity(raw.origins.len());
    for (i, o) in raw.origins.iter().enumerate() {
        let key = format!("webauthn.origins[{i}]");
        let url = url::Url::parse(o).map_err(|_| {
            Problem::new(
                &key,
                format!("`{o}` is not a URL like \"https://auth.example.com\""),
            )
        })?;
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let plain = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
        if !plain || url.username() != "" || url.password().is_some() {
            return Err(Problem::new(
                &key,
                format!("`{o}` must be an origin only: scheme, host and port, no path"),
            ));
        }
        // Browsers run WebAuthn only in a secure context: HTTPS, or plain HTTP on localhost.
        let secure = url.scheme() == "https" || (url.scheme() == "http" && host == "localhost");
        if !secure {
            return Err(Problem::new(
                &key,
                format!("`{o}`: browsers offer passkeys only over https (or http://localhost)"),
            ));
        }
        if host != id && !host.ends_with(&format!(".{id}")) {
            return Err(Problem::new(
                &key,
                format!("the host `{host}` is not `{id}` (rp_id) or a name under it"),
            ));
        }
        origins.push(url);
    }
    let timeout = match raw.timeout {
        Some(t) => super::duration::parse(&t)
            .map_err(|e| Problem::new("webauthn.timeout", e))
            .and_then(|d| {
                if d < Duration::from_secs(10) || d > Duration::from_secs(3600) {
                    Err(Problem::new(
                        "webauthn.timeout",
                        "must be between 10s and 1h",
                    ))
                } else {
                    Ok(d)
                }
            })?,
        None => Duration::from_secs(300),
    };
    Ok(Some(Arc::new(RelyingPartyConfig {
        id,
        name: raw.rp_name.unwrap_or_else(|| site_title.to_string()),
        origins,
        timeout,
    })))
}

/// The relying party a stage needs, or the problem naming `key`.
pub(super) fn needed(
    rp: Option<&Arc<RelyingPartyConfig>>,
    key: &str,
) -> Checked<Arc<RelyingPartyConfig>> {
    rp.cloned().ok_or_else(|| {
        Problem::new(
            key,
            "passkeys need a [webauthn] section with rp_id and origins",
        )
    })
}

/// `user_verification` as written at `key`.
pub(super) fn user_verification(key: &str, v: Option<&str>) -> Checked<UserVerification> {
    Ok(match v.unwrap_or("preferred") {
        "required" => UserVerification::Required,
        "preferred" => UserVerification::Preferred,
        "discouraged" => UserVerification::Discouraged,
        other => {
            return Err(Problem::new(
                key,
                format!("`{other}` is not one of \"required\", \"preferred\", \"discouraged\""),
            ))
        }
    })
}

/// An `authenticator_webauthn` stage.
pub(super) fn stage(
    name: &str,
    raw: &RawWebauthnStage,
    rp: Option<&Arc<RelyingPartyConfig>>,
) -> Checked<WebauthnStageConfig> {
    let key = |k: &str| format!("stages.{name}.{k}");
    let rp = needed(rp, &format!("stages.{name}"))?;
    let user_verification =
        user_verification(&key("user_verification"), raw.user_verification.as_deref())?;
    let resident_key_requirement = match raw
        .resident_key_requirement
        .as_deref()
        .unwrap_or("preferred")
    {
        "discouraged" => ResidentKey::Discouraged,
        "preferred" => ResidentKey::Preferred,
        "required" => ResidentKey::Required,
        other => {
            return Err(Problem::new(
                key("resident_key_requirement"),
                format!("`{other}` is not one of \"discouraged\", \"preferred\", \"required\""),
            ))
        }
    };
    let authenticator_attachment = match raw.authenticator_attachment.as_deref() {
        None => None,
        Some("platform") => Some(Attachment::Platform),
        Some("cross-platform") => Some(Attachment::CrossPlatform),
        Some(other) => {
            return Err(Problem::new(
                key("authenticator_attachment"),
                format!("`{other}` is not one of \"platform\", \"cross-platform\""),
            ))
        }
    };
    let device_type_restrictions = raw
        .device_type_restrictions
        .iter()
        .enumerate()
        .map(|(i, a)| {
            aaguid(a).ok_or_else(|| {
                Problem::new(
                    format!("stages.{name}.device_type_restrictions[{i}]"),
                    format!("`{a}` is not an AAGUID like \"cb69481e-8ff7-4039-93ec-0a2729a154a8\""),
                )
            })
        })
        .collect::<Checked<Vec<_>>>()?;
    let friendly_name = raw
        .friendly_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "Passkey".into());
    Ok(WebauthnStageConfig {
        rp,
        user_verification,
        resident_key_requirement,
        authenticator_attachment,
        device_type_restrictions,
        friendly_name,
        configure_flow: raw.configure_flow.clone(),
    })
}

/// An AAGUID written as a UUID (`8-4-4-4-12` hex digits, any case).
pub fn aaguid(s: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = s.trim().split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lens != [8, 4, 4, 4, 12] {
        return None;
    }
    let hex: String = groups.concat();
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(id: &str, origins: &[&str]) -> Checked<Option<Arc<RelyingPartyConfig>>> {
        relying_party(
            Some(RawWebauthn {
                rp_id: Some(id.into()),
                rp_name: None,
                origins: origins.iter().map(|s| s.to_string()).collect(),
                timeout: None,
            }),
            "Site",
        )
    }

    #[test]
    fn relying_party_origins_must_be_secure_and_under_the_rp_id() {
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            ("example.com", &["https://auth.example.com"], None),
            ("example.com", &["https://example.com:8443"], None),
            ("localhost", &["http://localhost:9000"], None),
            (
                "example.com",
                &["http://auth.example.com"],
                Some("only over https"),
            ),
            (
                "example.com",
                &["https://evil.com"],
                Some("not `example.com`"),
            ),
            (
                "example.com",
                &["https://notexample.com"],
                Some("not `example.com`"),
            ),
            (
                "example.com",
                &["https://auth.example.com/login"],
                Some("origin only"),
            ),
            (
                "example.com",
                &["https://u:p@auth.example.com"],
                Some("origin only"),
            ),
            ("example.com", &["auth.example.com"], Some("not a URL")),
            ("127.0.0.1", &["https://127.0.0.1"], Some("not a domain")),
            (
                "exa mple.com",
                &["https://example.com"],
                Some("not a domain"),
            ),
            ("example.com", &[], Some("at least one origin")),
        ];
        for (id, origins, want) in cases {
            match (rp(id, origins), want) {
                (Ok(Some(rp)), None) => assert_eq!(rp.name, "Site"),
                (Err(p), Some(w)) => {
                    let said = format!("{}: {}", p.path, p.reason);
                    assert!(said.contains(w), "{id} {origins:?}: {said}");
                }
                (Ok(got), want) => panic!("{id} {origins:?}: got {got:?}, want {want:?}"),
                (Err(p), None) => panic!("{id} {origins:?}: refused: {}", p.reason),
            }
        }
    }

    #[test]
    fn aaguids_parse_as_uuids_only() {
        assert_eq!(
            aaguid("01020304-0506-0708-0102-030405060708"),
            Some([1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8])
        );
        assert!(aaguid("CB69481E-8FF7-4039-93EC-0A2729A154A8").is_some());
        for bad in [
            "",
            "0102030405060708",
            "01020304-0506-0708-0102-03040506070",
            "0102030g-0506-0708-0102-030405060708",
        ] {
            assert_eq!(aaguid(bad), None, "{bad}");
        }
    }
}
