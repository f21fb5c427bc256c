//! One run of a flow for one browser: the state persisted between steps.

use super::state::StageState;
use super::StageKind;
use crate::secret::SecretString;
use crate::session::Factors;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The stored format of executions. An execution stored in another format (an older gateway's)
/// does not resume: it ends with [`EXPIRED`], and the user starts again.
pub(crate) const FORMAT: u32 = 2;

/// What a user sees when their execution cannot be read back.
pub const EXPIRED: &str = "This sign-in expired. Start again.";

/// What a user sees when a reload changed (or removed) the flow their sign-in was in.
pub const CHANGED: &str =
    "This sign-in was changed by an administrator while you were in it. Start again.";

/// An execution's state. It is stored under an unguessable id carried in the flow cookie and
/// only ever moves forward: `stage` is the index of the one stage that may be answered, and
/// `state` is what that stage waits for.
#[derive(Serialize, Deserialize)]
pub struct Execution {
    /// The unguessable id the flow cookie carries (not stored inside the record).
    #[serde(skip)]
    pub id: String,
    /// The stored format ([`FORMAT`]); 0 for executions from before it was recorded.
    #[serde(default)]
    pub(crate) format: u32,
    /// The flow's slug.
    pub flow: String,
    /// Where to go when the flow completes; validated before it is stored.
    pub rd: String,
    /// The index in the flow's stages of the one stage that may be answered.
    pub stage: usize,
    /// Unix seconds it started.
    pub created: i64,
    /// Unix seconds after which the store no longer returns it.
    pub expires: i64,
    /// Binds HTML form posts to this execution.
    ///
    /// # Security
    /// Redacted in `Debug`; compare it with [`crate::secret::equal`].
    pub csrf: SecretString,
    /// What the user typed to identify themselves.
    #[serde(default)]
    pub uid: Option<String>,
    /// The account `uid` resolved to, if any. Never shown to the user, so a wrong identifier
    /// and a wrong password look the same.
    #[serde(default)]
    pub user: Option<String>,
    /// Stage kinds passed, in order: the session's `amr`.
    #[serde(default)]
    pub passed: Vec<StageKind>,
    /// RFC 8176 method values earned so far (`pwd`, `otp`, `hwk`, ...), for the session's
    /// `amr` beside the stage kinds; `mfa` is added when the session is issued.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Values collected by prompt stages, for later stages to use.
    #[serde(default)]
    pub prompt_data: BTreeMap<String, String>,
    /// What the current stage waits for; `None` until it is reached.
    #[serde(default, skip_deserializing)]
    pub(crate) state: Option<StageState>,
    /// Set by `user_login`: the session to issue at the end, and for how long (seconds).
    #[serde(default)]
    pub login: Option<i64>,
    /// Per stage, whether the plan made at the first step keeps it (its bindings evaluated
    /// on plan); `None` until the plan is made.
    #[serde(default)]
    pub planned: Option<Vec<bool>>,
    /// Client address the execution was started from (for limits and logs).
    #[serde(default)]
    pub client: String,
    /// The flow's stage names when it started; `None` in executions stored before they were
    /// recorded.
    ///
    /// # Security
    /// `stage` is an index into this list: after a reload that reorders, adds or removes
    /// stages, the same index would name another stage and could step past one never passed.
    /// An execution whose flow no longer has these stages ends instead.
    #[serde(default)]
    pub(crate) stages: Option<Vec<String>>,
    /// The factors proved so far, those carried from a session included.
    #[serde(default)]
    pub factors: Factors,
    /// The session this execution steps up, when it was started by a signed-in user.
    #[serde(default)]
    pub carried: Option<Carried>,
    /// A stage signed the user out (`user_logout`) or deleted them (`user_delete`): the flow
    /// ends without a session, and the portal clears the session cookie.
    #[serde(default)]
    pub signed_out: bool,
    /// Why the stored record could not be read back; such an execution only ends.
    #[serde(skip)]
    pub(crate) spoiled: Option<Spoiled>,
    /// Answers of password fields, handed by a prompt to the `user_write` that follows it in
    /// the same step.
    ///
    /// # Security
    /// Never stored: a password typed into a prompt is never written to the store in the
    /// clear, only as the argon2id hash `user_write` makes of it.
    #[serde(skip)]
    pub(crate) secrets: BTreeMap<String, SecretString>,
    /// The account this execution's `user_write` created. Whoever made it holds it: it
    /// counts as proof for a session of that account (see [`Execution::authenticated`]).
    #[serde(default)]
    pub enrolled: Option<String>,
    /// The invitation an invitation stage accepted for this execution.
    #[serde(default)]
    pub invitation: Option<InvitationUse>,
    /// The invitation token the flow's link carried (`?itoken=`), until an invitation stage
    /// reads it.
    #[serde(default)]
    pub invitation_token: Option<SecretString>,
    /// How many steps claimed this execution in a store several gateways share (see
    /// [`super::Engine::claim`]): each claim changes the stored bytes, so of two replicas that
    /// loaded the same state only one can claim it. 0 (and not written) until then.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) turn: u64,
    /// The bytes last written to (or read from) the store; `None` while the execution has
    /// never been stored. A step that leaves them unchanged writes nothing.
    #[serde(skip)]
    pub(crate) saved: Option<Vec<u8>>,
    /// Shown but not stored: the execution is still what a fresh start makes of it, so the
    /// flow cookie carries it ([`super::Engine::pending_token`]) and the store holds nothing
    /// until an answer changes it.
    #[serde(skip)]
    pub(crate) held: bool,
}

/// An invitation accepted by an execution: its data, and whether this execution spent it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvitationUse {
    /// The invitation's id.
    pub id: String,
    /// Whether enrolling spends it.
    pub single_use: bool,
    /// Whether this execution already spent it (a single-use one is then gone).
    #[serde(default)]
    pub spent: bool,
    /// What it writes into the account.
    pub fixed: crate::store::InvitationData,
}

/// Why a stored execution could not be read. Holds no value from the record: a serde message
/// may quote one, and the record holds secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Spoiled {
    /// Stored by another format version.
    Format(u32),
    /// The state belongs to another stage than the plan's current one.
    Misplaced,
    /// The record, or its stage state, does not decode: where, and what kind of failure.
    Undecodable {
        part: &'static str,
        category: &'static str,
        line: usize,
        column: usize,
    },
}

impl Spoiled {
    fn of(part: &'static str, e: &serde_json::Error) -> Self {
        let category = match e.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        };
        Spoiled::Undecodable {
            part,
            category,
            line: e.line(),
            column: e.column(),
        }
    }
}

/// What a step-up execution takes from the session it started with. The user is already
/// known (`uid`, `user` are the session's `sub`), identification is skipped, and so is every
/// stage one of these factors satisfies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Carried {
    /// The session replaced (and revoked) once the step-up issues its own.
    pub sid: String,
    /// Its expiry: the new session never outlives the proofs it carries over.
    pub exp: i64,
    /// Its issue time in milliseconds, to find it revoked by a revocation of all the user's
    /// sessions (0 in executions that predate it: any such revocation then ends it).
    #[serde(default)]
    pub iat_ms: i64,
    /// The factors the session proved.
    pub factors: Factors,
    /// The flows the session completed.
    pub flows: Vec<String>,
}

impl Execution {
    /// Whether a stage that proves who the user is has passed in this execution (or in the
    /// session a step-up carries), or this execution created the account it names
    /// (`user_write` in a sign-up: whoever made the account holds it).
    ///
    /// # Security
    /// Setup stages accept a destination the user types (or gave to a prompt) only when this
    /// holds: otherwise anyone could name an account without an address, type their own, and
    /// sign in as it. And no session is issued without it.
    pub fn authenticated(&self) -> bool {
        self.passed.iter().any(|k| k.authenticates())
            || self.enrolled.is_some() && self.enrolled == self.user
    }

    /// Why this execution cannot go on, when it was stored in another format or does not
    /// decode; the engine then ends it with [`EXPIRED`].
    pub(crate) fn spoiled(&self) -> Option<&Spoiled> {
        self.spoiled.as_ref()
    }

    /// Reads a stored execution back. Never fails: a record that does not decode comes back
    /// spoiled, with the flow and return address it names when those can be read, so the
    /// engine can end it with a clear message instead of an error page.
    pub(crate) fn decode(id: &str, flow: &str, bytes: &[u8]) -> Execution {
        let mut value: serde_json::Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => return Self::ruin(id, flow, None, Spoiled::of("record", &e)),
        };
        let state = value
            .as_object_mut()
            .and_then(|o| o.remove("state"))
            .unwrap_or(serde_json::Value::Null);
        let mut exec: Execution = match serde_json::from_value(value.clone()) {
            Ok(e) => e,
            Err(e) => return Self::ruin(id, flow, Some(&value), Spoiled::of("record", &e)),
        };
        exec.id = id.to_string();
        exec.saved = Some(bytes.to_vec());
        if exec.format != FORMAT {
            exec.spoiled = Some(Spoiled::Format(exec.format));
            return exec;
        }
        match serde_json::from_value::<Option<StageState>>(state) {
            Ok(state) => exec.state = state,
            Err(e) => exec.spoiled = Some(Spoiled::of("stage state", &e)),
        }
        exec
    }

    /// An execution that only ends: the flow and `rd` of the record when readable.
    fn ruin(id: &str, flow: &str, value: Option<&serde_json::Value>, why: Spoiled) -> Execution {
        let text = |key: &str| {
            value
                .and_then(|v| v.get(key))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        Execution {
            id: id.to_string(),
            format: FORMAT,
            flow: text("flow").unwrap_or_else(|| flow.to_string()),
            rd: text("rd").unwrap_or_default(),
            stage: 0,
            created: 0,
            expires: 0,
            csrf: SecretString::new(""),
            uid: None,
            user: None,
            passed: Vec::new(),
            methods: Vec::new(),
            prompt_data: BTreeMap::new(),
            state: None,
            login: None,
            planned: None,
            client: String::new(),
            stages: None,
            factors: Factors::NONE,
            carried: None,
            signed_out: false,
            spoiled: Some(why),
            secrets: BTreeMap::new(),
            enrolled: None,
            invitation: None,
            invitation_token: None,
            turn: 0,
            saved: None,
            held: false,
        }
    }

    /// Whether the store holds this execution (it was read from there, or written).
    pub fn stored(&self) -> bool {
        self.saved.is_some()
    }

    /// Whether this execution is shown but held in the flow cookie instead of the store.
    pub fn held(&self) -> bool {
        self.held
    }
}

/// Shows the shape of the execution without its secrets: the CSRF token and codes are
/// redacted by their types, prompt answers (a prompt may ask for a password) show only keys.
impl std::fmt::Debug for Execution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execution")
            .field("id", &self.id)
            .field("format", &self.format)
            .field("flow", &self.flow)
            .field("rd", &self.rd)
            .field("stage", &self.stage)
            .field("expires", &self.expires)
            .field("csrf", &self.csrf)
            .field("uid", &self.uid)
            .field("user", &self.user)
            .field("passed", &self.passed)
            .field("prompt_keys", &self.prompt_data.keys().collect::<Vec<_>>())
            .field("state", &self.state)
            .field("login", &self.login)
            .field("planned", &self.planned)
            .field("factors", &self.factors)
            .field("carried", &self.carried)
            .field("signed_out", &self.signed_out)
            .field("spoiled", &self.spoiled)
            .field("secret_keys", &self.secrets.keys().collect::<Vec<_>>())
            .field("enrolled", &self.enrolled)
            .field("invitation", &self.invitation.as_ref().map(|i| &i.id))
            .field("invitation_token", &self.invitation_token)
            .finish()
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
