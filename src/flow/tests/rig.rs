//! The world flow tests run in: one config with a flow per scenario, an engine over
//! [`TestWorld`] (memory store, manual clock, recording senders), users, and short helpers to
//! view, answer and reload an execution as the portal would.

use crate::clock::Clock;
use crate::config::Config;
use crate::flow::delivery::Pace;
use crate::flow::{Caller, Challenge, Engine, Execution, FlowError, Input, Step, View};
use crate::policy::Judge;
use crate::secret::SecretString;
use crate::store::{Device, DeviceClass, Store, User};
use crate::testing::TestWorld;
use std::path::Path;
use std::sync::Arc;

pub(super) const PASSWORD: &str = "correct horse";
pub(super) const AT: Caller<'static> = Caller {
    client: "192.0.2.7",
    origin: "https://auth.example.test",
    method: "GET",
    headers: &[("User-Agent", "flow-tests")],
};

pub(super) const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
[storage]
path = "/nonexistent/portcullis-flow-tests"
[session]
flow_lifetime = "30m"
[email]
host = "127.0.0.1"
port = 2525
from = "gate@example.test"
[[apps]]
name = "app"
hosts = ["app.example.test"]
upstream = "127.0.0.1:9"
flow = "login"

[[flows]]
slug = "login"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]
[[flows]]
slug = "mfa"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "mfa", "login"]
[[flows]]
slug = "mfa_skip"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "mfa_skip", "login"]
[[flows]]
slug = "mfa_deny"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "mfa_deny", "login"]
[[flows]]
slug = "setup"
title = "Add email"
designation = "authentication"
stages = ["identify", "password", "email_setup", "login"]
[[flows]]
slug = "email_first"
title = "Sign in by email"
designation = "authentication"
stages = ["identify", "email_setup", "login"]
[[flows]]
slug = "link"
title = "Sign in by link"
designation = "authentication"
stages = ["identify", "password", "link_setup", "login"]
[[flows]]
slug = "phone"
title = "Add a phone"
designation = "authentication"
stages = ["identify", "password", "sms", "login"]
[[flows]]
slug = "phone_first"
title = "Add a phone"
designation = "authentication"
stages = ["identify", "sms", "login"]
[[flows]]
slug = "ask"
title = "Your details"
designation = "authentication"
stages = ["identify", "password", "ask", "sms", "login"]
[[flows]]
slug = "refuse"
title = "Sign in"
designation = "authentication"
stages = ["identify", "no"]
[[flows]]
slug = "nothing_proved"
title = "Sign in"
designation = "authentication"
stages = ["identify", "login"]

[stages.identify]
kind = "identification"
user_fields = ["username", "email"]
[stages.password]
kind = "password"
failed_attempts_before_cancel = 3
[stages.login]
kind = "user_login"
[stages.no]
kind = "deny"
deny_message = "Not today."
[stages.ask]
kind = "prompt"
fields = [
  { key = "nickname", label = "Nickname", pattern = "^[a-z]+$", pattern_message = "Lower-case letters only." },
  { key = "phone", label = "Phone", type = "tel", required = false },
  { key = "team", label = "Team", type = "hidden", value = "ops" },
]
[stages.email_setup]
kind = "authenticator_email"
friendly_name = "Work email"
max_challenges_sent = 3
max_allowed_attempts = 3
token_expiry = "10m"
[stages.link_setup]
kind = "authenticator_email"
friendly_name = "Work email"
mode = "link"
link_ttl = "2m"
[stages.sms]
kind = "authenticator_sms"
friendly_name = "Phone"
provider = "generic"
url = "http://127.0.0.1:9/sms"
from_number = "+41790000000"
resend_cooldown = "30s"
token_expiry = "4m"
limit_per_number = 4
allowed_prefixes = ["+41"]
max_challenges_sent = 10
[stages.mfa]
kind = "authenticator_validate"
device_classes = ["email", "sms"]
not_configured_action = "configure"
configure_stage = "email_setup"
[stages.mfa_skip]
kind = "authenticator_validate"
device_classes = ["email"]
not_configured_action = "skip"
[stages.mfa_deny]
kind = "authenticator_validate"
device_classes = ["email"]
not_configured_action = "deny"
"#;

/// An engine and the world it runs in.
pub(super) struct Rig {
    pub(super) engine: Engine,
    pub(super) world: TestWorld,
}

impl Rig {
    pub(super) fn new() -> Rig {
        Rig::with("", None)
    }

    /// The test config plus `extra` (more flows, stages, policies), policies judged by `judge`
    /// (the default evaluator when `None`).
    pub(super) fn with(extra: &str, judge: Option<Arc<dyn Judge>>) -> Rig {
        let config = Rig::config(extra).unwrap_or_else(|e| panic!("test config refused: {e}"));
        let mut world = TestWorld::for_config(&config);
        if let Some(judge) = judge {
            world.services.policies = judge;
        }
        let mut engine = Engine::new(&config, world.services.clone());
        engine.pace = std::sync::Arc::new(Pace::instant());
        Rig { engine, world }
    }

    /// The test config plus `extra`, as loading would make it.
    pub(super) fn config(extra: &str) -> Result<Config, crate::config::ConfigError> {
        let text = format!("{CONFIG}\n{extra}");
        Config::from_toml(&text, Path::new("flow-tests.toml"), std::iter::empty())
    }

    /// Adds an active user with [`PASSWORD`] and `email`.
    pub(super) async fn user(&self, name: &str, email: Option<&str>) -> User {
        let mut u = User::new(name, 0);
        u.email = email.map(str::to_string);
        let hash = self
            .world
            .services
            .passwords
            .hash(SecretString::new(PASSWORD))
            .await;
        u.password_hash = Some(hash.unwrap_or_else(|e| panic!("hash: {e}")));
        self.world
            .store
            .put_user(&u)
            .unwrap_or_else(|e| panic!("{e}"));
        u
    }

    pub(super) fn device(&self, user: &str, id: &str, class: DeviceClass, address: &str) {
        let stage = match class {
            DeviceClass::Email => "email_setup",
            DeviceClass::Sms => "sms",
            other => panic!("the rig enrols no {other:?} device"),
        };
        let d = Device {
            id: id.into(),
            username: user.into(),
            class,
            name: format!("{} {id}", class.as_str()),
            address: address.into(),
            address_hash: None,
            stage: stage.into(),
            created: self.world.clock.now(),
            last_used: None,
            secret: None,
        };
        self.world
            .store
            .put_device(&d)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub(super) fn devices(&self, user: &str) -> Vec<Device> {
        self.world
            .store
            .devices(user)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A new execution of `flow`, shown once (and so stored).
    pub(super) async fn start(&self, flow: &str) -> (Execution, View) {
        let mut exec = self
            .engine
            .start(flow, "https://app.example.test/".into(), AT.client)
            .unwrap_or_else(|e| panic!("start: {e}"));
        let view = self.view(&mut exec).await;
        (exec, view)
    }

    pub(super) async fn view(&self, exec: &mut Execution) -> View {
        self.engine
            .view(exec, AT)
            .await
            .unwrap_or_else(|e| panic!("view: {e}"))
    }

    /// Answers the current step with `fields`.
    pub(super) async fn post(&self, exec: &mut Execution, fields: &[(&str, &str)]) -> View {
        self.try_post(exec, fields)
            .await
            .unwrap_or_else(|e| panic!("post: {e}"))
    }

    pub(super) async fn try_post(
        &self,
        exec: &mut Execution,
        fields: &[(&str, &str)],
    ) -> Result<View, FlowError> {
        let input: Input = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.engine.submit(exec, input, AT).await
    }

    /// The execution as the next request finds it in the store.
    pub(super) fn reload(&self, exec: &Execution) -> Option<Execution> {
        self.engine
            .resume(&exec.id, &exec.flow)
            .unwrap_or_else(|e| panic!("resume: {e}"))
    }

    /// Identification then password for `name`: the execution waits at the third stage.
    pub(super) async fn signed_in_to(&self, flow: &str, name: &str) -> (Execution, View) {
        let (mut exec, _) = self.start(flow).await;
        self.post(&mut exec, &[("uid", name)]).await;
        let view = self.post(&mut exec, &[("password", PASSWORD)]).await;
        (exec, view)
    }

    /// The code in the last e-mail sent.
    pub(super) fn mailed_code(&self) -> String {
        let sent = self.world.email.sent();
        let Some(last) = sent.last() else {
            panic!("no e-mail was sent");
        };
        let text = last.text.expose();
        digits(text).unwrap_or_else(|| panic!("no code in {text:?}"))
    }

    /// The link in the last e-mail sent.
    pub(super) fn mailed_link_token(&self) -> SecretString {
        let sent = self.world.email.sent();
        let Some(last) = sent.last() else {
            panic!("no e-mail was sent");
        };
        let text = last.text.expose();
        let Some((_, rest)) = text.split_once("token=") else {
            panic!("no link in {text:?}");
        };
        SecretString::new(
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect::<String>(),
        )
    }

    pub(super) fn texted_code(&self) -> String {
        let sent = self.world.sms.sent();
        let Some(last) = sent.last() else {
            panic!("no SMS was sent");
        };
        last.token.expose().to_string()
    }
}

fn digits(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .map(str::to_string)
}

/// A code that is not `code`.
pub(super) fn other_than(code: &str) -> String {
    if code == "000000" {
        "111111".into()
    } else {
        "000000".into()
    }
}

/// The challenge a view shows; panics on any other step.
pub(super) fn challenge(view: &View) -> &Challenge {
    match &view.step {
        Step::Challenge { challenge, .. } => challenge,
        other => panic!("expected a challenge, got {other:?}"),
    }
}

pub(super) fn component(view: &View) -> &str {
    &challenge(view).component
}

pub(super) fn field_names(view: &View) -> Vec<&str> {
    challenge(view)
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .collect()
}

/// The message of an ended view; panics on any other step.
pub(super) fn ended(view: &View) -> &str {
    match &view.step {
        Step::Ended { message } => message,
        other => panic!("expected the end, got {other:?}"),
    }
}

/// The `amr` of a completed view's session; panics on any other step.
pub(super) fn signed_in(view: &View) -> Vec<String> {
    match &view.step {
        Step::Done {
            login: Some(login), ..
        } => login.amr.clone(),
        other => panic!("expected a session, got {other:?}"),
    }
}
