//! `authenticator_duo`: enrols a Duo Mobile device through Duo's Auth API, or links an account
//! Duo already knows. `preauth` decides: `enroll` starts an enrolment (the activation code is
//! shown as a QR code the gateway draws itself, and as a link to Duo's activation page; the
//! device is stored only once `enroll_status` says `success`), `auth` asks the user to approve
//! a push or type a passcode before the account is linked.
//!
//! Why an inline SVG and not Duo's `activation_barcode`: that is an image on Duo's servers,
//! which the pages' CSP (`img-src 'self'`) refuses and which would tell Duo who opens the page;
//! the QR code of `activation_code` is the same picture, drawn here.

use crate::config::DuoStageConfig;
use crate::flow::duo::{self, Asked, DuoAsk, DuoCx};
use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Next, Stage, Transition};
use crate::flow::{Action, Challenge, FlowError, Input, Link, StageKind};
use crate::notify::duo::{DuoClient, DuoError, DuoUser, EnrollStatus, Enrollment, Preauth};
use crate::store::{Device, DeviceClass};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// How long an activation code works.
const ACTIVATION_SECS: u32 = 15 * 60;
/// The button that asks whether Duo Mobile was activated.
const ACTIVATED: &str = "duo_activated";
/// The button that asks Duo again after it was unavailable.
const RETRY: &str = "duo_retry";
/// Refused pushes and passcodes allowed while linking.
const LINK_ATTEMPTS: u32 = 5;
/// Pushes a linking may send.
const LINK_PUSHES: u32 = 3;

pub(crate) struct AuthenticatorDuo {
    pub(crate) cfg: DuoStageConfig,
}

/// What a Duo setup stage waits for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum DuoSetupState {
    /// Duo did not answer; the user may ask again.
    Unavailable,
    /// Duo Mobile to be activated with this enrolment's code.
    Activating { enrollment: Enrollment },
    /// Duo knows the user: a push approved or a passcode links the account.
    Linking { ask: DuoAsk },
}

impl AuthenticatorDuo {
    fn duo_cx<'a>(&'a self, cx: &'a Cx<'_>) -> DuoCx<'a> {
        DuoCx {
            api: &self.cfg.api,
            http: cx.services.http.as_ref(),
            now: cx.now,
            client: cx.client,
            max_attempts: LINK_ATTEMPTS,
            max_pushes: LINK_PUSHES,
        }
    }

    /// Asks Duo about the user: enrol, link, or end.
    async fn begin(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        let Some(user) = cx.user()?.filter(|u| u.active) else {
            return Ok(Transition::cancel(super::SIGN_IN_FAILED));
        };
        // # Security
        // Enrolling binds a phone to the account: only after something proved who the user is.
        if !cx.exec.authenticated() {
            tracing::warn!(stage = cx.name, client = %cx.client, "Duo enrolment before anything proved who the user is: refused (put a password stage first)");
            return Ok(Transition::cancel(super::SIGN_IN_FAILED));
        }
        let client = DuoClient::new(&self.cfg.api, cx.services.http.as_ref(), cx.now);
        let named = DuoUser::Username(user.username.clone());
        match client.preauth(&named).await {
            Ok(Preauth::Enroll) => self.enroll(cx, &user.username, Vec::new()).await,
            Ok(Preauth::Auth) => Ok(Transition::stay(DuoSetupState::Linking {
                ask: DuoAsk::new(named),
            })),
            Ok(Preauth::Allow) => Ok(Transition::cancel(
                "Duo lets this account in without a device, so there is nothing to set up.",
            )),
            Ok(Preauth::Deny(message)) => {
                tracing::info!(user = %user.username, "Duo refused the account at preauth");
                Ok(Transition::cancel(format!(
                    "Duo refused this account: {message}"
                )))
            }
            Err(e) => Ok(Transition::refuse(
                DuoSetupState::Unavailable,
                duo::failed(&e, cx.name),
            )),
        }
    }

    /// A new enrolment, shown with `errors`.
    async fn enroll(
        &self,
        cx: &Cx<'_>,
        username: &str,
        mut errors: Vec<String>,
    ) -> Result<Transition, FlowError> {
        let client = DuoClient::new(&self.cfg.api, cx.services.http.as_ref(), cx.now);
        let mut enrolled = client.enroll(Some(username), ACTIVATION_SECS).await;
        if let Err(DuoError::Refused { status: 400, .. }) = &enrolled {
            // Duo already has a user of this name without an activated device (an enrolment
            // begun and left): it refuses the name again, so let Duo pick one. The device
            // keeps the new user's id, which is what later requests name.
            tracing::info!(
                stage = cx.name,
                user = username,
                "Duo refused the username at enrolment; enrolling under a name Duo picks"
            );
            enrolled = client.enroll(None, ACTIVATION_SECS).await;
        }
        match enrolled {
            Ok(enrollment) => Ok(Transition::to(Next::Stay(
                DuoSetupState::Activating { enrollment }.into(),
                errors,
            ))),
            Err(e) => {
                errors.push(duo::failed(&e, cx.name));
                Ok(Transition::to(Next::Stay(
                    DuoSetupState::Unavailable.into(),
                    errors,
                )))
            }
        }
    }

    /// The device for `user`, saved, and the stage passed.
    fn enrolled(&self, cx: &Cx<'_>, user: &DuoUser) -> Result<Transition, FlowError> {
        let Some(account) = cx.user()?.filter(|u| u.active) else {
            return Ok(Transition::cancel(super::SIGN_IN_FAILED));
        };
        let stored = user.stored();
        let existing = cx
            .services
            .store
            .devices(&account.username)?
            .into_iter()
            .find(|d| d.class == DeviceClass::Duo && d.secret.as_deref() == Some(stored.as_str()));
        let device = match existing {
            Some(d) => Device {
                last_used: Some(cx.now),
                ..d
            },
            None => Device {
                id: crate::secret::random_token(9),
                username: account.username.clone(),
                class: DeviceClass::Duo,
                name: self.cfg.friendly_name.clone(),
                // Shown as "Duo Mobile for alice"; never empty (empty means verify-only).
                address: account.username.clone(),
                address_hash: None,
                stage: cx.name.to_string(),
                created: cx.now,
                last_used: Some(cx.now),
                secret: Some(stored),
            },
        };
        tracing::info!(user = %account.username, client = %cx.client, "Duo authenticator enrolled");
        Ok(Transition::pass().and(Effect::PutDevice(device)))
    }
}

#[async_trait]
impl Stage for AuthenticatorDuo {
    fn kind(&self) -> StageKind {
        StageKind::AuthenticatorDuo
    }

    async fn enter(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        self.begin(cx).await
    }

    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError> {
        let StageState::AuthenticatorDuo(state) = state else {
            return Err(mismatch(cx));
        };
        let name = &self.cfg.friendly_name;
        let action = |n: &str, label: &str| Action {
            name: n.into(),
            label: label.into(),
        };
        Ok(match state {
            DuoSetupState::Unavailable => {
                let mut c = Challenge::new(self.kind().as_str(), Vec::new())
                    .titled(format!("Set up {name}"));
                c.actions.push(action(RETRY, "Try again"));
                c
            }
            DuoSetupState::Activating { enrollment } => {
                let mut c = Challenge::new(self.kind().as_str(), Vec::new())
                    .titled(format!("Set up {name}"));
                c.info.push("Scan this code with the Duo Mobile app (Add, then Use QR code), or open the activation link on your phone. Then check again.".into());
                c.qr = Some(enrollment.activation_code.expose().to_string());
                c.link = Some(Link {
                    href: enrollment.activation_url.clone(),
                    label: "Open the activation link on your phone".into(),
                });
                c.actions
                    .push(action(ACTIVATED, "I activated it — check again"));
                c
            }
            DuoSetupState::Linking { ask } => {
                let mut c = ask.challenge(self.kind().as_str(), name);
                c.info.insert(
                    0,
                    "Duo already knows your account: confirm once to add it here.".into(),
                );
                c
            }
        })
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let StageState::AuthenticatorDuo(state) = state else {
            return Err(mismatch(cx));
        };
        let action = input.get("action").map(String::as_str);
        match state {
            DuoSetupState::Unavailable if action == Some(RETRY) => self.begin(cx).await,
            DuoSetupState::Activating { enrollment } if action == Some(ACTIVATED) => {
                let client = DuoClient::new(&self.cfg.api, cx.services.http.as_ref(), cx.now);
                let status = client
                    .enroll_status(&enrollment.user_id, &enrollment.activation_code)
                    .await;
                match status {
                    Ok(EnrollStatus::Success) => {
                        self.enrolled(cx, &DuoUser::UserId(enrollment.user_id))
                    }
                    Ok(EnrollStatus::Waiting) => Ok(Transition::refuse(
                        DuoSetupState::Activating { enrollment },
                        "Duo Mobile is not activated yet: scan the code, then check again.",
                    )),
                    Ok(EnrollStatus::Invalid) => {
                        let Some(user) = cx.user()? else {
                            return Ok(Transition::cancel(super::SIGN_IN_FAILED));
                        };
                        let expired =
                            "That activation code no longer works: scan this new one.".into();
                        self.enroll(cx, &user.username, vec![expired]).await
                    }
                    Err(e) => Ok(Transition::refuse(
                        DuoSetupState::Activating { enrollment },
                        duo::failed(&e, cx.name),
                    )),
                }
            }
            DuoSetupState::Linking { ask } => {
                let asked = ask.answer(&self.duo_cx(cx), cx.name, input).await?;
                match asked {
                    Asked::Approved(_) => {
                        let Some(user) = cx.user()? else {
                            return Ok(Transition::cancel(super::SIGN_IN_FAILED));
                        };
                        self.enrolled(cx, &DuoUser::Username(user.username))
                    }
                    Asked::Stay(ask, errors) => Ok(Transition::to(Next::Stay(
                        DuoSetupState::Linking { ask }.into(),
                        errors,
                    ))),
                    Asked::Cancel(message) => Ok(Transition::cancel(message)),
                }
            }
            other => Ok(Transition::stay(other)),
        }
    }
}
