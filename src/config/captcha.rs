//! Validation of the `captcha` stage (authentik's option names): which provider, its keys, where
//! its script and verify endpoint are, and the score a token must have.

use super::error::Problem;
use crate::secret::Secret;
use serde::Deserialize;

type Checked<T> = Result<T, Problem>;

/// `kind = "captcha"` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCaptchaStage {
    /// `turnstile`, `hcaptcha`, `recaptcha_v2` or `recaptcha_v3` (default).
    pub provider: Option<String>,
    /// The site key, shown in the page.
    pub public_key: String,
    /// The secret key; usually from `PORTCULLIS_STAGES__<NAME>__PRIVATE_KEY`.
    pub private_key: Option<String>,
    pub js_url: Option<String>,
    pub api_url: Option<String>,
    pub interactive: Option<bool>,
    pub score_min_threshold: Option<f64>,
    pub score_max_threshold: Option<f64>,
    pub error_on_invalid_score: Option<bool>,
    /// Seconds, or a duration string.
    pub timeout: Option<toml::Value>,
    /// Reach `api_url` over plain HTTP: only for a loopback test stand-in.
    pub danger_plain_http: Option<bool>,
}

/// Who solves and checks the captcha.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptchaProvider {
    /// Cloudflare Turnstile.
    Turnstile,
    /// hCaptcha.
    Hcaptcha,
    /// Google reCAPTCHA v2 (the checkbox).
    RecaptchaV2,
    /// Google reCAPTCHA v3 (invisible, scored).
    RecaptchaV3,
}

impl CaptchaProvider {
    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptchaProvider::Turnstile => "turnstile",
            CaptchaProvider::Hcaptcha => "hcaptcha",
            CaptchaProvider::RecaptchaV2 => "recaptcha_v2",
            CaptchaProvider::RecaptchaV3 => "recaptcha_v3",
        }
    }

    /// The form field the provider's widget puts its token in.
    pub fn response_field(self) -> &'static str {
        match self {
            CaptchaProvider::Turnstile => "cf-turnstile-response",
            CaptchaProvider::Hcaptcha => "h-captcha-response",
            CaptchaProvider::RecaptchaV2 | CaptchaProvider::RecaptchaV3 => "g-recaptcha-response",
        }
    }

    /// The class of the element the provider's script turns into a widget.
    pub fn widget_class(self) -> &'static str {
        match self {
            CaptchaProvider::Turnstile => "cf-turnstile",
            CaptchaProvider::Hcaptcha => "h-captcha",
            CaptchaProvider::RecaptchaV2 | CaptchaProvider::RecaptchaV3 => "g-recaptcha",
        }
    }

    fn defaults(self) -> (&'static str, &'static str) {
        match self {
            CaptchaProvider::Turnstile => (
                "https://challenges.cloudflare.com/turnstile/v0/api.js",
                "https://challenges.cloudflare.com/turnstile/v0/siteverify",
            ),
            CaptchaProvider::Hcaptcha => (
                "https://js.hcaptcha.com/1/api.js",
                "https://api.hcaptcha.com/siteverify",
            ),
            CaptchaProvider::RecaptchaV2 | CaptchaProvider::RecaptchaV3 => (
                "https://www.recaptcha.net/recaptcha/api.js",
                "https://www.recaptcha.net/recaptcha/api/siteverify",
            ),
        }
    }

    /// Origins the provider's script loads more script or frames from, besides its own.
    fn companions(self) -> &'static [&'static str] {
        match self {
            CaptchaProvider::Turnstile => &[],
            CaptchaProvider::Hcaptcha => &["https://hcaptcha.com", "https://*.hcaptcha.com"],
            CaptchaProvider::RecaptchaV2 | CaptchaProvider::RecaptchaV3 => {
                &["https://www.gstatic.com", "https://recaptcha.google.com"]
            }
        }
    }
}

/// A `captcha` stage.
#[derive(Debug, Clone)]
pub struct CaptchaStageConfig {
    /// Who solves and checks it.
    pub provider: CaptchaProvider,
    /// The site key the widget is drawn with.
    pub public_key: String,
    /// The secret key the verify call carries.
    pub private_key: Secret<String>,
    /// The provider's script (https).
    pub js_url: url::Url,
    /// The provider's verify endpoint (https, or http on loopback with `danger_plain_http`).
    pub api_url: url::Url,
    /// Whether the user solves something (a widget shown); `false` for reCAPTCHA v3, which
    /// scores silently.
    pub interactive: bool,
    /// A score below this is refused (or only recorded, see `error_on_invalid_score`).
    pub score_min_threshold: f64,
    /// A score above this is refused (or only recorded).
    pub score_max_threshold: f64,
    /// Refuse a score outside the thresholds; when `false` the flow goes on and the score is
    /// kept in `flow.prompt_data.captcha_score` for policies.
    pub error_on_invalid_score: bool,
    /// How long the verify call may take.
    pub timeout: std::time::Duration,
    /// The CSP sources the page needs in `script-src` and `frame-src`: the script's origin and
    /// the provider's companions. Built here once.
    pub csp_sources: Vec<String>,
}

fn loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn https_url(path: &str, raw: &str, plain_loopback: bool) -> Checked<url::Url> {
    let url = url::Url::parse(raw.trim())
        .map_err(|e| Problem::new(path, format!("`{raw}` is not a URL ({e})")))?;
    let host = url.host_str().unwrap_or_default().to_string();
    let ok = match url.scheme() {
        "https" => !host.is_empty(),
        // # Security
        // The verify call carries the secret key and its answer decides the step: over plain
        // HTTP anyone on the path could read the key or answer "success". Only a stand-in on
        // this machine (the tests') may be reached that way.
        "http" => plain_loopback && loopback(&host),
        _ => false,
    };
    if !ok || !url.username().is_empty() || url.password().is_some() {
        return Err(Problem::new(
            path,
            if plain_loopback {
                format!("`{raw}`: only https, or http to a loopback address (127.0.0.1, ::1, localhost)")
            } else {
                format!("`{raw}` must be an https:// URL")
            },
        ));
    }
    Ok(url)
}

pub(super) fn captcha_stage(name: &str, raw: &RawCaptchaStage) -> Checked<CaptchaStageConfig> {
    let p = |k: &str| format!("stages.{name}.{k}");
    let provider = match raw.provider.as_deref().unwrap_or("recaptcha_v3") {
        "turnstile" => CaptchaProvider::Turnstile,
        "hcaptcha" => CaptchaProvider::Hcaptcha,
        "recaptcha_v2" => CaptchaProvider::RecaptchaV2,
        "recaptcha_v3" => CaptchaProvider::RecaptchaV3,
        other => {
            return Err(Problem::new(
                p("provider"),
                format!("`{other}` is not one of \"turnstile\", \"hcaptcha\", \"recaptcha_v2\", \"recaptcha_v3\""),
            ))
        }
    };
    if raw.public_key.trim().is_empty() {
        return Err(Problem::new(p("public_key"), "is empty: set the site key"));
    }
    let Some(secret) = raw.private_key.as_ref().filter(|s| !s.trim().is_empty()) else {
        return Err(Problem::new(
            p("private_key"),
            format!(
                "is missing: set the secret key, e.g. in PORTCULLIS_STAGES__{}__PRIVATE_KEY",
                name.to_ascii_uppercase().replace('-', "_")
            ),
        ));
    };
    let (js_default, api_default) = provider.defaults();
    let js_url = https_url(
        &p("js_url"),
        raw.js_url.as_deref().unwrap_or(js_default),
        false,
    )?;
    let api_url = https_url(
        &p("api_url"),
        raw.api_url.as_deref().unwrap_or(api_default),
        raw.danger_plain_http.unwrap_or(false),
    )?;
    let min = raw.score_min_threshold.unwrap_or(0.5);
    let max = raw.score_max_threshold.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&min) || !(0.0..=1.0).contains(&max) || min > max {
        return Err(Problem::new(
            p("score_min_threshold"),
            format!("the thresholds must lie within 0.0 to 1.0, the minimum not above the maximum (got {min} and {max})"),
        ));
    }
    let interactive = raw
        .interactive
        .unwrap_or(provider != CaptchaProvider::RecaptchaV3);
    let timeout = super::email::duration_or(
        &p("timeout"),
        &raw.timeout,
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(10),
    )?;
    let mut csp_sources = vec![js_url.origin().ascii_serialization()];
    csp_sources.extend(provider.companions().iter().map(|s| s.to_string()));
    Ok(CaptchaStageConfig {
        provider,
        public_key: raw.public_key.trim().to_string(),
        private_key: Secret::new(secret.clone()),
        js_url,
        api_url,
        interactive,
        score_min_threshold: min,
        score_max_threshold: max,
        error_on_invalid_score: raw.error_on_invalid_score.unwrap_or(true),
        timeout,
        csp_sources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(provider: &str) -> RawCaptchaStage {
        RawCaptchaStage {
            provider: Some(provider.into()),
            public_key: "site-key".into(),
            private_key: Some("secret-key-9a7e".into()),
            js_url: None,
            api_url: None,
            interactive: None,
            score_min_threshold: None,
            score_max_threshold: None,
            error_on_invalid_score: None,
            timeout: None,
            danger_plain_http: None,
        }
    }

    #[test]
    fn each_provider_gets_its_endpoints_field_and_csp_sources() {
        let table = [
            (
                "turnstile",
                "challenges.cloudflare.com",
                "cf-turnstile-response",
                true,
            ),
            ("hcaptcha", "api.hcaptcha.com", "h-captcha-response", true),
            (
                "recaptcha_v2",
                "www.recaptcha.net",
                "g-recaptcha-response",
                true,
            ),
            (
                "recaptcha_v3",
                "www.recaptcha.net",
                "g-recaptcha-response",
                false,
            ),
        ];
        for (provider, api_host, field, interactive) in table {
            let c = captcha_stage("c", &raw(provider)).unwrap_or_else(|e| panic!("{}", e.reason));
            assert_eq!(c.provider.as_str(), provider);
            assert_eq!(c.api_url.host_str(), Some(api_host), "{provider}");
            assert_eq!(c.provider.response_field(), field);
            assert_eq!(c.interactive, interactive, "{provider}");
            assert_eq!(c.csp_sources[0], c.js_url.origin().ascii_serialization());
            assert!(!format!("{c:?}").contains("secret-key-9a7e"));
        }
    }

    #[test]
    fn the_secret_key_can_come_from_the_environment_and_is_never_printed() {
        let path = std::path::Path::new("config/portcullis.toml");
        let text = std::fs::read_to_string(path).expect("the example config")
            + "\n[stages.bot-check]\nkind = \"captcha\"\nprovider = \"hcaptcha\"\npublic_key = \"site\"\n";
        let env = [(
            "PORTCULLIS_STAGES__BOT_CHECK__PRIVATE_KEY".to_string(),
            "env-captcha-secret-41c2".to_string(),
        )];
        let c = super::super::Config::from_toml(&text, path, env.into_iter())
            .unwrap_or_else(|e| panic!("{e}"));
        let Some(super::super::StageConfig::Captcha(k)) = c.stages.get("bot-check") else {
            panic!("the captcha stage is loaded");
        };
        assert_eq!(k.private_key.expose(), "env-captcha-secret-41c2");
        assert!(!format!("{c:?}").contains("env-captcha-secret-41c2"));
        let e = super::super::Config::from_toml(&text, path, std::iter::empty())
            .expect_err("no secret anywhere");
        assert!(
            e.to_string()
                .contains("PORTCULLIS_STAGES__BOT_CHECK__PRIVATE_KEY"),
            "{e}"
        );
    }

    #[test]
    fn bad_urls_keys_and_thresholds_are_refused_naming_the_key() {
        // (change, the key named)
        type Change = fn(&mut RawCaptchaStage);
        let cases: [(Change, &str); 9] = [
            (|r| r.provider = Some("recaptcha".into()), "provider"),
            (|r| r.public_key = " ".into(), "public_key"),
            (
                |r| r.private_key = None,
                "PORTCULLIS_STAGES__C__PRIVATE_KEY",
            ),
            (
                |r| r.js_url = Some("http://cdn.example/api.js".into()),
                "js_url",
            ),
            (
                |r| r.api_url = Some("http://verify.example/x".into()),
                "api_url",
            ),
            (
                |r| {
                    r.api_url = Some("http://10.0.0.1/verify".into());
                    r.danger_plain_http = Some(true);
                },
                "api_url",
            ),
            (
                |r| r.api_url = Some("https://u:p@verify.example/".into()),
                "api_url",
            ),
            (|r| r.score_min_threshold = Some(1.5), "score_min_threshold"),
            (
                |r| {
                    r.score_min_threshold = Some(0.9);
                    r.score_max_threshold = Some(0.2);
                },
                "score_min_threshold",
            ),
        ];
        for (change, named) in cases {
            let mut r = raw("turnstile");
            change(&mut r);
            let e = captcha_stage("c", &r).expect_err(named);
            assert!(
                e.path.contains(named) || e.reason.contains(named),
                "{named}: {} {}",
                e.path,
                e.reason
            );
        }
        let mut r = raw("turnstile");
        r.api_url = Some("http://127.0.0.1:9/verify".into());
        r.danger_plain_http = Some(true);
        assert!(captcha_stage("c", &r).is_ok(), "a loopback stand-in");
    }
}
