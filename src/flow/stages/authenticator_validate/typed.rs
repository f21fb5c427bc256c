//! What the classes a user types a code for without a send (TOTP, recovery codes) share: the
//! code field, and wrong answers counted per execution and per (account, client address).

use super::class::{Answer, ClassCx, Pending, Typed};
use crate::flow::code::CodeState;
use crate::flow::{otp, Challenge, Field, FlowError, StageKind};

/// A code field and one line saying where the code comes from; no send button.
pub(super) fn challenge(label: &str, info: String, title: &str) -> Challenge {
    let field = Field::new("code", "text", label).autocomplete("one-time-code");
    let mut c = Challenge::new(StageKind::AuthenticatorValidate.as_str(), vec![field]);
    c.info.push(info);
    c.titled(title)
}

/// An attempt counted before its code is judged: the count of this account from this client
/// address in the window, and the attempt as [`crate::regulation`] counted it.
pub(super) struct Counted {
    fails: u32,
    attempt: crate::regulation::Attempt,
}

/// Counts an attempt against the account from this client address, and with
/// [`crate::regulation`], before the code is looked at: `Ok(counted)` to go on and judge;
/// `Err(answer)` when the limit is passed and the execution ends.
///
/// # Security
/// Counted atomically in the store before judging, so parallel guesses from several
/// sign-ins cannot all pass a check made before any was counted; a right code resets it
/// ([`right`]). Counted per (account, address), not per account: a stranger's wrong codes
/// from elsewhere never end the owner's sign-in (they trip regulation's account-wide
/// slow-down instead, which leaves addresses that have not failed alone).
///
/// # Errors
/// [`FlowError::Regulated`] when regulation refuses the client; [`FlowError::Store`].
pub(super) fn count(cx: &ClassCx<'_>) -> Result<Result<Counted, Answer>, FlowError> {
    let max = cx.policy.max_allowed_attempts;
    let fails = if max == 0 {
        0
    } else {
        let window = i64::try_from(cx.policy.user_limit_window.as_secs()).unwrap_or(i64::MAX);
        let n = cx
            .cx
            .services
            .store
            .bump_counter(&key(cx), window, cx.cx.now)?;
        if n > max {
            return Ok(Err(Answer::Cancel(otp::TOO_MANY_ATTEMPTS.into())));
        }
        n
    };
    let attempt =
        crate::flow::regulated::attempt(cx.cx.services, cx.cx.exec, cx.cx.client, cx.cx.now)?;
    Ok(Ok(Counted { fails, attempt }))
}

/// A wrong code: counted for this execution; the execution ends at the limit, else the user
/// sees `message` and may try again.
pub(super) fn wrong(cx: &ClassCx<'_>, typed: Typed, counted: Counted, message: &str) -> Answer {
    let user_fails = counted.fails;
    if let Err(e) = crate::flow::regulated::settle(cx.cx.services, counted.attempt, false) {
        // The failure is already counted; only the ban it may call for waits for the next try.
        tracing::error!(error = %e, "recording a failed code for regulation");
    }
    let attempts = typed.attempts.saturating_add(1);
    let max = cx.policy.max_allowed_attempts;
    tracing::info!(user = %CodeState::subject(cx.cx.exec), client = %cx.cx.client, stage = cx.cx.name, outcome = "failure", "typed code refused");
    if max > 0 && (attempts >= max || user_fails >= max) {
        return Answer::Cancel(otp::TOO_MANY_ATTEMPTS.into());
    }
    Answer::Wait {
        pending: Pending::Typed(Typed { attempts }),
        errors: vec![message.into()],
        effects: Vec::new(),
    }
}

/// A right code: the count of this account from this address starts again.
///
/// # Errors
/// [`FlowError::Store`].
pub(super) fn right(cx: &ClassCx<'_>, counted: Counted) -> Result<(), FlowError> {
    crate::flow::regulated::settle(cx.cx.services, counted.attempt, true)?;
    cx.cx.services.store.reset_counter(&key(cx))?;
    Ok(())
}

/// The per-execution attempts carried from earlier choices.
pub(super) fn fresh(cx: &ClassCx<'_>) -> Pending {
    Pending::Typed(Typed {
        attempts: cx.spent.attempts,
    })
}

fn key(cx: &ClassCx<'_>) -> String {
    format!(
        "otp:typed:fails:{}@{}",
        CodeState::subject(cx.cx.exec),
        cx.cx.client
    )
}
