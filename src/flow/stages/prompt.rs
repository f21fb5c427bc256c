//! `prompt`: asks for configured fields and keeps the answers in the execution's
//! `prompt_data`, where later stages find them (an SMS stage takes `phone` from there).

use crate::config::PromptStageConfig;
use crate::flow::{Challenge, Field, FlowError, Input, Outcome, Stage, StageContext};
use async_trait::async_trait;

pub struct Prompt {
    pub cfg: PromptStageConfig,
}

#[async_trait]
impl Stage for Prompt {
    fn kind(&self) -> &'static str {
        "prompt"
    }

    async fn challenge(&self, cx: &mut StageContext<'_>) -> Result<Challenge, FlowError> {
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
                    cx.exec.prompt_data.get(&f.key).cloned()
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
        Ok(Challenge::new(self.kind(), fields))
    }

    async fn submit(&self, cx: &mut StageContext<'_>, input: &Input) -> Result<Outcome, FlowError> {
        let mut errors = Vec::new();
        let mut values = Vec::new();
        for f in &self.cfg.fields {
            // A hidden field's value is the operator's, never the client's.
            let value = if f.kind == "hidden" {
                f.value.clone().unwrap_or_default()
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
            if f.pattern.as_ref().is_some_and(|re| !re.is_match(&value)) {
                errors.push(f.pattern_message.clone());
                continue;
            }
            values.push((f.key.clone(), value));
        }
        if !errors.is_empty() {
            return Ok(Outcome::Stay(errors));
        }
        cx.exec.prompt_data.extend(values);
        Ok(Outcome::Pass)
    }
}
