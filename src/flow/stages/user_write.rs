//! `user_write`: writes what the flow gathered (prompt answers, an invitation's fixed data) to
//! the pending user, creating the account when there is none (authentik's User write stage).
//!
//! It reads `username`, `email`, `name`, `phone`, `password` and `attributes.<key>` from the
//! prompts. A password is checked against `[password]`, hashed with argon2id and written; on an
//! existing account every session of it then ends. A name or address another account holds is
//! refused with a message, and the stage asks for another one: it is the one stage whose
//! decision is its write, so it writes in its own step (the store decides races).

use crate::config::{Designation, UserCreationMode, UserWriteStageConfig, PASSWORD_KEY};
use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Next, Stage, Transition};
use crate::flow::{Challenge, Field, FlowError, Input, StageKind};
use crate::secret::SecretString;
use crate::session::Factors;
use crate::store::{new_username, User};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Said when the chosen username belongs to another account.
pub(crate) const USERNAME_TAKEN: &str = "This username is taken. Choose another one.";
/// Said when the address belongs to another account.
pub(crate) const EMAIL_TAKEN: &str = "Another account uses this email address.";
/// Said when there is no username to create an account under.
const USERNAME_NEEDED: &str = "Choose a username.";
/// Said when the flow cannot write to anyone (misconfigured, or nobody proved who they are).
pub(crate) const NO_ACCOUNT: &str = "Your account could not be saved. Start again.";
/// Said when the address an invitation fixes already has an account.
pub(crate) const INVITED_ADDRESS_TAKEN: &str =
    "An account already uses the address this invitation is for. Sign in, or ask for a new invitation.";
/// Said when a value could not travel in a header (a control character in a name).
pub(crate) const CONTROL_CHARACTER: &str =
    "A field contains a control character, which no account may hold. Start again.";
/// Said when a flow tries to rename an existing account.
const NO_RENAME: &str = "The username of an existing account cannot be changed.";

/// The prompt key whose answer must equal the password's in the form this stage asks again.
const PASSWORD_REPEAT: &str = "password_repeat";
/// The prefix of prompt keys written to the account's attributes.
const ATTRIBUTES: &str = "attributes.";

pub(crate) struct UserWrite {
    pub(crate) cfg: UserWriteStageConfig,
}

/// What a `user_write` waits for: only a refused write waits, for what was refused.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum UserWriteState {
    /// The fields in `ask`, typed again; the rest of the write is held in `pending`.
    Fix { pending: Pending, ask: Vec<Ask> },
}

/// A field the stage asks for again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Ask {
    Username,
    Email,
    Password,
}

/// What is about to be written.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Pending {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    groups: Vec<String>,
    /// The argon2id PHC string of the new password: only ever the hash, never the password.
    #[serde(default)]
    password_hash: Option<SecretString>,
}

impl Pending {
    /// What the flow gathered: its prompt answers, then an invitation's fixed data (which wins
    /// over what was typed).
    fn gather(cx: &Cx<'_>) -> Pending {
        let data = &cx.exec.prompt_data;
        let text = |k: &str| data.get(k).filter(|v| !v.is_empty()).cloned();
        let mut p = Pending {
            username: text("username"),
            email: text("email"),
            name: text("name"),
            phone: text("phone"),
            attributes: data
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(ATTRIBUTES)?.to_string(), v.clone())))
                .filter(|(k, _)| !k.is_empty())
                .collect(),
            groups: Vec::new(),
            password_hash: None,
        };
        if let Some(inv) = &cx.exec.invitation {
            inv.fixed
                .apply(&mut p.email, &mut p.name, &mut p.attributes);
            p.groups.extend(inv.fixed.groups.iter().cloned());
        }
        p
    }
}

/// Where the write goes.
enum Target {
    Create,
    Update(User),
}

/// What became of an attempt to write.
enum Outcome {
    /// Written; these effects record it.
    Done(Box<Transition>),
    /// Refused: ask for these fields again, with these messages.
    Refused(Vec<Ask>, Vec<String>),
}

#[async_trait]
impl Stage for UserWrite {
    fn kind(&self) -> StageKind {
        StageKind::UserWrite
    }

    async fn enter(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        let password = cx
            .exec
            .secrets
            .get(PASSWORD_KEY)
            .map(|p| SecretString::new(p.expose()));
        self.write(cx, Pending::gather(cx), password).await
    }

    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError> {
        let StageState::UserWrite(UserWriteState::Fix { pending, ask }) = state else {
            return Err(mismatch(cx));
        };
        let mut fields = Vec::new();
        for a in ask {
            match a {
                Ask::Username => {
                    let mut f = Field::new("username", "text", "Username").autocomplete("username");
                    f.value = pending.username.clone();
                    fields.push(f);
                }
                Ask::Email => {
                    let mut f = Field::new("email", "email", "Email").autocomplete("email");
                    f.value = pending.email.clone();
                    fields.push(f);
                }
                Ask::Password => {
                    fields.push(
                        Field::new(PASSWORD_KEY, "password", "Password")
                            .autocomplete("new-password"),
                    );
                    fields.push(
                        Field::new(PASSWORD_REPEAT, "password", "Password (repeat)")
                            .autocomplete("new-password"),
                    );
                }
            }
        }
        Ok(Challenge::new(self.kind().as_str(), fields).titled("Check your details"))
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let StageState::UserWrite(UserWriteState::Fix { mut pending, ask }) = state else {
            return Err(mismatch(cx));
        };
        let typed = |k: &str| input.get(k).map(|v| v.trim().to_string());
        let mut password = None;
        for a in &ask {
            match a {
                Ask::Username => pending.username = typed("username").filter(|v| !v.is_empty()),
                Ask::Email => pending.email = typed("email").filter(|v| !v.is_empty()),
                Ask::Password => {
                    let pw = input.get(PASSWORD_KEY).cloned().unwrap_or_default();
                    let repeat = input.get(PASSWORD_REPEAT).cloned().unwrap_or_default();
                    if !crate::secret::equal(pw.as_bytes(), repeat.as_bytes()) {
                        let errors = vec![super::prompt::PASSWORDS_DIFFER.to_string()];
                        return Ok(Transition::to(Next::Stay(
                            UserWriteState::Fix { pending, ask }.into(),
                            errors,
                        )));
                    }
                    password = Some(SecretString::new(pw));
                }
            }
        }
        if let Some(inv) = &cx.exec.invitation {
            // The invitation wins over what was typed again, as over what was typed first.
            let (mut email, mut name) = (pending.email.take(), pending.name.take());
            inv.fixed
                .apply(&mut email, &mut name, &mut pending.attributes);
            (pending.email, pending.name) = (email, name);
        }
        self.write(cx, pending, password).await
    }
}

impl UserWrite {
    /// Hashes the new password (if any), then writes `pending` where the mode says, or asks
    /// again for what was refused.
    ///
    /// # Security
    /// The password is hashed before anything is looked up, so a refused name or address
    /// costs the same argon2id work as an accepted one: the time of the answer does not say
    /// more than its words.
    async fn write(
        &self,
        cx: &Cx<'_>,
        mut pending: Pending,
        password: Option<SecretString>,
    ) -> Result<Transition, FlowError> {
        if let Some(pw) = password {
            if let Err(why) = self.cfg.password_policy.check(pw.expose()) {
                return Ok(self.refused(pending, vec![Ask::Password], vec![why.to_string()]));
            }
            let hash = cx
                .services
                .passwords
                .hash(pw)
                .await
                .map_err(|e| FlowError::Stage {
                    stage: cx.name.into(),
                    reason: format!("hashing the new password: {e}"),
                })?;
            pending.password_hash = Some(SecretString::new(hash));
        }
        let target = match self.target(cx)? {
            Ok(t) => t,
            Err(message) => return Ok(Transition::cancel(message)),
        };
        let outcome = match target {
            Target::Create => self.create(cx, &pending)?,
            Target::Update(user) => match self.update(cx, &pending, user)? {
                Ok(o) => o,
                Err(message) => return Ok(Transition::cancel(message)),
            },
        };
        Ok(match outcome {
            Outcome::Done(t) => *t,
            Outcome::Refused(ask, errors) => self.refused(pending, ask, errors),
        })
    }

    fn refused(&self, pending: Pending, mut ask: Vec<Ask>, errors: Vec<String>) -> Transition {
        ask.sort_by_key(|a| *a as u8);
        ask.dedup();
        Transition::to(Next::Stay(
            UserWriteState::Fix { pending, ask }.into(),
            errors,
        ))
    }

    /// Whom to write to, or why nobody.
    ///
    /// # Security
    /// An existing account is written only once the execution proved who the user is (a
    /// password, a code to an address the account had, a carried session): a flow that only
    /// identified someone must not let the visitor set their password or address. An account
    /// is created only in an enrollment flow, or once something was proved (an address, in a
    /// registration), never for a name that was merely typed.
    fn target(&self, cx: &Cx<'_>) -> Result<Result<Target, String>, FlowError> {
        let exec = cx.exec;
        let proved = exec.authenticated() || exec.carried.is_some();
        let create_allowed = cx.designation == Designation::Enrollment || proved;
        let pending_user = match &exec.user {
            Some(_) => cx.user()?,
            None => None,
        };
        let refuse = |why: &str| {
            tracing::warn!(stage = cx.name, flow = %exec.flow, client = %cx.client, why, "user_write refused");
            Ok(Err(NO_ACCOUNT.to_string()))
        };
        match (self.cfg.user_creation_mode, pending_user) {
            (UserCreationMode::AlwaysCreate, _) | (UserCreationMode::CreateWhenRequired, None) => {
                if !create_allowed {
                    return refuse("no account is created outside enrollment before a proof");
                }
                if exec.user.is_some()
                    && self.cfg.user_creation_mode != UserCreationMode::AlwaysCreate
                {
                    return refuse("the pending account is gone");
                }
                Ok(Ok(Target::Create))
            }
            (_, Some(user)) if proved => Ok(Ok(Target::Update(user))),
            (_, Some(_)) => refuse("nothing proved who the pending user is"),
            (UserCreationMode::NeverCreate, None) => refuse("never_create and no pending user"),
        }
    }

    fn create(&self, cx: &Cx<'_>, p: &Pending) -> Result<Outcome, FlowError> {
        let Some(typed) = &p.username else {
            return Ok(Outcome::Refused(
                vec![Ask::Username],
                vec![USERNAME_NEEDED.into()],
            ));
        };
        let username = match new_username(typed) {
            Ok(u) => u,
            Err(why) => return Ok(Outcome::Refused(vec![Ask::Username], vec![why])),
        };
        if let Some(bad) = self.invalid(p) {
            return Ok(bad);
        }
        let store = &cx.services.store;
        let mut ask = Vec::new();
        let mut errors = Vec::new();
        // Both lookups always run, whatever the first found.
        let name_taken = store.user(&username)?.is_some();
        let email_taken = match &p.email {
            Some(e) => store.user_by_email(e)?.is_some(),
            None => false,
        };
        if name_taken {
            ask.push(Ask::Username);
            errors.push(USERNAME_TAKEN.to_string());
        }
        if email_taken {
            if invited_address(cx).is_some() {
                // The visitor cannot choose another address: the invitation fixes it.
                return Ok(Outcome::Done(Box::new(Transition::cancel(
                    INVITED_ADDRESS_TAKEN,
                ))));
            }
            ask.push(Ask::Email);
            errors.push(EMAIL_TAKEN.to_string());
        }
        if !ask.is_empty() {
            tracing::info!(stage = cx.name, flow = %cx.exec.flow, client = %cx.client, outcome = "taken", "account not created: name or address in use");
            return Ok(Outcome::Refused(ask, errors));
        }
        let mut user = User::new(&username, cx.now);
        user.email = p.email.clone();
        user.name = p.name.clone().unwrap_or_default();
        user.phone = p.phone.clone();
        user.attributes = p.attributes.clone();
        user.active = !self.cfg.create_users_as_inactive;
        user.password_hash = p.password_hash.as_ref().map(|h| h.expose().to_string());
        let mut groups = p.groups.clone();
        groups.extend(self.cfg.create_users_group.iter().cloned());
        for g in groups {
            if !user.groups.contains(&g) {
                user.groups.push(g);
            }
        }
        let spent = match super::invitation::spend(cx)? {
            Some(false) => {
                return Ok(Outcome::Done(Box::new(Transition::cancel(
                    super::invitation::INVALID,
                ))))
            }
            Some(true) => true,
            None => false,
        };
        if !store.create_user(&user)? {
            // Another sign-up took the name or address since the lookups.
            return Ok(Outcome::Refused(
                vec![Ask::Username, Ask::Email],
                vec![USERNAME_TAKEN.into()],
            ));
        }
        tracing::info!(stage = cx.name, flow = %cx.exec.flow, user = %user.username, client = %cx.client, active = user.active, "account created");
        audit(&user.username, cx, "account_create");
        let mut t = Transition::pass()
            .and(Effect::Identify {
                uid: user.username.clone(),
                user: Some(user.username.clone()),
            })
            .and(Effect::Enrolled(user.username.clone()));
        if spent {
            t = t.and(Effect::InvitationSpent);
        }
        if user.password_hash.is_some() {
            // Whoever chose the password knows it.
            t = t
                .and(Effect::Prove(Factors::PASSWORD))
                .and(Effect::Methods(vec!["pwd"]));
        }
        Ok(Outcome::Done(Box::new(t)))
    }

    /// Rejects field values no account may hold (an address that is not one, a control
    /// character in a name or number, which could not travel in a header).
    fn invalid(&self, p: &Pending) -> Option<Outcome> {
        if p.email
            .as_deref()
            .is_some_and(|e| !super::prompt::is_email(e) || e.chars().any(char::is_control))
        {
            return Some(Outcome::Refused(
                vec![Ask::Email],
                vec!["This is not an email address.".into()],
            ));
        }
        let control = |v: &Option<String>| {
            v.as_deref()
                .is_some_and(|v| v.chars().any(char::is_control))
        };
        if control(&p.name)
            || control(&p.phone)
            || p.attributes
                .values()
                .any(|v| v.chars().any(char::is_control))
        {
            // Nothing here can be typed again: the flow ends.
            return Some(Outcome::Done(Box::new(Transition::cancel(
                CONTROL_CHARACTER,
            ))));
        }
        None
    }

    fn update(
        &self,
        cx: &Cx<'_>,
        p: &Pending,
        mut user: User,
    ) -> Result<Result<Outcome, String>, FlowError> {
        if let Some(typed) = &p.username {
            let same = crate::store::canonical_username(typed)
                .is_some_and(|c| crate::store::canonical_username(&user.username) == Some(c));
            if !same {
                return Ok(Err(NO_RENAME.into()));
            }
        }
        if let Some(bad) = self.invalid(p) {
            return Ok(Ok(bad));
        }
        let store = &cx.services.store;
        if let Some(email) = &p.email {
            let holder = store.user_by_email(email)?;
            if holder.is_some_and(|h| h.username != user.username) {
                return Ok(Ok(Outcome::Refused(
                    vec![Ask::Email],
                    vec![EMAIL_TAKEN.into()],
                )));
            }
            user.email = Some(email.clone());
        }
        if let Some(name) = &p.name {
            user.name = name.clone();
        }
        if let Some(phone) = &p.phone {
            user.phone = Some(phone.clone());
        }
        user.attributes
            .extend(p.attributes.iter().map(|(k, v)| (k.clone(), v.clone())));
        for g in &p.groups {
            if !user.groups.contains(g) {
                user.groups.push(g.clone());
            }
        }
        let new_password = p.password_hash.is_some();
        if let Some(h) = &p.password_hash {
            user.password_hash = Some(h.expose().to_string());
        }
        let spent = match super::invitation::spend(cx)? {
            Some(false) => {
                return Ok(Ok(Outcome::Done(Box::new(Transition::cancel(
                    super::invitation::INVALID,
                )))))
            }
            Some(true) => true,
            None => false,
        };
        // Written only if the address is still free: a check above and a plain write here
        // would let two accounts racing for one address both pass, the later one taking the
        // index entry of the other.
        if !store.update_user(&user)? {
            if store.user(&user.username)?.is_none() {
                return Err(FlowError::Stage {
                    stage: cx.name.to_string(),
                    reason: "the account was removed during the update".into(),
                });
            }
            return Ok(Ok(Outcome::Refused(
                vec![Ask::Email],
                vec![EMAIL_TAKEN.into()],
            )));
        }
        if new_password {
            // A new password ends every session the old one opened, here and elsewhere.
            cx.services.sessions.revoke_user(&user.username)?;
            tracing::info!(stage = cx.name, flow = %cx.exec.flow, user = %user.username, client = %cx.client, "password written; every session of the user ended");
            audit(&user.username, cx, "password_change");
        } else {
            tracing::info!(stage = cx.name, flow = %cx.exec.flow, user = %user.username, client = %cx.client, "account updated");
            audit(&user.username, cx, "account_update");
        }
        let mut t = Transition::pass();
        if spent {
            t = t.and(Effect::InvitationSpent);
        }
        if new_password {
            // Whoever just chose the password knows it: a recovery that ends in a sign-in
            // does not send the user straight to a password step-up for the one they typed.
            t = t
                .and(Effect::Prove(Factors::PASSWORD))
                .and(Effect::Methods(vec!["pwd"]));
        }
        Ok(Ok(Outcome::Done(Box::new(t))))
    }
}

/// The address the execution's invitation fixes, if any.
fn invited_address<'a>(cx: &'a Cx<'_>) -> Option<&'a str> {
    cx.exec
        .invitation
        .as_ref()
        .and_then(|i| i.fixed.email.as_deref())
}

/// The audit record of an account change made by a `user_write` stage.
fn audit(user: &str, cx: &Cx<'_>, action: &'static str) {
    crate::audit::record(&crate::audit::Event {
        user,
        action,
        target: cx.name,
        outcome: "done",
        client: cx.client,
        ended_sessions: 0,
    });
}
