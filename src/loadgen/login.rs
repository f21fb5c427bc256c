//! Gets a real session cookie for the load tool by signing in through the JSON flow API, the
//! way a script would: follow the target's redirect to its sign-in page (on the auth host when
//! there is a front proxy), or take the flow as given, then answer `identification` and
//! `password` until the flow redirects with the session cookie.

use super::{LoadError, Target};
use crate::secret::SecretString;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// More steps than any password flow has: a flow that keeps asking is not one this tool can do.
const MAX_STEPS: usize = 8;

/// Who signs in, and where the session cookie is found afterwards.
pub struct LoginOptions<'a> {
    /// The username typed at `identification`.
    pub user: &'a str,
    /// The password answered at `password`; sent only to the flow API.
    pub password: SecretString,
    /// The flow slug; learnt from the target's 401 when `None`.
    pub flow: Option<&'a str>,
    /// The session cookie's name, looked for in the final answer's `Set-Cookie`.
    pub cookie_name: &'a str,
}

/// The JSON face of the flow the target sends an anonymous visitor to: asked as a browser
/// (a page load), the target answers with a redirect to the sign-in page, wherever it lives
/// (on the target's host, or on the auth host behind a front proxy); an API-style `401` with
/// a `login` URL is read too.
async fn sign_in_url(target: &Target, target_url: &url::Url) -> Result<url::Url, String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(host_of(target_url), target.addr)
        .build()
        .map_err(|e| format!("request failed: {e}"))?;
    let resp = client
        .get(target_url.clone())
        .header(ACCEPT, "text/html")
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status();
    let login = if status.is_redirection() {
        resp.headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    } else if status == reqwest::StatusCode::UNAUTHORIZED {
        resp.json::<Value>()
            .await
            .ok()
            .and_then(|b| b["login"].as_str().map(str::to_string))
    } else {
        None
    };
    let Some(login) = login else {
        return Err(format!(
            "{} answered {status} without a cookie, not a redirect to a sign-in page",
            target.url
        ));
    };
    let login = target_url
        .join(&login)
        .map_err(|e| format!("the sign-in URL {login:?} is not a URL: {e}"))?;
    // `/.portcullis/flow/<slug>?rd=...` -> the JSON face of the same flow, same host.
    let api = login
        .as_str()
        .split_once("/.portcullis/flow/")
        .map(|(origin, rest)| format!("{origin}/.portcullis/api/flow/{rest}"))
        .ok_or_else(|| format!("unexpected sign-in URL {login}"))?;
    url::Url::parse(&api).map_err(|e| format!("the sign-in URL {api:?} is not a URL: {e}"))
}

fn host_of(url: &url::Url) -> &str {
    url.host_str()
        .unwrap_or_default()
        .trim_matches(|c| c == '[' || c == ']')
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
    let target_url = url::Url::parse(&target.url).map_err(|e| fail(format!("bad URL: {e}")))?;
    let flow_url = match opts.flow {
        Some(slug) => target_url
            .join(&format!("/.portcullis/api/flow/{slug}"))
            .map_err(|e| fail(format!("bad URL: {e}")))?,
        None => sign_in_url(target, &target_url)
            .await
            .map_err(|reason| fail(format!("{reason}; pass --flow")))?,
    };
    // The sign-in may live on another host (the auth host behind the same front proxy).
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(host_of(&target_url), target.addr);
    if target.pinned {
        builder = builder.resolve(host_of(&flow_url), target.addr);
    }
    let client = builder.build().map_err(http)?;
    let flow_url = flow_url.to_string();
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
