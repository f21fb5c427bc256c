//! The account-lifecycle stages' options (authentik's names): `user_write`, which writes what
//! a flow gathered to the pending user, creating one when needed.

use super::error::Problem;
use super::{FlowConfig, PasswordPolicy, StageConfig};
use serde::Deserialize;
use std::collections::BTreeMap;

type Checked<T> = Result<T, Problem>;

/// `kind = "user_write"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUserWriteStage {
    pub user_creation_mode: Option<String>,
    pub create_users_as_inactive: Option<bool>,
    pub create_users_group: Option<String>,
}

/// When `user_write` creates an account (authentik's `user_creation_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserCreationMode {
    /// Write to the pending user; create one when there is none (the default).
    #[default]
    CreateWhenRequired,
    /// Always create a new account, even when a user is pending.
    AlwaysCreate,
    /// Only ever write to the pending user; without one the flow ends.
    NeverCreate,
}

impl UserCreationMode {
    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            UserCreationMode::CreateWhenRequired => "create_when_required",
            UserCreationMode::AlwaysCreate => "always_create",
            UserCreationMode::NeverCreate => "never_create",
        }
    }
}

/// A `user_write` stage: writes `username`, `email`, `name`, `phone`, `password` and
/// `attributes.<key>` from the flow's prompts (and an invitation's fixed data) to the pending
/// user.
#[derive(Debug, Clone)]
pub struct UserWriteStageConfig {
    /// When an account is created.
    pub user_creation_mode: UserCreationMode,
    /// New accounts start disabled (an email stage with `activate_user_on_success`, or an
    /// operator, enables them).
    pub create_users_as_inactive: bool,
    /// A group every account this stage creates joins.
    pub create_users_group: Option<String>,
    /// `[password]`: what a password written here must be, besides any policy the prompt
    /// that asked for it binds.
    pub password_policy: PasswordPolicy,
}

/// The `user_write` stage `name` from its raw options.
pub(super) fn user_write_stage(
    name: &str,
    raw: &RawUserWriteStage,
    password_policy: PasswordPolicy,
) -> Checked<UserWriteStageConfig> {
    let path = |key: &str| format!("stages.{name}.{key}");
    let user_creation_mode = match raw.user_creation_mode.as_deref() {
        None | Some("create_when_required") => UserCreationMode::CreateWhenRequired,
        Some("always_create") => UserCreationMode::AlwaysCreate,
        Some("never_create") => UserCreationMode::NeverCreate,
        Some(other) => {
            return Err(Problem::new(
                path("user_creation_mode"),
                format!("`{other}` is not one of \"create_when_required\", \"always_create\", \"never_create\""),
            ))
        }
    };
    if let Some(group) = &raw.create_users_group {
        // Groups travel joined with commas in `Remote-Groups`.
        if group.is_empty()
            || group.contains(',')
            || group.chars().any(char::is_control)
            || group.trim() != group
        {
            return Err(Problem::new(
                path("create_users_group"),
                "must be a group name without commas, control characters or surrounding spaces",
            ));
        }
    }
    Ok(UserWriteStageConfig {
        user_creation_mode,
        create_users_as_inactive: raw.create_users_as_inactive.unwrap_or(false),
        create_users_group: raw.create_users_group.clone(),
        password_policy,
    })
}

/// The prompt key `user_write` takes the new password from.
pub const PASSWORD_KEY: &str = "password";

/// Checks the flows that ask for a password in a prompt: a prompt's `password` answer is
/// handed only to a `user_write` that follows it directly (it is never stored in the sign-in),
/// so any other stage in between would lose it.
pub(super) fn cross_check(
    stages: &BTreeMap<String, StageConfig>,
    flows: &[FlowConfig],
) -> Checked<()> {
    for (name, stage) in stages {
        let StageConfig::Identification {
            enrollment_flow: Some(slug),
            ..
        } = stage
        else {
            continue;
        };
        let designation = flows
            .iter()
            .find(|f| f.slug == *slug)
            .map(|f| f.designation);
        if designation != Some(super::Designation::Enrollment) {
            return Err(Problem::new(
                format!("stages.{name}.enrollment_flow"),
                format!("`{slug}` must name a flow with designation = \"enrollment\""),
            ));
        }
    }
    for (i, f) in flows.iter().enumerate() {
        for (j, name) in f.stages.iter().enumerate() {
            let Some(StageConfig::Prompt(p)) = stages.get(name) else {
                continue;
            };
            let asks = p
                .fields
                .iter()
                .any(|field| field.key == PASSWORD_KEY && field.kind == "password");
            let next = f.stages.get(j + 1).and_then(|n| stages.get(n));
            if asks && !matches!(next, Some(StageConfig::UserWrite(_))) {
                return Err(Problem::new(
                    format!("flows[{i}].stages[{}]", j + 1),
                    format!(
                        "the prompt `{name}` asks for a `password`: put a user_write stage right after it (a typed password is never stored in the sign-in, only handed to the next stage)"
                    ),
                ));
            }
        }
    }
    Ok(())
}
