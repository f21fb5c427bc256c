//! `[settings]`: the signed-in user's settings page (`/.portcullis/settings`): which flow edits
//! the profile, which flow confirms a sensitive change, and how fresh that confirmation must be.

use super::error::Problem;
use super::{Designation, FlowConfig};
use serde::Deserialize;
use std::time::Duration;

type Checked<T> = Result<T, Problem>;

/// `[settings]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    /// A `stage_configuration` flow (a prompt and a `user_write`) behind the profile's "Edit".
    pub profile_flow: Option<String>,
    /// An `authentication` flow that confirms it is the user before a factor is removed.
    pub reauthentication_flow: Option<String>,
    /// How recent the sign-in must be for a removal to need no confirmation (default 5m).
    pub max_age: Option<String>,
}

/// `[settings]`, validated.
#[derive(Debug, Clone)]
pub struct SettingsConfig {
    /// The flow behind the profile's "Edit" link; none: no link.
    pub profile_flow: Option<String>,
    /// The flow a user goes through again before removing a factor when their sign-in is older
    /// than `max_age`; `None`: the flow of the app (or, on the auth host, of the first app).
    pub reauthentication_flow: Option<String>,
    /// A sign-in (or confirmation) at most this old lets the user remove a factor.
    pub max_age: Duration,
}

impl Default for SettingsConfig {
    fn default() -> Self {
        Self {
            profile_flow: None,
            reauthentication_flow: None,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// Five minutes: long enough to finish the change, short enough that an unattended browser
/// cannot strip factors.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// Checks `[settings]` against the flows.
pub(super) fn settings(raw: &RawSettings, flows: &[FlowConfig]) -> Checked<SettingsConfig> {
    let flow = |key: &str, slug: &Option<String>, want: Designation| -> Checked<Option<String>> {
        let Some(slug) = slug else {
            return Ok(None);
        };
        let path = format!("settings.{key}");
        let Some(f) = flows.iter().find(|f| &f.slug == slug) else {
            return Err(Problem::new(
                path,
                format!("no flow with slug `{slug}` under [[flows]]"),
            ));
        };
        if f.designation != want {
            return Err(Problem::new(
                path,
                format!(
                    "flow `{slug}` is designated `{}`; this needs a `{}` flow",
                    f.designation.as_str(),
                    want.as_str()
                ),
            ));
        }
        Ok(Some(slug.clone()))
    };
    let max_age = match &raw.max_age {
        Some(text) => super::duration::parse(text)
            .map_err(|reason| Problem::new("settings.max_age", reason))?,
        None => DEFAULT_MAX_AGE,
    };
    Ok(SettingsConfig {
        profile_flow: flow(
            "profile_flow",
            &raw.profile_flow,
            Designation::StageConfiguration,
        )?,
        reauthentication_flow: flow(
            "reauthentication_flow",
            &raw.reauthentication_flow,
            Designation::Authentication,
        )?,
        max_age,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(settings: &str) -> Result<Config, String> {
        let text = format!(
            r#"
[[apps]]
name = "demo"
hosts = ["localhost"]
upstream = "builtin:whoami"
flow = "signin"
[[flows]]
slug = "signin"
designation = "authentication"
stages = ["id", "login"]
[[flows]]
slug = "profile"
designation = "stage_configuration"
stages = ["id", "login"]
[stages.id]
kind = "identification"
[stages.login]
kind = "user_login"
{settings}
"#
        );
        Config::from_toml(&text, std::path::Path::new("t.toml"), std::iter::empty())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn settings_name_existing_flows_of_the_right_designation() {
        let cfg = load("").expect("no [settings] at all");
        assert_eq!(cfg.settings.max_age.as_secs(), 300);
        assert_eq!(cfg.settings.profile_flow, None);
        let cfg = load(
            "[settings]\nprofile_flow = \"profile\"\nreauthentication_flow = \"signin\"\nmax_age = \"90s\"",
        )
        .expect("valid");
        assert_eq!(cfg.settings.profile_flow.as_deref(), Some("profile"));
        assert_eq!(
            cfg.settings.reauthentication_flow.as_deref(),
            Some("signin")
        );
        assert_eq!(cfg.settings.max_age.as_secs(), 90);
        let refused = [
            (
                "profile_flow = \"nope\"",
                "settings.profile_flow",
                "no flow",
            ),
            (
                "profile_flow = \"signin\"",
                "settings.profile_flow",
                "stage_configuration",
            ),
            (
                "reauthentication_flow = \"profile\"",
                "settings.reauthentication_flow",
                "authentication",
            ),
            ("max_age = \"0s\"", "settings.max_age", "longer than zero"),
            ("max_age = \"soon\"", "settings.max_age", "not a duration"),
            ("fresh_for = \"5m\"", "fresh_for", "unknown"),
        ];
        for (line, path, reason) in refused {
            let err = load(&format!("[settings]\n{line}")).expect_err(line);
            assert!(err.contains(path) && err.contains(reason), "{line}: {err}");
        }
    }
}
