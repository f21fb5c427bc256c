//! The two faces of an engine step: an HTML page and a JSON document, both rendered from the
//! same [`crate::flow::View`]. Also the gateway's own pages (errors, sign-out, the demo app).

mod json;

pub use json::{challenge_json, ended_json, redirect_json};

use crate::config::UiConfig;
use crate::flow::Challenge;
use minijinja::{context, Environment};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("template `{name}`: {source}")]
pub struct UiError {
    name: &'static str,
    #[source]
    source: minijinja::Error,
}

const BUILTIN: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("flow.html", include_str!("templates/flow.html")),
    ("message.html", include_str!("templates/message.html")),
    ("logout.html", include_str!("templates/logout.html")),
    ("whoami.html", include_str!("templates/whoami.html")),
    ("link.html", include_str!("templates/link.html")),
];

/// Renders pages. Templates in the configured folder replace built-in ones of the same name.
pub struct Ui {
    env: Environment<'static>,
    site_title: String,
}

/// A link under a message.
pub struct Link<'a> {
    pub href: &'a str,
    pub label: &'a str,
}

impl Ui {
    pub fn new(cfg: &UiConfig) -> Self {
        let mut env = Environment::new();
        let dir: Option<PathBuf> = cfg.templates.clone();
        env.set_loader(crate::templates::loader(dir, BUILTIN));
        Self {
            env,
            site_title: cfg.site_title.clone(),
        }
    }

    pub fn site_title(&self) -> &str {
        &self.site_title
    }

    fn render(&self, name: &'static str, ctx: minijinja::Value) -> Result<String, UiError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|source| UiError { name, source })
    }

    /// A stage's challenge as a form posting back to `action`.
    ///
    /// # Errors
    /// [`UiError`] if an operator's replacement template is broken.
    pub fn flow_page(
        &self,
        title: &str,
        stage: &str,
        challenge: &Challenge,
        csrf: &str,
        action: &str,
    ) -> Result<String, UiError> {
        let fields: Vec<_> = challenge
            .fields
            .iter()
            .map(|f| {
                context! {
                    name => f.name, kind => f.kind, label => f.label, required => f.required,
                    value => f.value, autocomplete => f.autocomplete, options => f.options,
                    placeholder => f.placeholder,
                }
            })
            .collect();
        let submit_label = match challenge.component.as_str() {
            "password" => "Sign in",
            "authenticator_email" | "authenticator_validate"
                if challenge.fields.iter().any(|f| f.name == "code") =>
            {
                "Verify"
            }
            _ => "Continue",
        };
        self.render(
            "flow.html",
            context! {
                site_title => self.site_title, title, stage, challenge, csrf, action,
                fields, submit_label,
            },
        )
    }

    /// A page with a heading, a sentence and an optional link: errors, denials, sign-out.
    pub fn message(&self, heading: &str, message: &str, link: Option<Link<'_>>) -> String {
        let link = link.map(|l| context! { href => l.href, label => l.label });
        self.render(
            "message.html",
            context! { site_title => self.site_title, heading, message, link },
        )
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "message template failed; using plain text");
            format!("{heading}\n\n{message}\n")
        })
    }

    /// # Errors
    /// [`UiError`] if a replacement template is broken.
    pub fn logout_page(&self, user: &str, csrf: &str) -> Result<String, UiError> {
        self.render(
            "logout.html",
            context! { site_title => self.site_title, user, csrf },
        )
    }

    /// The page a magic link opens: a button that confirms it.
    pub fn link_confirm(&self, token: &str) -> String {
        self.render(
            "link.html",
            context! { site_title => self.site_title, token },
        )
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "link template failed");
            self.message("Confirm sign-in", "This page could not be shown.", None)
        })
    }

    /// The built-in demo upstream: shows the request and the headers it arrived with.
    ///
    /// # Errors
    /// [`UiError`] if a replacement template is broken.
    pub fn whoami(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        user: Option<&str>,
        name: Option<&str>,
    ) -> Result<String, UiError> {
        self.render(
            "whoami.html",
            context! { site_title => self.site_title, method, path, headers, user, name },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Field;

    #[test]
    fn flow_page_escapes_and_carries_csrf() {
        let ui = Ui::new(&UiConfig {
            site_title: "T".into(),
            templates: None,
        });
        let mut c = Challenge::new(
            "identification",
            vec![Field::new("uid", "text", "Username")],
        );
        c.errors.push("<script>".into());
        let html = ui
            .flow_page("Sign in", "identify", &c, "tok", "/x")
            .unwrap();
        assert!(html.contains("name=\"csrf_token\" value=\"tok\""));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("<label for=\"f-uid\">Username</label>"));
    }
}
