//! The embedded flow engine: ordered stages, executions persisted between steps, and one
//! [`View`] per step that the HTML page and the JSON API both render.
//!
//! A step is a typed state machine: the current stage's [`state::StageState`] says what it
//! waits for; the stage consumes it with the user's answer and returns the next state plus
//! effects (send a code, check a code, store a device) that the engine carries out once, in
//! order. Challenges are pure renderings of the state. The flow sees the world only through
//! [`Services`]: no HTTP server, database, mail or HTTP-client crate is imported here.

mod address;
mod amr;
mod challenge;
mod code;
mod delivery;
mod drive;
pub(crate) mod duo;
mod engine;
mod error;
mod execution;
mod kind;
pub mod otp;
mod outbox;
pub(crate) mod pending;
pub(crate) mod phone;
pub(crate) mod policy;
pub(crate) mod recovery;
pub(crate) mod regulated;
mod requester;
mod stage;
pub(crate) mod stages;
mod state;
mod step;
#[cfg(test)]
mod tests;
pub mod totp;
pub(crate) mod webauthn;

pub use challenge::{Action, CaptchaWidget, Challenge, Choice, Field, Link, TotpEnrolment};
pub use engine::{Caller, Engine, FlowPlan, Login, Step, View};
pub use error::FlowError;
pub use execution::{Carried, Execution, InvitationUse, CHANGED, EXPIRED};
pub use kind::StageKind;
pub use pending::MAX_RD_BYTES;
pub use policy::{check_plan, user_facts, PlanCheck, StageCheck, POLICY_HEADERS};
pub use requester::Requester;
pub use stage::{EmailChannel, Input, Services, SessionRevoker, SmsChannel};
