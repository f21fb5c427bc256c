//! `identification`: who is signing in. It always passes, whether or not the account exists,
//! so this step never tells an attacker which identifiers are real. With `webauthn_stage` it
//! also offers "Sign in with a passkey" (and passkey autofill): a discoverable credential
//! names the account and proves it at once, and the flow's password and WebAuthn checks are
//! then behind the user.

use crate::config::{PasskeyLogin, UserField};
use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Stage, Transition};
use crate::flow::webauthn::{self, Assertion, RelyingParty};
use crate::flow::{Challenge, Field, FlowError, Input, StageKind};
use crate::session::Factors;
use crate::store::DeviceClass;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The text of the link to the enrollment flow.
const SIGN_UP: &str = "Sign up";

/// The field a passkey's answer comes back in.
const CREDENTIAL: &str = super::authenticator_webauthn::CREDENTIAL;

/// What identification waits for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum IdentificationState {
    /// The identifier, or (with passkeys) the answer to this passkey sign-in.
    Uid {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passkey: Option<Assertion>,
    },
}

pub(crate) struct Identification {
    user_fields: Vec<UserField>,
    passkeys: Option<RelyingParty>,
    /// The enrollment flow a "Sign up" link starts.
    sign_up: Option<String>,
    /// The recovery flow "Forgot password?" leads to.
    recovery_flow: Option<String>,
}

impl Identification {
    pub(crate) fn new(user_fields: Vec<UserField>, passkeys: Option<&PasskeyLogin>) -> Self {
        Self {
            user_fields,
            passkeys: passkeys.map(|p| RelyingParty::new(&p.rp)),
            sign_up: None,
            recovery_flow: None,
        }
    }

    /// Offering a "Sign up" link to the enrollment flow `slug` (`enrollment_flow`).
    pub(crate) fn with_sign_up(mut self, slug: Option<String>) -> Self {
        self.sign_up = slug;
        self
    }

    /// With "Forgot password?" leading to the recovery flow `slug`.
    pub(crate) fn with_recovery(mut self, slug: Option<String>) -> Self {
        self.recovery_flow = slug;
        self
    }

    /// The "Sign up" link, towards where this sign-in was going.
    fn sign_up_link(&self, cx: &Cx<'_>) -> Option<crate::flow::Link> {
        let slug = self.sign_up.as_ref()?;
        let rd: String = url::form_urlencoded::byte_serialize(cx.exec.rd.as_bytes()).collect();
        Some(crate::flow::Link {
            href: format!("/.portcullis/flow/{slug}?rd={rd}"),
            label: SIGN_UP.into(),
        })
    }

    /// `challenge` with the links this stage offers besides its form.
    fn linked(&self, cx: &Cx<'_>, mut c: Challenge) -> Challenge {
        c.links.extend(self.sign_up_link(cx));
        if let Some(slug) = &self.recovery_flow {
            c.links.push(super::forgot_password(slug));
        }
        c
    }

    /// What the stage waits for: the identifier, and a fresh passkey sign-in when offered.
    fn waiting(&self) -> IdentificationState {
        let passkey = self
            .passkeys
            .as_ref()
            .and_then(|rp| rp.start_discoverable().ok());
        IdentificationState::Uid { passkey }
    }

    /// A passkey's answer: the account it names, checked against that account's passkeys.
    fn passkey(
        &self,
        cx: &Cx<'_>,
        assertion: &Assertion,
        answer: &str,
    ) -> Result<Result<Transition, webauthn::Refused>, FlowError> {
        let Some(rp) = &self.passkeys else {
            return Ok(Err(webauthn::Refused::Unknown));
        };
        let response = match webauthn::parse_assertion(answer) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let Some(username) = webauthn::claimed_user(&response) else {
            return Ok(Err(webauthn::Refused::Unknown));
        };
        let store = &cx.services.store;
        let Some(user) = store.user(&username)?.filter(|u| u.active) else {
            return Ok(Err(webauthn::Refused::Unknown));
        };
        let devices: Vec<_> = store
            .devices(&user.username)?
            .into_iter()
            .filter(|d| d.class == DeviceClass::Webauthn)
            .collect();
        let (used, methods) = match rp.finish_assertion(assertion, &response, &devices, cx.now) {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        // Saved from exactly the record it was checked against: two sign-ins racing with one
        // key cannot both move its counter from the same value.
        let checked = devices.iter().find(|d| d.id == used.id);
        if !checked.is_some_and(|d| store.swap_device(d, &used).unwrap_or(false)) {
            return Ok(Err(webauthn::Refused::Invalid(
                "device changed during the check",
            )));
        }
        tracing::info!(stage = cx.name, user = %user.username, device = %used.id, "signed in with a passkey");
        Ok(Ok(Transition::pass()
            .and(Effect::Identify {
                uid: user.username.clone(),
                user: Some(user.username),
            })
            .and(Effect::Prove(Factors::WEBAUTHN.with(Factors::PASSKEY)))
            .and(Effect::Methods(methods.to_vec()))
            .and(Effect::Passed(StageKind::AuthenticatorWebauthn))))
    }

    fn label(&self) -> &'static str {
        let username = self.user_fields.contains(&UserField::Username);
        let email = self.user_fields.contains(&UserField::Email);
        match (username, email) {
            (true, true) => "Username or email",
            (false, true) => "Email",
            _ => "Username",
        }
    }

    /// The stored name of the account `uid` names. The store compares usernames in their
    /// RFC 8265 form (`ALICE`, `ａｌｉｃｅ` find `alice`) and addresses trimmed, NFC and lower
    /// case, so every spelling reaches one account, and what the rest of the flow, the session
    /// and `Remote-User` carry is the stored name, never the typed one.
    fn resolve(&self, cx: &Cx<'_>, uid: &str) -> Result<Option<String>, FlowError> {
        let store = &cx.services.store;
        for field in &self.user_fields {
            let found = match field {
                UserField::Username => store.user(uid)?,
                UserField::Email if uid.contains('@') => store.user_by_email(uid)?,
                UserField::Email => None,
            };
            if let Some(u) = found {
                return Ok(Some(u.username));
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl Stage for Identification {
    fn kind(&self) -> StageKind {
        StageKind::Identification
    }

    /// Waiting for the identifier, without a passkey ceremony (whose challenge is random and
    /// must be found again).
    fn fresh(&self, state: &StageState) -> bool {
        matches!(
            state,
            StageState::Identification(IdentificationState::Uid { passkey: None })
        )
    }

    async fn enter(&self, _cx: &Cx<'_>) -> Result<Transition, FlowError> {
        Ok(Transition::stay(self.waiting()))
    }

    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError> {
        let StageState::Identification(IdentificationState::Uid { passkey }) = state else {
            return Err(mismatch(cx));
        };
        let kind = if self.user_fields == [UserField::Email] {
            "email"
        } else {
            "text"
        };
        let uid = Field::new("uid", kind, self.label());
        let Some(assertion) = passkey else {
            return Ok(self.linked(
                cx,
                Challenge::new(self.kind().as_str(), vec![uid.autocomplete("username")]),
            ));
        };
        // `webauthn` in the hint lets the browser offer passkeys in the field's autofill
        // (conditional mediation).
        let fields = vec![
            uid.autocomplete("username webauthn"),
            Field::new(CREDENTIAL, "hidden", "Passkey").optional(),
        ];
        let mut c = Challenge::new(self.kind().as_str(), fields);
        c.webauthn = Some(serde_json::json!({
            "mode": "get",
            "mediation": "conditional",
            "publicKey": assertion.options["publicKey"],
        }));
        Ok(self.linked(cx, c))
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let answer = input.get(CREDENTIAL).filter(|a| !a.trim().is_empty());
        if let (
            Some(answer),
            StageState::Identification(IdentificationState::Uid {
                passkey: Some(assertion),
            }),
        ) = (answer, &state)
        {
            // Counted by regulation (per address: no account is named yet) before it is judged.
            let attempt = crate::flow::regulated::attempt(cx.services, cx.exec, cx.client, cx.now)?;
            let verdict = self.passkey(cx, assertion, answer);
            let right = matches!(verdict, Ok(Ok(_)));
            crate::flow::regulated::settle(cx.services, attempt, right)?;
            return match verdict? {
                Ok(t) => Ok(t),
                Err(refused) => {
                    tracing::warn!(stage = cx.name, client = %cx.client, reason = refused.reason(), "passkey sign-in refused");
                    // The challenge was spent: the next try is a new ceremony.
                    Ok(Transition::refuse(self.waiting(), refused.message()))
                }
            };
        }
        let uid = input.get("uid").map(|s| s.trim()).unwrap_or_default();
        if uid.is_empty() || uid.len() > 256 {
            let error = format!("Enter your {}.", self.label().to_lowercase());
            return Ok(Transition::refuse(state, error));
        }
        let user = self.resolve(cx, uid)?;
        Ok(Transition::pass().and(Effect::Identify {
            uid: uid.to_string(),
            user,
        }))
    }
}
