//! Asking Duo whether it is the user: a push approved in Duo Mobile (sent asynchronously, the
//! page's "I approved it — continue" asks `auth_status`) or a passcode checked at once. One
//! machine used by the Duo setup stage (to link an account Duo already knows) and by
//! validation (a Duo device). No script: every check is a button the user presses.
//!
//! # Security
//! The transaction id lives in the execution, never in the page: a user can only continue on
//! a push this gateway sent, for this device's Duo user, and a verdict is used once (the stage
//! passes and the state is gone). Duo being down or limiting the rate leaves the state as it
//! was, so the user can press the same button again.

use super::{Action, Challenge, Field, FlowError, Input};
use crate::config::DuoApi;
use crate::http_client::HttpClient;
use crate::notify::duo::{DuoClient, DuoError, DuoUser, Verdict};
use crate::secret::SecretString;
use serde::{Deserialize, Serialize};

/// The button that sends a push.
pub(crate) const PUSH: &str = "duo_push";
/// The button that asks Duo whether the push was approved.
pub(crate) const CHECK: &str = "duo_check";
/// The field a passcode is typed in.
pub(crate) const PASSCODE: &str = "passcode";

/// What the user sees when Duo is down or limiting the rate.
pub(crate) const UNAVAILABLE: &str =
    "Duo is not answering right now. Wait a moment, then try again.";
/// What the user sees after the last push this sign-in may send.
pub(crate) const PUSH_LIMIT: &str =
    "No more pushes can be sent for this sign-in. Type a passcode from Duo Mobile instead.";
/// What the user sees when Duo refused the gateway (its credentials): the operator must act.
pub(crate) const MISCONFIGURED: &str =
    "Duo could not be asked. Try again later or contact your administrator.";

/// What a Duo check waits for.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DuoAsk {
    /// Whom Duo is asked about.
    pub(crate) user: DuoUser,
    /// The push under way, if one was sent.
    txid: Option<String>,
    /// Refused passcodes and pushes so far.
    attempts: u32,
    /// Pushes Duo sent so far.
    #[serde(default)]
    pushes: u32,
}

/// How Duo said yes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// A push approved in Duo Mobile: a second channel (RFC 8176 `mca`).
    Push,
    /// A passcode (Duo Mobile's HOTP/TOTP, a token, or one Duo texted: RFC 8176 `otp`).
    Passcode,
}

impl Method {
    /// The RFC 8176 `amr` values it earns.
    pub(crate) fn amr(self) -> &'static [&'static str] {
        match self {
            Method::Push => &["mca"],
            Method::Passcode => &["otp"],
        }
    }
}

/// Where an answer left the check.
#[derive(Debug)]
pub(crate) enum Asked {
    /// Duo said yes.
    Approved(Method),
    /// Still waiting, with these errors (and infos) to show.
    Stay(DuoAsk, Vec<String>),
    /// Too many refusals: the execution ends with this message.
    Cancel(String),
}

/// The moment and means a check runs with.
pub(crate) struct DuoCx<'a> {
    pub(crate) api: &'a DuoApi,
    pub(crate) http: &'a dyn HttpClient,
    pub(crate) now: i64,
    /// The user's address, sent to Duo when it is an IP address (Duo's policies use it).
    pub(crate) client: &'a str,
    /// Refusals allowed before the execution ends; 0 = no limit (Duo's own lockout applies).
    pub(crate) max_attempts: u32,
    /// Pushes allowed; 0 = no limit.
    pub(crate) max_pushes: u32,
}

impl DuoCx<'_> {
    fn client(&self) -> DuoClient<'_> {
        DuoClient::new(self.api, self.http, self.now)
    }

    fn ip(&self) -> Option<&str> {
        self.client
            .parse::<std::net::IpAddr>()
            .is_ok()
            .then_some(self.client)
    }
}

/// The user's message for a failed call, logged once here for the operator.
pub(crate) fn failed(e: &DuoError, stage: &str) -> String {
    if e.retryable() {
        tracing::warn!(stage, error = %e, "Duo unavailable");
        UNAVAILABLE.into()
    } else {
        tracing::error!(stage, error = %e, "Duo refused the gateway's request");
        MISCONFIGURED.into()
    }
}

impl DuoAsk {
    /// A check of `user`, nothing sent yet.
    pub(crate) fn new(user: DuoUser) -> Self {
        Self {
            user,
            txid: None,
            attempts: 0,
            pushes: 0,
        }
    }

    /// As [`DuoAsk::new`], with pushes and refusals already counted (switching devices
    /// keeps them).
    pub(crate) fn resumed(user: DuoUser, pushes: u32, attempts: u32) -> Self {
        Self {
            attempts,
            pushes,
            ..Self::new(user)
        }
    }

    /// Refused passcodes and pushes so far.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Pushes sent so far.
    pub(crate) fn pushes(&self) -> u32 {
        self.pushes
    }

    /// Whether another push may go out.
    ///
    /// # Security
    /// Against push fatigue: a sign-in cannot flood the phone with prompts until one is
    /// approved by mistake.
    fn may_push(&self, max_pushes: u32) -> bool {
        max_pushes == 0 || self.pushes < max_pushes
    }

    /// The answer for a pretend device (an unknown or ineligible account): the same pages and
    /// messages, Duo never asked, never approved.
    pub(crate) fn pretend(mut self, max_attempts: u32, max_pushes: u32, input: &Input) -> Asked {
        let action = input.get("action").map(String::as_str);
        let typed = input.get(PASSCODE).is_some_and(|p| !p.trim().is_empty());
        match (action, typed) {
            (Some(PUSH), _) if !self.may_push(max_pushes) => {
                Asked::Stay(self, vec![PUSH_LIMIT.into()])
            }
            (Some(PUSH), _) => {
                self.txid = Some(crate::secret::random_token(16));
                self.pushes += 1;
                Asked::Stay(self, Vec::new())
            }
            (Some(CHECK), _) if self.txid.is_some() => Asked::Stay(
                self,
                vec!["Not approved yet: approve the push in Duo Mobile, then continue.".into()],
            ),
            (None, true) => self.refused(max_attempts, "That passcode was not accepted.".into()),
            _ => Asked::Stay(self, Vec::new()),
        }
    }

    /// The page: a passcode field, and "Send a push" or, once one is out, "I approved it —
    /// continue" and "Send another push".
    pub(crate) fn challenge(&self, component: &str, name: &str) -> Challenge {
        let field = Field::new(PASSCODE, "text", "Passcode")
            .autocomplete("one-time-code")
            .optional();
        let mut c = Challenge::new(component, vec![field]).titled(format!("Confirm with {name}"));
        let push = |name: &str, label: &str| Action {
            name: name.into(),
            label: label.into(),
        };
        match &self.txid {
            None => {
                c.info.push(
                    "Send a push to Duo Mobile and approve it, or type a passcode from Duo Mobile."
                        .into(),
                );
                c.actions.push(push(PUSH, "Send a push to my phone"));
            }
            Some(_) => {
                c.info.push(
                    "A push was sent to your phone. Approve it in Duo Mobile, then continue."
                        .into(),
                );
                c.actions.push(push(CHECK, "I approved it — continue"));
                c.actions.push(push(PUSH, "Send another push"));
            }
        }
        c
    }

    /// Judges an answer: a push sent, a push's verdict asked, or a passcode checked.
    ///
    /// # Errors
    /// None today; kept fallible for the callers' `?`.
    pub(crate) async fn answer(
        mut self,
        cx: &DuoCx<'_>,
        stage: &str,
        input: &Input,
    ) -> Result<Asked, FlowError> {
        let action = input.get("action").map(String::as_str);
        let passcode = input
            .get(PASSCODE)
            .map(|p| p.trim())
            .filter(|p| !p.is_empty());
        match (action, passcode) {
            (Some(PUSH), _) if !self.may_push(cx.max_pushes) => {
                Ok(Asked::Stay(self, vec![PUSH_LIMIT.into()]))
            }
            (Some(PUSH), _) => match cx.client().push(&self.user, cx.ip()).await {
                Ok(txid) => {
                    self.txid = Some(txid);
                    self.pushes += 1;
                    Ok(Asked::Stay(self, Vec::new()))
                }
                Err(e) => Ok(Asked::Stay(self, vec![failed(&e, stage)])),
            },
            (Some(CHECK), _) => {
                let Some(txid) = self.txid.clone() else {
                    return Ok(Asked::Stay(self, Vec::new()));
                };
                match cx.client().auth_status(&txid).await {
                    Ok(Verdict::Allow) => Ok(Asked::Approved(Method::Push)),
                    Ok(Verdict::Waiting) => Ok(Asked::Stay(
                        self,
                        vec![
                            "Not approved yet: approve the push in Duo Mobile, then continue."
                                .into(),
                        ],
                    )),
                    Ok(Verdict::Deny { status, message }) => {
                        self.txid = None;
                        if status == "timeout" {
                            let e = "The push timed out. Send another one, or type a passcode.";
                            return Ok(Asked::Stay(self, vec![e.into()]));
                        }
                        tracing::info!(stage, status = %status, "Duo push refused");
                        Ok(self.refused(cx.max_attempts, refusal("The push was denied", &message)))
                    }
                    Err(e) => Ok(Asked::Stay(self, vec![failed(&e, stage)])),
                }
            }
            (None, Some(code)) => {
                let code = SecretString::new(code);
                match cx.client().passcode(&self.user, &code, cx.ip()).await {
                    Ok(Verdict::Allow) => Ok(Asked::Approved(Method::Passcode)),
                    Ok(Verdict::Deny { status, .. }) => {
                        tracing::info!(stage, status = %status, "Duo passcode refused");
                        Ok(self.refused(cx.max_attempts, "That passcode was not accepted.".into()))
                    }
                    Ok(Verdict::Waiting) => Ok(Asked::Stay(self, Vec::new())),
                    Err(e) => Ok(Asked::Stay(self, vec![failed(&e, stage)])),
                }
            }
            _ => Ok(Asked::Stay(self, Vec::new())),
        }
    }

    /// One more refusal: stay with `error`, or end at the limit.
    fn refused(mut self, max_attempts: u32, error: String) -> Asked {
        self.attempts += 1;
        if max_attempts > 0 && self.attempts >= max_attempts {
            return Asked::Cancel("Too many refused attempts. Start again.".into());
        }
        Asked::Stay(self, vec![error])
    }
}

fn refusal(what: &str, message: &str) -> String {
    if message.is_empty() {
        format!("{what}.")
    } else {
        format!("{what}: {message}")
    }
}
