//! `captcha`: a captcha solved in the browser (Cloudflare Turnstile, hCaptcha, reCAPTCHA v2 or
//! v3), its token verified on the server with the provider through the [`HttpClient`] port.
//!
//! # Security
//! A token passes only when the provider says `success` for it, for this site's host name and
//! this flow's action (when the answer names them), with a score within the thresholds; and
//! only once: a token seen before is refused here whatever the provider says. The secret key
//! travels only to the configured verify endpoint and is never logged.
//!
//! [`HttpClient`]: crate::http_client::HttpClient

use crate::config::{CaptchaProvider, CaptchaStageConfig};
use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Stage, Transition};
use crate::flow::{CaptchaWidget, Challenge, Field, FlowError, Input, StageKind};
use crate::http_client::HttpRequest;
use crate::secret::SecretString;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// No token came with the answer.
pub(crate) const UNSOLVED: &str = "Solve the captcha first.";
/// The provider refused the token, or it was for another site, action, or used before.
pub(crate) const FAILED: &str = "The captcha check did not pass. Try again.";
/// The verify endpoint did not answer usefully.
pub(crate) const UNAVAILABLE: &str =
    "The captcha could not be checked right now. Wait a moment, then try again.";
/// The verify endpoint said to slow down.
pub(crate) const BUSY: &str = "Too many captcha checks right now. Wait a moment, then try again.";
/// Where a score kept for policies goes (`flow.prompt_data.captcha_score`).
pub(crate) const SCORE_KEY: &str = "captcha_score";
/// How long a used token is remembered (providers' tokens live 2 to 5 minutes).
const SEEN_FOR_SECS: i64 = 10 * 60;
/// The longest token taken (Turnstile's are up to 2048 characters).
const MAX_TOKEN: usize = 4096;

/// What a `captcha` stage waits for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum CaptchaState {
    /// A token from the widget.
    Token,
}

pub(crate) struct Captcha {
    pub(crate) cfg: CaptchaStageConfig,
}

/// The provider's verify answer (the fields the four providers share).
#[derive(Debug, Deserialize)]
struct Verdict {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default, rename = "error-codes")]
    error_codes: Vec<String>,
}

/// The action a token is bound to: the flow's slug in the characters every provider takes.
fn action_of(flow: &str) -> String {
    flow.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(32)
        .collect()
}

/// The host of `origin` (`scheme://host[:port]`), lower-case.
fn host_of(origin: &str) -> Option<String> {
    let url = url::Url::parse(origin).ok()?;
    Some(url.host_str()?.to_ascii_lowercase())
}

impl Captcha {
    /// Asks the provider about `token`; `Ok(score)` when it passes, `Err(message)` when not.
    async fn verify(&self, cx: &Cx<'_>, token: &SecretString) -> Result<Option<f64>, &'static str> {
        let request = HttpRequest::form(
            self.cfg.api_url.clone(),
            [
                ("secret", self.cfg.private_key.expose().as_str()),
                ("response", token.expose()),
                ("remoteip", cx.client),
            ],
        )
        .timeout(self.cfg.timeout);
        let log = |outcome: &str| {
            tracing::warn!(stage = cx.name, flow = %cx.exec.flow, client = %cx.client, outcome, "captcha not verified");
        };
        let reply = match cx.services.http.post(request).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(stage = cx.name, error = %e, "the captcha verify endpoint did not answer");
                return Err(UNAVAILABLE);
            }
        };
        if reply.status == http::StatusCode::TOO_MANY_REQUESTS {
            log("rate_limited");
            return Err(BUSY);
        }
        if !reply.status.is_success() {
            tracing::warn!(
                stage = cx.name,
                status = reply.status.as_u16(),
                "the captcha verify endpoint answered with an error"
            );
            return Err(UNAVAILABLE);
        }
        let Ok(v) = reply.json::<Verdict>() else {
            tracing::warn!(
                stage = cx.name,
                "the captcha verify endpoint's answer is not the JSON expected"
            );
            return Err(UNAVAILABLE);
        };
        if !v.success {
            tracing::info!(stage = cx.name, client = %cx.client, errors = ?v.error_codes, outcome = "refused", "captcha refused by the provider");
            return Err(FAILED);
        }
        let host = host_of(cx.at.origin);
        if let (Some(said), Some(host)) = (v.hostname.as_deref(), host.as_deref()) {
            if !said.eq_ignore_ascii_case(host) {
                log("other_hostname");
                return Err(FAILED);
            }
        }
        if let Some(said) = v.action.as_deref().filter(|a| !a.is_empty()) {
            if said != action_of(&cx.exec.flow) {
                log("other_action");
                return Err(FAILED);
            }
        }
        // A v3 answer always carries a score; one without (a v2 key pair on a v3 stage, a
        // stand-in) would skip the thresholds silently, so it does not pass.
        if self.cfg.provider == CaptchaProvider::RecaptchaV3 && v.score.is_none() {
            log("no_score");
            return Err(FAILED);
        }
        // Once only, whatever the provider says of a token seen before.
        let seen = format!("captcha:{}", crate::flow::otp::hash_token(token));
        let uses = cx
            .services
            .store
            .bump_counter(&seen, SEEN_FOR_SECS, cx.now)
            .map_err(|e| {
                tracing::warn!(stage = cx.name, error = %e, "could not record a captcha token");
                UNAVAILABLE
            })?;
        if uses > 1 {
            log("replayed");
            return Err(FAILED);
        }
        Ok(v.score)
    }
}

#[async_trait]
impl Stage for Captcha {
    fn kind(&self) -> StageKind {
        StageKind::Captcha
    }

    async fn enter(&self, _cx: &Cx<'_>) -> Result<Transition, FlowError> {
        Ok(Transition::stay(CaptchaState::Token))
    }

    /// The widget waits for a token: nothing to find again.
    fn fresh(&self, state: &StageState) -> bool {
        matches!(state, StageState::Captcha(CaptchaState::Token))
    }

    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError> {
        let StageState::Captcha(CaptchaState::Token) = state else {
            return Err(mismatch(cx));
        };
        let field = self.cfg.provider.response_field();
        let mut c = Challenge::new(
            self.kind().as_str(),
            vec![Field::new(field, "captcha", "Captcha")],
        )
        .titled("Confirm you are a person");
        c.captcha = Some(Box::new(CaptchaWidget {
            provider: self.cfg.provider.as_str(),
            site_key: self.cfg.public_key.clone(),
            js_url: self.cfg.js_url.to_string(),
            action: action_of(&cx.exec.flow),
            interactive: self.cfg.interactive,
            response_field: field,
            widget_class: self.cfg.provider.widget_class(),
            csp_sources: self.cfg.csp_sources.clone(),
        }));
        Ok(c)
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let StageState::Captcha(state) = state else {
            return Err(mismatch(cx));
        };
        let typed = input
            .get(self.cfg.provider.response_field())
            .map(|t| t.trim())
            .unwrap_or_default();
        if typed.is_empty() || typed.len() > MAX_TOKEN {
            return Ok(Transition::refuse(state, UNSOLVED));
        }
        let token = SecretString::new(typed);
        let score = match self.verify(cx, &token).await {
            Ok(score) => score,
            Err(message) => return Ok(Transition::refuse(state, message)),
        };
        let Some(score) = score else {
            return Ok(Transition::pass());
        };
        let within = (self.cfg.score_min_threshold..=self.cfg.score_max_threshold).contains(&score);
        if !within && self.cfg.error_on_invalid_score {
            tracing::info!(stage = cx.name, client = %cx.client, score, outcome = "score_out_of_range", "captcha score outside the thresholds");
            return Ok(Transition::refuse(state, FAILED));
        }
        Ok(Transition::pass().and(Effect::Remember(vec![(
            SCORE_KEY.to_string(),
            score.to_string(),
        )])))
    }
}
