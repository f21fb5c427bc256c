//! `invitation`: accepts an invitation an operator issued (`portcullis invite create`) and
//! carries its fixed data (address, name, groups, attributes) into the flow, where prompts
//! show it and `user_write` writes it (authentik's Invitation stage). The token comes from the
//! flow's link (`?itoken=`) or from a prompt's `token` field.
//!
//! A token is `<id>.<secret>`: the id finds the record, the secret's SHA-256 is compared with
//! the stored one in constant time. The store keeps only the hash, so a copy of the database
//! cannot be turned into working links. A single-use invitation is spent by the `user_write`
//! that writes the account (or, in a flow without one, when the flow completes): abandoning a
//! sign-up half way does not burn it, and of two sign-ups racing with it exactly one wins.

use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Next, Stage, Transition};
use crate::flow::{Challenge, FlowError, Input, InvitationUse, Services, StageKind};
use crate::secret::SecretString;
use crate::store::{Invitation, InvitationData, Store};
use async_trait::async_trait;
use sha2::{Digest, Sha256};

/// Said for every invitation that cannot be used: unknown, forged, expired, spent, withdrawn,
/// or for another flow. One sentence for all, so a guess learns nothing.
pub(crate) const INVALID: &str =
    "This invitation is not valid: it may have expired, been used or been withdrawn.";

/// The prompt keys a token may be typed into.
const TOKEN_KEYS: [&str; 2] = ["token", "itoken"];

/// Random bytes in an invitation's id (12 characters).
const ID_BYTES: usize = 9;
/// Characters in an id.
const ID_LEN: usize = 12;
/// Random bytes in its secret (32 characters).
const SECRET_BYTES: usize = 24;
/// Characters in a secret.
const SECRET_LEN: usize = 32;

pub(crate) struct InvitationStage {
    pub(crate) continue_without: bool,
}

#[async_trait]
impl Stage for InvitationStage {
    fn kind(&self) -> StageKind {
        StageKind::Invitation
    }

    fn interactive(&self) -> bool {
        false
    }

    async fn enter(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        if cx.exec.invitation.is_some() {
            return Ok(Transition::pass());
        }
        let typed = TOKEN_KEYS
            .iter()
            .find_map(|k| cx.exec.prompt_data.get(*k))
            .map(|t| SecretString::new(t.trim()));
        let linked = cx
            .exec
            .invitation_token
            .as_ref()
            .map(|t| SecretString::new(t.expose()));
        let token = linked.or(typed);
        let found = match &token {
            Some(t) => find(cx.services.store.as_ref(), t, cx.now)?,
            None => None,
        };
        let valid = found.filter(|inv| inv.flow.as_ref().is_none_or(|f| *f == cx.exec.flow));
        match valid {
            Some(inv) => {
                tracing::info!(stage = cx.name, flow = %cx.exec.flow, invitation = %inv.id, client = %cx.client, outcome = "accepted", "invitation accepted");
                Ok(
                    Transition::pass().and(Effect::Invited(Box::new(InvitationUse {
                        id: inv.id,
                        single_use: inv.single_use,
                        spent: false,
                        fixed: inv.fixed,
                    }))),
                )
            }
            None if self.continue_without => Ok(Transition::to(Next::Skip)),
            None => {
                tracing::info!(stage = cx.name, flow = %cx.exec.flow, client = %cx.client, outcome = if token.is_some() { "invalid" } else { "missing" }, "invitation refused");
                Ok(Transition::cancel(INVALID))
            }
        }
    }

    fn challenge(&self, cx: &Cx<'_>, _state: &StageState) -> Result<Challenge, FlowError> {
        Err(mismatch(cx))
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        _state: StageState,
        _input: &Input,
    ) -> Result<Transition, FlowError> {
        Err(mismatch(cx))
    }
}

/// The value an invitation fixes for the prompt key `key` (`email`, `name`,
/// `attributes.<key>`), if it fixes one.
pub(crate) fn fixed_value<'a>(fixed: &'a InvitationData, key: &str) -> Option<&'a str> {
    match key {
        "email" => fixed.email.as_deref(),
        "name" => fixed.name.as_deref(),
        _ => fixed
            .attributes
            .get(key.strip_prefix("attributes.")?)
            .map(String::as_str),
    }
}

/// Hex SHA-256 of a token's secret part.
fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The live invitation `token` opens, if any.
///
/// # Security
/// The secret is compared by hash in constant time, and hashed even when the id is unknown,
/// so neither the comparison nor the lookup's outcome shows in the time taken.
///
/// # Errors
/// Storage errors.
pub(crate) fn find(
    store: &dyn Store,
    token: &SecretString,
    now: i64,
) -> Result<Option<Invitation>, FlowError> {
    let Some((id, secret)) = token.expose().split_once('.') else {
        return Ok(None);
    };
    let well_formed = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let hash = hash_secret(secret);
    if !well_formed(id, ID_LEN) || !well_formed(secret, SECRET_LEN) {
        return Ok(None);
    }
    let found = store.invitation(id, now)?;
    let expected = found
        .as_ref()
        .map_or_else(|| "0".repeat(64), |i| i.token_hash.clone());
    let matches = crate::secret::equal(hash.as_bytes(), expected.as_bytes());
    Ok(found.filter(|_| matches))
}

/// A new invitation and its token (shown once: only the hash is stored). `expires` is unix
/// seconds.
pub(crate) fn issue(
    fixed: InvitationData,
    flow: Option<String>,
    single_use: bool,
    now: i64,
    expires: i64,
) -> (Invitation, SecretString) {
    let id = crate::secret::random_token(ID_BYTES);
    let secret = crate::secret::random_token(SECRET_BYTES);
    let invitation = Invitation {
        token_hash: hash_secret(&secret),
        id: id.clone(),
        flow,
        fixed,
        single_use,
        created: now,
        expires,
    };
    (invitation, SecretString::new(format!("{id}.{secret}")))
}

/// Spends the execution's invitation, if it has one not yet spent: `None` when there is none
/// to spend, `Some(true)` when this call spent it (or it is multi-use and still live),
/// `Some(false)` when it is gone (spent by a racing sign-up, withdrawn or expired).
///
/// # Errors
/// Storage errors.
pub(crate) fn spend(cx: &Cx<'_>) -> Result<Option<bool>, FlowError> {
    match cx.exec.invitation.as_ref().filter(|i| !i.spent) {
        Some(inv) => Ok(Some(spend_now(cx.services, inv, cx.now)?)),
        None => Ok(None),
    }
}

/// As [`spend`], for an invitation known to be unspent.
///
/// # Errors
/// Storage errors.
pub(crate) fn spend_now(
    services: &Services,
    inv: &InvitationUse,
    now: i64,
) -> Result<bool, FlowError> {
    let store = &services.store;
    if store.invitation(&inv.id, now)?.is_none() {
        return Ok(false);
    }
    if !inv.single_use {
        return Ok(true);
    }
    let won = store.remove_invitation(&inv.id)?;
    if won {
        tracing::info!(invitation = %inv.id, outcome = "spent", "single-use invitation spent");
    }
    Ok(won)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn a_token_opens_only_its_own_live_invitation() {
        let store = MemoryStore::new();
        let (inv, token) = issue(InvitationData::default(), None, true, 100, 200);
        store.put_invitation(&inv).unwrap();
        assert!(!inv
            .token_hash
            .contains(token.expose().split_once('.').unwrap().1));
        let open = |t: &str, now| find(&store, &SecretString::new(t), now).unwrap();
        assert_eq!(
            open(token.expose(), 150).map(|i| i.id),
            Some(inv.id.clone())
        );
        assert!(open(token.expose(), 200).is_none(), "expired");
        let (other, other_token) = issue(InvitationData::default(), None, true, 100, 200);
        store.put_invitation(&other).unwrap();
        let (_, secret) = other_token.expose().split_once('.').unwrap();
        for forged in [
            format!("{}.{secret}", inv.id),
            format!("{}.{}", inv.id, "A".repeat(SECRET_LEN)),
            inv.id.clone(),
            format!("{}.", inv.id),
            format!(".{secret}"),
            format!("{}..{secret}", inv.id),
            format!("{} .{secret}", inv.id),
            token.expose().to_uppercase(),
            format!("{}x", token.expose()),
            String::new(),
        ] {
            assert!(open(&forged, 150).is_none(), "{forged:?} opened it");
        }
    }
}
