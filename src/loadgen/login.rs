//! Gets a real session cookie for the load tool by signing in through the JSON flow API, the
//! way a script would: learn the flow from the 401's `login` URL (or take it as given), then
//! answer `identification` and `password` until the flow redirects with the session cookie.

use super::{LoadError, Target};
use crate::secret::SecretString;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, COOKIE, SET_COOKIE};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// More steps than any password flow has: a flow that keeps asking is not one this tool can do.
const MAX_STEPS: usize = 8;

pub struct LoginOptions<'a> {
    pub user: &'a str,
    pub password: SecretString,
    /// The flow slug; learnt from the target's 401 when `None`.
    pub flow: Option<&'a str>,
    pub cookie_name: &'a str,
}

/// Signs in and returns the session cookie's value.
///
/// # Errors
/// [`LoadError::Login`] saying which step failed: the target did not ask for a sign-in, the
/// flow needs a stage other than identification and password, or the password was refused.
pub async fn login(target: &Target, opts: LoginOptions<'_>) -> Result<String, LoadError> {
    let fail = |reason: String| LoadError::Login {
        user: opts.user.to_string(),
        reason,
    };
    let http = |e: reqwest::Error| fail(format!("request failed: {e}"));
    let host = target
        .authority
        .rsplit_once(':')
        .map_or(target.authority.as_str(), |(h, _)| h);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(host, target.addr)
        .build()
        .map_err(http)?;
    let origin = target.origin();

    let flow_url = match opts.flow {
        Some(slug) => format!("{origin}/.portcullis/api/flow/{slug}"),
        None => {
            let resp = client
                .get(&target.url)
                .header(ACCEPT, "application/json")
                .send()
                .await
                .map_err(http)?;
            if resp.status() != reqwest::StatusCode::UNAUTHORIZED {
                return Err(fail(format!(
                    "{} answered {} without a cookie, not 401 with a sign-in URL; pass --flow",
                    target.url,
                    resp.status()
                )));
            }
            let body: Value = resp.json().await.map_err(http)?;
            let login = body["login"]
                .as_str()
                .ok_or_else(|| fail("the 401 has no `login` URL; pass --flow".into()))?;
            // `/.portcullis/flow/<slug>?rd=...` -> the JSON face of the same flow.
            let rest = login
                .split_once("/.portcullis/flow/")
                .map(|(_, r)| r)
                .ok_or_else(|| fail(format!("unexpected login URL {login:?}; pass --flow")))?;
            format!("{origin}/.portcullis/api/flow/{rest}")
        }
    };
    let post_url = flow_url.split('?').next().unwrap_or(&flow_url).to_string();

    let mut jar: BTreeMap<String, String> = BTreeMap::new();
    let resp = client.get(&flow_url).send().await.map_err(http)?;
    let mut step = read_step(resp, &mut jar).await.map_err(http)?;
    for _ in 0..MAX_STEPS {
        let answer = match step["component"].as_str().unwrap_or_default() {
            "redirect" => {
                return jar
                    .get(opts.cookie_name)
                    .filter(|v| !v.is_empty())
                    .cloned()
                    .ok_or_else(|| {
                        fail(format!(
                            "the flow finished without setting cookie {:?}",
                            opts.cookie_name
                        ))
                    })
            }
            "identification" => json!({ "uid": opts.user }),
            "password" => {
                if step["errors"].as_array().is_some_and(|e| !e.is_empty()) {
                    return Err(fail(format!("password refused: {}", step["errors"])));
                }
                json!({ "password": opts.password.expose() })
            }
            "" => return Err(fail(format!("unexpected answer: {step}"))),
            other => {
                return Err(fail(format!(
                    "the flow asks for `{other}`, which needs a person; sign in by hand and \
                     pass --cookie"
                )))
            }
        };
        let resp = client
            .post(&post_url)
            .headers(cookie_header(&jar))
            .json(&answer)
            .send()
            .await
            .map_err(http)?;
        step = read_step(resp, &mut jar).await.map_err(http)?;
    }
    Err(fail("the flow did not finish".into()))
}

fn cookie_header(jar: &BTreeMap<String, String>) -> HeaderMap {
    let mut h = HeaderMap::new();
    let v: Vec<String> = jar
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if let Ok(v) = HeaderValue::from_str(&v.join("; ")) {
        h.insert(COOKIE, v);
    }
    h
}

/// Keeps the response's cookies and returns its JSON body.
async fn read_step(
    resp: reqwest::Response,
    jar: &mut BTreeMap<String, String>,
) -> Result<Value, reqwest::Error> {
    for v in resp.headers().get_all(SET_COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        let pair = v.split(';').next().unwrap_or_default();
        if let Some((k, v)) = pair.split_once('=') {
            jar.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    resp.json().await
}
