//! The JSON face of a step.

use crate::flow::Challenge;
use serde_json::{json, Value};

/// `{"flow", "stage", "title", "component", "fields", "errors", ...}` for a challenge; `title`
/// is the heading the HTML face shows for the same step (`flow_title` when the step has none).
pub fn challenge_json(flow: &str, flow_title: &str, stage: &str, c: &Challenge) -> Value {
    let mut v = json!({
        "flow": flow,
        "stage": stage,
        "title": super::step_title(c, flow_title),
        "component": c.component,
        "fields": c.fields,
        "errors": c.errors,
    });
    if !c.info.is_empty() {
        v["info"] = json!(c.info);
    }
    if !c.actions.is_empty() {
        v["actions"] = json!(c.actions);
    }
    if let Some(p) = c.poll {
        v["poll"] = json!(p);
    }
    if let Some(w) = &c.webauthn {
        v["webauthn"] = w.clone();
    }
    if let Some(q) = &c.qr {
        v["qr"] = json!(q);
    }
    if let Some(l) = &c.link {
        v["link"] = json!(l);
    }
    if let Some(t) = &c.totp {
        v["secret"] = json!(t.secret);
        v["otpauth_url"] = json!(t.otpauth_url);
    }
    if let Some(captcha) = &c.captcha {
        v["captcha"] = json!(captcha);
    }
    if !c.recovery_codes.is_empty() {
        v["recovery_codes"] = json!(c.recovery_codes);
    }
    if !c.links.is_empty() {
        v["links"] = json!(c.links);
    }
    v
}

/// The end of a successful flow.
pub fn redirect_json(flow: &str, to: &str) -> Value {
    json!({ "flow": flow, "component": "redirect", "to": to })
}

/// The end of a flow that did not succeed.
pub fn ended_json(flow: &str, message: &str) -> Value {
    json!({ "flow": flow, "component": "access_denied", "errors": [message] })
}
