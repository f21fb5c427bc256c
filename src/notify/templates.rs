//! Message templates (plain text and HTML) that operators can replace with files of the same
//! name in their templates folder (`config/templates/` in the example config).

use super::NotifyError;
use crate::secret::SecretString;
use minijinja::Environment;
use std::path::PathBuf;

const BUILTIN: &[(&str, &str)] = &[
    ("email_code.txt", include_str!("templates/email_code.txt")),
    ("email_code.html", include_str!("templates/email_code.html")),
    ("email_link.txt", include_str!("templates/email_link.txt")),
    ("email_link.html", include_str!("templates/email_link.html")),
    ("sms_code.txt", include_str!("templates/sms_code.txt")),
    (
        "email_verify.txt",
        include_str!("templates/email_verify.txt"),
    ),
    (
        "email_verify.html",
        include_str!("templates/email_verify.html"),
    ),
];

/// Renders messages from built-in templates or the operator's replacements.
pub struct MessageTemplates {
    env: Environment<'static>,
}

/// Both parts of a rendered e-mail. They hold the code or link, hence [`SecretString`]s.
#[derive(Debug)]
pub struct RenderedMessage {
    /// The plain-text part.
    pub text: SecretString,
    /// The HTML part.
    pub html: SecretString,
}

impl MessageTemplates {
    /// The built-in message templates, each replaced by a file of the same name in `dir`.
    pub fn new(dir: Option<PathBuf>) -> Self {
        let mut env = Environment::new();
        env.set_loader(crate::templates::loader(dir, BUILTIN));
        Self { env }
    }

    /// Renders one template with `ctx`.
    ///
    /// # Errors
    /// [`NotifyError::Template`] if the template is missing or broken.
    pub fn render(&self, name: &str, ctx: &minijinja::Value) -> Result<String, NotifyError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| NotifyError::Template {
                name: name.to_string(),
                reason: e.to_string(),
            })
    }

    /// The text and HTML parts of e-mail `base` (`email_code` or `email_link`).
    ///
    /// # Errors
    /// As [`MessageTemplates::render`].
    pub fn email(
        &self,
        base: &str,
        ctx: &minijinja::Value,
    ) -> Result<RenderedMessage, NotifyError> {
        Ok(RenderedMessage {
            text: SecretString::new(self.render(&format!("{base}.txt"), ctx)?),
            html: SecretString::new(self.render(&format!("{base}.html"), ctx)?),
        })
    }
}
