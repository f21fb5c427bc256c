//! The config file as written: serde structs that mirror the TOML, nothing validated yet.
//!
//! Every table denies unknown keys so a typo is an error at start, not a silently ignored option.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub session: RawSession,
    #[serde(default)]
    pub headers: RawHeaders,
    #[serde(default)]
    pub passwords: RawPasswords,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub ui: RawUi,
    #[serde(default)]
    pub apps: Vec<RawApp>,
    #[serde(default)]
    pub flows: Vec<RawFlow>,
    #[serde(default)]
    pub stages: BTreeMap<String, RawStage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    /// Worker threads for the proxy; 0 means one per core.
    #[serde(default)]
    pub threads: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            threads: 0,
        }
    }
}

fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:9000".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    #[serde(default = "default_storage_path")]
    pub path: String,
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            path: default_storage_path(),
        }
    }
}

fn default_storage_path() -> String {
    "data/portcullis.db".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    pub cookie_name: Option<String>,
    pub lifetime: Option<String>,
    pub cookie_domain: Option<String>,
    pub issuer: Option<String>,
    pub flow_lifetime: Option<String>,
    pub keys_path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    pub user: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub groups: Option<String>,
    /// Further header names that carry identity somewhere in the operator's stack; stripped from
    /// every client request like the four above.
    #[serde(default)]
    pub strip: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPasswords {
    pub memory_kib: Option<u32>,
    pub iterations: Option<u32>,
    pub parallelism: Option<u32>,
    pub max_concurrent_hashes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub socket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUi {
    pub site_title: Option<String>,
    pub templates: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    pub name: String,
    pub hosts: Vec<String>,
    pub upstream: RawUpstream,
    pub flow: String,
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    #[serde(default)]
    pub bypass: Vec<String>,
}

/// One address or several (round-robin).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawUpstream {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlow {
    pub slug: String,
    pub title: Option<String>,
    pub designation: String,
    pub stages: Vec<String>,
}

/// A stage definition; `kind` picks the variant so each kind only accepts its own options.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawStage {
    Identification {
        #[serde(default)]
        user_fields: Option<Vec<String>>,
    },
    Password {
        #[serde(default)]
        failed_attempts_before_cancel: Option<u32>,
    },
    UserLogin {
        #[serde(default)]
        session_duration: Option<String>,
    },
    Deny {
        #[serde(default)]
        deny_message: Option<String>,
    },
}
