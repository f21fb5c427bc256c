//! `prompt`: asks for configured fields and keeps the answers in the execution's
//! `prompt_data`, where later stages find them (an SMS stage takes `phone` from there).
//! Answers to `password` fields are never kept there: they are judged by the prompt's
//! policies, then handed to the `user_write` that follows in the same step, and dropped.

use crate::config::PromptStageConfig;
use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Next, Stage, Transition};
use crate::flow::{Challenge, Field, FlowError, Input, StageKind};
use crate::secret::SecretString;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub(crate) struct Prompt {
    pub(crate) cfg: PromptStageConfig,
}

/// What a prompt waits for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum PromptState {
    /// Its configured fields; `kept` holds the answers of a refused submission that the form
    /// shows again (never a password field's).
    Fields {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        kept: Vec<(String, String)>,
    },
}

#[async_trait]
impl Stage for Prompt {
    fn kind(&self) -> StageKind {
        StageKind::Prompt
    }

    async fn enter(&self, _cx: &Cx<'_>) -> Result<Transition, FlowError> {
        Ok(Transition::stay(PromptState::Fields { kept: Vec::new() }))
    }

    /// The empty form (one shown again after a refusal keeps answers).
    fn fresh(&self, state: &StageState) -> bool {
        matches!(state, StageState::Prompt(PromptState::Fields { kept }) if kept.is_empty())
    }

    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError> {
        let StageState::Prompt(PromptState::Fields { kept }) = state else {
            return Err(mismatch(cx));
        };
        let fields = self
            .cfg
            .fields
            .iter()
            .map(|f| {
                let mut field = Field::new(&f.key, &f.kind, &f.label);
                field.required = f.required && f.kind != "hidden";
                field.placeholder = f.placeholder.clone();
                field.value = if f.kind == "hidden" {
                    f.value.clone()
                } else if f.kind != "password" {
                    kept.iter()
                        .find(|(k, _)| *k == f.key)
                        .map(|(_, v)| v.clone())
                        .or_else(|| cx.exec.prompt_data.get(&f.key).cloned())
                } else {
                    None
                };
                field.autocomplete = match f.kind.as_str() {
                    "tel" => "tel",
                    "email" => "email",
                    "password" => "new-password",
                    _ => "off",
                };
                field
            })
            .collect();
        Ok(Challenge::new(self.kind().as_str(), fields))
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        _state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let mut errors = Vec::new();
        let mut values = Vec::new();
        for f in &self.cfg.fields {
            // A hidden field's value is the operator's, never the client's.
            let value = if f.kind == "hidden" {
                f.value.clone().unwrap_or_default()
            } else if f.kind == "password" {
                // Taken exactly as typed: the password stage compares it untrimmed later.
                input.get(&f.key).cloned().unwrap_or_default()
            } else {
                input
                    .get(&f.key)
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            if value.is_empty() {
                if f.required && f.kind != "hidden" {
                    errors.push(format!("{} is required.", f.label));
                }
                continue;
            }
            if value.len() > 1024 {
                errors.push(format!("{} is too long.", f.label));
                continue;
            }
            // The pattern matches the whole value (anchored at config load, as in HTML).
            if f.pattern.as_ref().is_some_and(|re| !re.is_match(&value)) {
                errors.push(f.pattern_message.clone());
                continue;
            }
            // The browser's own checks of `type` are advice; a client may send anything.
            match f.kind.as_str() {
                "email" if !is_email(&value) => {
                    errors.push(format!("{} is not an email address.", f.label));
                    continue;
                }
                "tel" if !is_tel(&value) => {
                    errors.push(format!("{} is not a phone number.", f.label));
                    continue;
                }
                _ => {}
            }
            values.push((f.key.clone(), value));
        }
        // Shown again after a refusal: what was typed, except passwords and what broke a rule.
        let kept = || {
            let state = PromptState::Fields {
                kept: values
                    .iter()
                    .filter(|(k, _)| {
                        self.cfg
                            .fields
                            .iter()
                            .any(|f| f.key == *k && f.kind != "password" && f.kind != "hidden")
                    })
                    .cloned()
                    .collect(),
            };
            StageState::from(state)
        };
        if let Some(inv) = &cx.exec.invitation {
            // The invitation's data wins: a different value is refused, not silently replaced.
            for (k, v) in &values {
                let Some(fixed) = super::invitation::fixed_value(&inv.fixed, k) else {
                    continue;
                };
                let same = if k == "email" {
                    v.trim().to_lowercase() == fixed.trim().to_lowercase()
                } else {
                    v == fixed
                };
                if !same {
                    let label = self
                        .cfg
                        .fields
                        .iter()
                        .find(|f| f.key == *k)
                        .map_or(k.as_str(), |f| f.label.as_str());
                    errors.push(format!("{label} is set by your invitation: {fixed}"));
                }
            }
        }
        let typed = |key: &str| values.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        if let (Some(pw), Some(repeat)) = (typed(PASSWORD), typed(PASSWORD_REPEAT)) {
            if !crate::secret::equal(pw.as_bytes(), repeat.as_bytes()) {
                errors.push(PASSWORDS_DIFFER.into());
            }
        }
        if !errors.is_empty() {
            return Ok(Transition::to(Next::Stay(kept(), errors)));
        }
        let policies = &self.cfg.validation_policies;
        if !policies.is_empty() {
            let facts = cx.facts(&values)?;
            let verdict = cx.services.policies.judge(policies, &facts).await;
            if !verdict.passed {
                tracing::info!(stage = %cx.name, outcomes = ?verdict.outcomes, "prompt answers refused by its validation policies");
                return Ok(Transition::to(Next::Stay(kept(), verdict.messages)));
            }
        }
        let (secrets, values): (Vec<_>, Vec<_>) = values.into_iter().partition(|(k, _)| {
            self.cfg
                .fields
                .iter()
                .any(|f| f.key == *k && f.kind == "password")
        });
        let secrets = secrets
            .into_iter()
            .map(|(k, v)| (k, SecretString::new(v)))
            .collect();
        Ok(Transition::pass()
            .and(Effect::Remember(values))
            .and(Effect::Keep(secrets)))
    }
}

/// The answer `user_write` takes a new password from.
const PASSWORD: &str = crate::config::PASSWORD_KEY;
/// Must equal [`PASSWORD`] when the prompt asks for both (authentik's `password_repeat`).
const PASSWORD_REPEAT: &str = "password_repeat";
/// Said when the two differ (authentik's words).
pub(crate) const PASSWORDS_DIFFER: &str = "Passwords don't match.";

/// An address as HTML's `type="email"` means it, loosely: one `@` with text on both sides and
/// no whitespace. Deliverability is the email stage's business.
pub(crate) fn is_email(v: &str) -> bool {
    match v.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !v.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// A number as people type it: digits with the usual separators (space, `-`, `.`, `(`, `)`,
/// `/`), a `+` only in front, and 3 to 15 digits (E.164's maximum). Whether it can receive a
/// text is the SMS stage's check.
fn is_tel(v: &str) -> bool {
    let body = v.strip_prefix('+').unwrap_or(v);
    let digits = body.bytes().filter(u8::is_ascii_digit).count();
    (3..=15).contains(&digits)
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'.' | b'(' | b')' | b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_needs_one_at_with_text_on_both_sides_and_no_space() {
        assert!(is_email("a@b"));
        assert!(is_email("alice@example.com"));
        for bad in [
            "alice",
            "@example.com",
            "alice@",
            "a@b@c",
            "al ice@example.com",
            "a@b\tc",
        ] {
            assert!(!is_email(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn tel_takes_typed_separators_but_no_letters() {
        assert!(is_tel("+41 (79) 123-45.67"));
        assert!(is_tel("079 123 45 67"));
        for bad in [
            "",
            "+",
            "12",
            "+41 79 abc",
            "41+79123",
            "+1234567890123456",
            "1\n2\n3",
        ] {
            assert!(!is_tel(bad), "{bad:?} accepted");
        }
    }
}
