//! In-process tests of the engine and every stage kind, over the in-memory store, the manual
//! clock and recording senders: no server, no sleeps. Each file covers one stage kind or one
//! engine behaviour; [`rig`] builds the world they run in.

mod attacks;
mod captcha;
mod cas;
mod designation;
mod duo;
mod email;
mod engine;
mod enrol;
mod enumeration;
mod held;
mod invite;
mod plain;
mod policies;
mod props;
mod recovery;
mod regulation;
mod rig;
mod sms;
mod strong;
mod unenrol;
mod validate;
mod validate_classes;
