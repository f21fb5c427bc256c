//! `PORTCULLIS_<TABLE>__<KEY>` environment overrides laid over the file before it is
//! deserialised.
//!
//! What is reachable:
//! - every key of every table, nested tables included: `PORTCULLIS_SESSION__LIFETIME=8h`,
//!   `PORTCULLIS_STAGES__MFA__PASSWORD=...` (`[stages.mfa] password`);
//! - entries of arrays of tables by index: `PORTCULLIS_APPS__0__HOSTS=a.test,b.test`,
//!   `PORTCULLIS_SERVER__CERTIFICATES__0__KEY=/run/secrets/tls.key`; the index right after the
//!   last entry adds one (all its required keys must then be given);
//! - lists: `a:1,b:2`, or a TOML or JSON array `["a:1","b:2"]`; an empty value is an empty list;
//!   one entry of a list the file has, by index (`PORTCULLIS_SERVER__LISTEN__1=...`);
//! - whole tables or arrays of tables as TOML or JSON: `PORTCULLIS_SERVER__CERTIFICATES=[{cert="a",key="b"}]`.
//!
//! Names are matched without regard to case, and `_` in a name also matches `-` in a key of
//! the file (`PORTCULLIS_STAGES__MFA_EMAIL__PASSWORD` reaches `[stages.mfa-email]`). Not
//! reachable: a top-level table as a whole (`PORTCULLIS_APPS=...`: a variable needs a table and
//! a key), and keys whose name has characters an environment variable cannot carry.
//!
//! # Security
//! Overrides carry secrets (SMTP and SMS passwords). No error built here or by validation
//! shows an overriding value: it names the variable and the key path instead.

use super::error::{ConfigError, Problem};
use std::path::Path;

/// One `PORTCULLIS_<TABLE>__<KEY>` variable.
pub(super) struct EnvOverride {
    /// The variable's name.
    pub key: String,
    parts: Vec<String>,
    text: String,
    /// The readings of `text` to try, most natural first.
    candidates: Vec<toml::Value>,
    /// The key path it was applied at, as error paths spell it (`apps[0].hosts`).
    pub path: String,
}

/// The overrides among `env`, in a stable order (numeric parts by number, so `APPS__2` comes
/// before `APPS__10`).
pub(super) fn overrides(env: impl Iterator<Item = (String, String)>) -> Vec<EnvOverride> {
    let mut out: Vec<EnvOverride> = env
        .filter_map(|(key, text)| {
            let rest = key.strip_prefix(super::ENV_PREFIX)?;
            let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
                return None;
            }
            let candidates = readings(&text);
            Some(EnvOverride {
                path: parts.join("."),
                key,
                parts,
                text,
                candidates,
            })
        })
        .collect();
    let order = |o: &EnvOverride| -> Vec<(usize, String)> {
        o.parts
            .iter()
            .map(|p| match p.parse::<usize>() {
                Ok(n) => (n, String::new()),
                Err(_) => (usize::MAX, p.clone()),
            })
            .collect()
    };
    out.sort_by_key(order);
    out
}

/// How a variable's text can be read: typed by its look (`25` a number, `true` a boolean,
/// `[...]` / `{...}` a TOML or JSON value), as plain text, and as a comma-separated list.
fn readings(text: &str) -> Vec<toml::Value> {
    let mut out = Vec::with_capacity(3);
    let t = text.trim();
    let natural = if let Ok(i) = t.parse::<i64>() {
        toml::Value::Integer(i)
    } else if t == "true" || t == "false" {
        toml::Value::Boolean(t == "true")
    } else if t.starts_with('[') || t.starts_with('{') {
        structured(t).unwrap_or_else(|| toml::Value::String(text.to_string()))
    } else {
        toml::Value::String(text.to_string())
    };
    out.push(natural);
    let plain = toml::Value::String(text.to_string());
    if !out.contains(&plain) {
        out.push(plain);
    }
    let list = toml::Value::Array(if t.is_empty() {
        Vec::new()
    } else {
        t.split(',')
            .map(|s| toml::Value::String(s.trim().to_string()))
            .collect()
    });
    if !out.contains(&list) {
        out.push(list);
    }
    out
}

/// A TOML inline value (`["a", "b"]`, `{ cert = "a" }`) or a JSON one.
fn structured(t: &str) -> Option<toml::Value> {
    if let Ok(mut table) = toml::from_str::<toml::Table>(&format!("v = {t}")) {
        return table.remove("v");
    }
    let json: serde_json::Value = serde_json::from_str(t).ok()?;
    toml::Value::try_from(json).ok()
}

/// Deserialises `file` with the overrides laid over it. An override whose reading does not
/// fit its key is tried with its next reading before anything is refused.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the key path, and the variable when one is the cause,
/// never an overriding value.
pub(super) fn deserialize<T: serde::de::DeserializeOwned>(
    file: &toml::Table,
    overrides: &mut [EnvOverride],
    source: &Path,
) -> Result<T, ConfigError> {
    let mut choice = vec![0usize; overrides.len()];
    let mut first_error: Vec<Option<String>> = vec![None; overrides.len()];
    loop {
        let value = overlay(file, overrides, &choice, None, source)?;
        let e = match serde_path_to_error::deserialize::<_, T>(toml::Value::Table(value)) {
            Ok(raw) => return Ok(raw),
            Err(e) => e,
        };
        let at = e.path().to_string();
        // toml adds the key on a line of its own; the path already says it.
        let message = e.inner().to_string();
        let message = message
            .split_once("\nin `")
            .map_or(message.as_str(), |(m, _)| m)
            .trim()
            .replace('\n', " ");
        let culprit = overrides
            .iter()
            .position(|o| under(&at, &o.path))
            .or_else(|| overrides.iter().position(|o| under(&o.path, &at)));
        let Some(i) = culprit else {
            return Err(invalid(source, at, redact(&message, overrides)));
        };
        if first_error[i].is_none() {
            first_error[i] = Some(message.clone());
        }
        if choice[i] + 1 < overrides[i].candidates.len() {
            choice[i] += 1;
            continue;
        }
        // An error above the override's key (in the table holding it) may be the file's own:
        // the same error without the override says so.
        if !under(&at, &overrides[i].path) {
            let without = overlay(file, overrides, &choice, Some(i), source)?;
            if let Err(e2) = serde_path_to_error::deserialize::<_, T>(toml::Value::Table(without)) {
                if e2.path().to_string() == at && e2.inner().to_string() == message {
                    return Err(invalid(source, at, redact(&message, overrides)));
                }
            }
        }
        let o = &overrides[i];
        // The unknown key came from the variable's name, which is no secret: keep the list
        // of keys that would have been accepted.
        if message.starts_with("unknown field") {
            let reason = format!("{} names {}, which is not a key: {message}", o.key, o.path);
            return Err(invalid(source, at, redact(&reason, overrides)));
        }
        let reason = format!(
            "the value of {} (for {}) is not usable here: {}",
            o.key,
            o.path,
            without_values(first_error[i].as_deref().unwrap_or(&message))
        );
        return Err(invalid(source, at, redact(&reason, overrides)));
    }
}

fn invalid(source: &Path, path: String, reason: String) -> ConfigError {
    ConfigError::Invalid {
        file: source.to_path_buf(),
        path,
        reason,
    }
}

/// The file with each override at its chosen reading, leaving out `skip`.
fn overlay(
    file: &toml::Table,
    overrides: &mut [EnvOverride],
    choice: &[usize],
    skip: Option<usize>,
    source: &Path,
) -> Result<toml::Table, ConfigError> {
    let mut value = file.clone();
    for (i, o) in overrides.iter_mut().enumerate() {
        if Some(i) == skip {
            continue;
        }
        let v = o.candidates[choice[i]].clone();
        let mut path = String::new();
        place_in_table(&mut value, &o.parts, v, &mut path)
            .map_err(|reason| invalid(source, path.clone(), format!("{}: {reason}", o.key)))?;
        o.path = path;
    }
    Ok(value)
}

/// Whether key path `inner` is `outer` or inside it.
fn under(inner: &str, outer: &str) -> bool {
    inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// The key of `table` a variable's part names: the same name, or the same but for case, or
/// with `_` standing for `-`.
fn key_for(table: &toml::Table, part: &str) -> String {
    if table.contains_key(part) {
        return part.to_string();
    }
    let same = |k: &str| k.eq_ignore_ascii_case(part);
    let dashed = |k: &str| k.replace('-', "_").eq_ignore_ascii_case(part);
    table
        .keys()
        .find(|k| same(k))
        .or_else(|| table.keys().find(|k| dashed(k)))
        .cloned()
        .unwrap_or_else(|| part.to_string())
}

fn place_in_table(
    table: &mut toml::Table,
    parts: &[String],
    value: toml::Value,
    path: &mut String,
) -> Result<(), String> {
    let [first, rest @ ..] = parts else {
        return Ok(());
    };
    let key = key_for(table, first);
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(&key);
    if rest.is_empty() {
        table.insert(key, value);
        return Ok(());
    }
    let next_is_index = rest[0].parse::<usize>().is_ok();
    let entry = table.entry(key).or_insert_with(|| {
        if next_is_index {
            toml::Value::Array(Vec::new())
        } else {
            toml::Value::Table(toml::Table::new())
        }
    });
    place_in_value(entry, rest, value, path)
}

fn place_in_value(
    node: &mut toml::Value,
    parts: &[String],
    value: toml::Value,
    path: &mut String,
) -> Result<(), String> {
    match node {
        toml::Value::Table(t) => place_in_table(t, parts, value, path),
        toml::Value::Array(items) => {
            let [first, rest @ ..] = parts else {
                return Ok(());
            };
            let Ok(index) = first.parse::<usize>() else {
                return Err(format!(
                    "{path} is a list: name an entry by its index (`__0__`), not `{first}`"
                ));
            };
            let len = items.len();
            if index > len {
                return Err(format!(
                    "{path} has {len} entries: index {index} is neither one of them nor the next"
                ));
            }
            path.push_str(&format!("[{index}]"));
            if rest.is_empty() {
                if index == len {
                    items.push(value);
                } else {
                    items[index] = value;
                }
                return Ok(());
            }
            if index == len {
                items.push(toml::Value::Table(toml::Table::new()));
            }
            place_in_value(&mut items[index], rest, value, path)
        }
        _ => Err(format!(
            "{path} is a single value in the file, so it has no `{}` inside",
            parts.first().map(String::as_str).unwrap_or_default()
        )),
    }
}

/// A deserialisation message with the quoted values taken out (`invalid type: string "..."`).
pub(super) fn without_values(message: &str) -> String {
    strip_quoted(message, &['"', '`'])
}

fn strip_quoted(message: &str, quotes: &[char]) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote: Option<char> = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None if quotes.contains(&c) => {
                out.push(c);
                quote = Some(c);
            }
            None => out.push(c),
        }
    }
    out
}

/// Any overriding text of four characters or more, wherever it appears, replaced by the name
/// of its variable: the last guard for a message that quotes what it refused.
fn redact(message: &str, overrides: &[EnvOverride]) -> String {
    let mut out = message.to_string();
    for o in overrides {
        let t = o.text.trim();
        if t.chars().count() >= 4 && out.contains(t) {
            out = out.replace(t, &format!("(the value of {})", o.key));
        }
    }
    out
}

/// A validation problem, told without the value when an override set the key it is about
/// (validation quotes values between backticks).
pub(super) fn problem(p: Problem, overrides: &[EnvOverride], source: &Path) -> ConfigError {
    let by = overrides
        .iter()
        .find(|o| under(&p.path, &o.path) || under(&o.path, &p.path));
    let reason = match by {
        Some(o) => format!("{} (set by {})", strip_quoted(&p.reason, &['`']), o.key),
        None => p.reason,
    };
    invalid(source, p.path, redact(&reason, overrides))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_try_the_look_then_text_then_a_list() {
        let s = |v: &str| toml::Value::String(v.into());
        assert_eq!(
            readings("a:1,b:2"),
            vec![s("a:1,b:2"), toml::Value::Array(vec![s("a:1"), s("b:2")])]
        );
        assert_eq!(readings("25")[0], toml::Value::Integer(25));
        assert_eq!(readings("25")[1], s("25"));
        assert_eq!(
            readings(r#"["a:1", "b:2"]"#)[0],
            toml::Value::Array(vec![s("a:1"), s("b:2")])
        );
        assert_eq!(
            readings(r#"[{"cert":"c","key":"k"}]"#)[0]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        // An IPv6 address is not an array.
        assert_eq!(readings("[::1]:9000")[0], s("[::1]:9000"));
        assert_eq!(readings("")[1], toml::Value::Array(vec![]));
    }

    const BASE: &str = r#"
[[apps]]
name = "demo"
hosts = ["localhost"]
upstream = "builtin:whoami"
flow = "f"
[[flows]]
slug = "f"
designation = "authentication"
stages = ["id", "log-in"]
[stages.id]
kind = "identification"
[stages.log-in]
kind = "user_login"
"#;

    fn load(env: &[(&str, &str)]) -> Result<super::super::Config, ConfigError> {
        super::super::Config::from_toml(
            BASE,
            Path::new("/etc/p/c.toml"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn overrides_reach_lists_tables_and_arrays_of_tables() {
        let c = load(&[
            ("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:1,[::1]:2"),
            ("PORTCULLIS_APPS__0__HOSTS", r#"["a.test", "b.test"]"#),
            ("PORTCULLIS_APPS__0__ALLOWED_GROUPS", ""),
            ("PORTCULLIS_STAGES__LOG_IN__SESSION_DURATION", "2h"),
            ("PORTCULLIS_HEADERS__STRIP", "X-A"),
            ("PORTCULLIS_APPS__1__NAME", "second"),
            ("PORTCULLIS_APPS__1__HOSTS", "c.test"),
            ("PORTCULLIS_APPS__1__UPSTREAM", "builtin:whoami"),
            ("PORTCULLIS_APPS__1__FLOW", "f"),
        ])
        .unwrap();
        assert_eq!(c.server.listen.len(), 2);
        assert_eq!(c.apps[0].hosts, ["a.test", "b.test"]);
        assert_eq!(c.apps[1].hosts, ["c.test"]);
        assert_eq!(c.headers.strip.len(), 1);
        assert_eq!(
            c.longest_session(),
            std::time::Duration::from_secs(12 * 3600)
        );
        assert!(matches!(
            c.stages.get("log-in"),
            Some(super::super::StageConfig::UserLogin { session_duration }) if session_duration.as_secs() == 7200
        ));
    }

    #[test]
    fn an_index_past_the_next_entry_is_refused_by_variable() {
        let e = load(&[("PORTCULLIS_APPS__5__HOSTS", "x.test")]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("PORTCULLIS_APPS__5__HOSTS") && msg.contains("apps"),
            "{msg}"
        );
        assert!(!msg.contains("x.test"), "{msg}");
    }

    #[test]
    fn without_values_hides_quoted_text() {
        assert_eq!(
            without_values("invalid type: string \"hunter2\", expected u16"),
            "invalid type: string \"…\", expected u16"
        );
    }
}
