//! What the classes a user types a code for without a send (TOTP, recovery codes) share: the
//! code field, and wrong answers counted per execution and per user.

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

/// Counts an attempt against the user before the code is looked at: `Ok(n)`, this user's
/// count in the window, to go on and judge; `Err(answer)` when the limit is passed and the
/// execution ends.
///
/// # Security
/// Counted atomically in the store before judging, so parallel guesses from several
/// sign-ins cannot all pass a check made before any was counted; a right code resets it
/// ([`right`]).
pub(super) fn count(cx: &ClassCx<'_>) -> Result<Result<u32, Answer>, FlowError> {
    let max = cx.policy.max_allowed_attempts;
    if max == 0 {
        return Ok(Ok(0));
    }
    let window = i64::try_from(cx.policy.user_limit_window.as_secs()).unwrap_or(i64::MAX);
    let n = cx
        .cx
        .services
        .store
        .bump_counter(&key(cx), window, cx.cx.now)?;
    if n > max {
        return Ok(Err(Answer::Cancel(otp::TOO_MANY_ATTEMPTS.into())));
    }
    Ok(Ok(n))
}

/// A wrong code: counted for this execution; the execution ends at the limit, else the user
/// sees `message` and may try again.
pub(super) fn wrong(cx: &ClassCx<'_>, typed: Typed, user_fails: u32, message: &str) -> Answer {
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

/// A right code: the user's count starts again.
pub(super) fn right(cx: &ClassCx<'_>) -> Result<(), FlowError> {
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
    format!("otp:typed:fails:{}", CodeState::subject(cx.cx.exec))
}
