//! The flow's side of regulation ([`crate::regulation`]): every stage that judges a secret (a
//! password, a one-time code, a passkey assertion) counts the attempt here before judging it,
//! and settles it after.

use super::{Execution, FlowError, Services};
use crate::regulation::Attempt;

/// The account an execution's failures count against: the resolved account, else the
/// identifier as typed (a made-up name is counted exactly as a real one).
pub(crate) fn account(exec: &Execution) -> Option<&str> {
    exec.user.as_deref().or(exec.uid.as_deref())
}

/// Counts an attempt on `exec`'s account from `client` before it is judged.
///
/// # Errors
/// [`FlowError::Regulated`] when the client is banned or past a limit (the attempt is then
/// not judged at all); [`FlowError::Store`].
pub(crate) fn attempt(
    services: &Services,
    exec: &Execution,
    client: &str,
    now: i64,
) -> Result<Attempt, FlowError> {
    services
        .regulator
        .attempt(account(exec), client, now)?
        .map_err(|r| FlowError::Regulated {
            retry_after: r.retry_after,
        })
}

/// Settles a counted attempt: a right answer is taken back, a wrong one stays and bans what
/// it calls for.
///
/// # Errors
/// [`FlowError::Store`].
pub(crate) fn settle(services: &Services, attempt: Attempt, right: bool) -> Result<(), FlowError> {
    if right {
        services.regulator.passed(attempt)?;
    } else {
        services.regulator.failed(attempt)?;
    }
    Ok(())
}
