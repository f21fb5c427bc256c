//! The embedded flow engine: ordered stages, executions persisted between steps, and one
//! [`View`] per step that the HTML page and the JSON API both render.

mod challenge;
mod engine;
mod error;
mod execution;
pub mod otp;
pub mod phone;
mod stage;
pub mod stages;

pub use challenge::{Action, Challenge, Choice, Field};
pub use engine::{Caller, Engine, FlowPlan, Login, Step, View};
pub use error::FlowError;
pub use execution::Execution;
pub use stage::{EmailChannel, Input, Outcome, Services, SmsChannel, Stage, StageContext};
