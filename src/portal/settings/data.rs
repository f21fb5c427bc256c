//! What the settings page shows, built once per request by [`build`] and rendered by both
//! faces: the JSON document is this serialised, the HTML page is this through
//! `settings.html`.

use super::super::{Portal, PortalError, Request};
use crate::config::{NotConfigured, StageConfig};
use crate::session::Claims;
use crate::store::{Device, DeviceClass, SessionRecord, User};
use serde::Serialize;

/// The whole page.
#[derive(Debug, Serialize)]
pub(crate) struct Settings {
    pub(crate) profile: Profile,
    pub(crate) devices: Vec<DeviceItem>,
    /// One entry per setup stage with a `configure_flow`.
    pub(crate) add: Vec<AddItem>,
    pub(crate) sessions: Vec<SessionItem>,
    /// Unused recovery codes across the user's sets; `None` without a set.
    pub(crate) recovery_codes_left: Option<usize>,
    /// The unenrollment flow behind "Delete my account", when one exists.
    pub(crate) delete_account: Option<String>,
    /// Whether the sign-in is recent enough to remove a factor without confirming again.
    pub(crate) fresh: bool,
    /// The token every change must carry (form field or JSON member `csrf_token`).
    pub(crate) csrf_token: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Profile {
    pub(crate) username: String,
    pub(crate) name: String,
    pub(crate) email: Option<String>,
    pub(crate) groups: Vec<String>,
    /// The profile flow (`[settings] profile_flow`), returning here; `None`: not editable.
    pub(crate) edit: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct DeviceItem {
    pub(crate) id: String,
    pub(crate) class: DeviceClass,
    /// What the class is called ("Authenticator app").
    pub(crate) kind: &'static str,
    pub(crate) name: String,
    /// The address or number, masked (`al***@example.com`); `None` for classes without one.
    pub(crate) address: Option<String>,
    pub(crate) created: i64,
    pub(crate) last_used: Option<i64>,
    /// Why it cannot be removed (the last factor a flow needs); `None`: it can.
    pub(crate) keep: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct AddItem {
    /// The setup stage's name.
    pub(crate) stage: String,
    /// "Add Authenticator app".
    pub(crate) label: String,
    /// The stage's configuration flow, returning here.
    pub(crate) href: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct SessionItem {
    /// The session's id: what "Sign out" names.
    pub(crate) id: String,
    pub(crate) browser: String,
    pub(crate) address: String,
    pub(crate) created: i64,
    pub(crate) last_seen: Option<i64>,
    pub(crate) expires: i64,
    /// This browser's own session.
    pub(crate) current: bool,
}

/// The settings of `user`, signed in as `claims`.
///
/// # Errors
/// [`PortalError::Session`] when the store fails.
pub(crate) fn build(
    p: &Portal,
    req: &Request<'_>,
    claims: &Claims,
    user: &User,
) -> Result<Settings, PortalError> {
    let store = &p.engine.services().store;
    let devices = store.devices(&user.username).map_err(store_error)?;
    let sessions = p.sessions.sessions_of(&user.username)?;
    let here = super::page_url(p, req);
    let cfg = p.gate.config();
    let back = |slug: &str| flow_link(slug, &here);
    let recovery_codes_left = devices
        .iter()
        .filter(|d| d.class == DeviceClass::Static)
        .map(|d| crate::flow::recovery::Material::of(d).map_or(0, |m| m.hashes.len()))
        .reduce(|a, b| a + b);
    Ok(Settings {
        profile: profile(user, cfg.settings.profile_flow.as_deref().map(back)),
        devices: devices
            .iter()
            .map(|d| device_item(d, keep_reason(p, req, &devices, d)))
            .collect(),
        add: cfg
            .stages
            .iter()
            .filter_map(|(name, st)| {
                let (friendly, flow) = configure_flow(st)?;
                Some(AddItem {
                    stage: name.clone(),
                    label: format!("Add {friendly}"),
                    href: back(flow),
                })
            })
            .collect(),
        sessions: sessions
            .into_iter()
            .map(|r| session_item(r, &claims.sid))
            .collect(),
        recovery_codes_left,
        delete_account: unenrollment_flow(p).map(|slug| format!("/.portcullis/flow/{slug}")),
        fresh: p.gate.fresh_for_settings(claims),
        csrf_token: p.sessions.settings_csrf(&claims.sid).expose().clone(),
    })
}

pub(super) fn store_error(e: crate::store::StoreError) -> PortalError {
    PortalError::Session(crate::session::SessionError::Store(e))
}

fn profile(user: &User, edit: Option<String>) -> Profile {
    Profile {
        username: user.username.clone(),
        name: user.name.clone(),
        email: user.email.clone(),
        groups: user.groups.clone(),
        edit,
    }
}

fn device_item(d: &Device, keep: Option<String>) -> DeviceItem {
    let address = match d.class {
        DeviceClass::Email | DeviceClass::Sms if d.verify_only() => {
            Some("kept only as a hash".to_string())
        }
        DeviceClass::Email | DeviceClass::Sms => Some(crate::flow::otp::mask(&d.address)),
        _ => None,
    };
    DeviceItem {
        id: d.id.clone(),
        class: d.class,
        kind: kind_name(d.class),
        name: d.name.clone(),
        address,
        created: d.created,
        last_used: d.last_used,
        keep,
    }
}

fn session_item(r: SessionRecord, current: &str) -> SessionItem {
    SessionItem {
        current: r.sid == current,
        browser: if r.browser.is_empty() {
            "Unknown browser".to_string()
        } else {
            r.browser
        },
        address: r.client,
        created: r.issued,
        last_seen: r.last_seen,
        expires: r.expires,
        id: r.sid,
    }
}

/// What a class of device is called on the page.
pub(crate) fn kind_name(class: DeviceClass) -> &'static str {
    match class {
        DeviceClass::Email => "Email",
        DeviceClass::Sms => "SMS",
        DeviceClass::Totp => "Authenticator app",
        DeviceClass::Static => "Recovery codes",
        DeviceClass::Webauthn => "Passkey",
        DeviceClass::Duo => "Duo",
    }
}

/// The setup stage's friendly name and configuration flow, for the stages that have one.
fn configure_flow(stage: &StageConfig) -> Option<(&str, &str)> {
    match stage {
        StageConfig::AuthenticatorEmail(e) => {
            Some((&e.friendly_name, e.configure_flow.as_deref()?))
        }
        StageConfig::AuthenticatorSms(s) => Some((&s.friendly_name, s.configure_flow.as_deref()?)),
        StageConfig::AuthenticatorTotp(t) => Some((&t.friendly_name, t.configure_flow.as_deref()?)),
        StageConfig::AuthenticatorStatic(t) => {
            Some((&t.friendly_name, t.configure_flow.as_deref()?))
        }
        _ => None,
    }
}

/// A flow's page, returning to `here` when it completes.
fn flow_link(slug: &str, here: &str) -> String {
    format!(
        "/.portcullis/flow/{slug}?rd={}",
        percent_encoding::utf8_percent_encode(here, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// The first flow designated for unenrollment, if any. Named by its designation's text so it
/// works whichever helper adds the designation to the enum.
fn unenrollment_flow(p: &Portal) -> Option<&str> {
    p.gate
        .config()
        .flows
        .iter()
        .find(|f| f.designation.as_str() == "unenrollment")
        .map(|f| f.slug.as_str())
}

/// Why `device` must stay: removing it would leave a validation stage that a flow needs to
/// sign in (an app's flow, or the flow that confirms settings changes) with no device of its
/// classes. A stage that skips users without a device (`not_configured_action = "skip"`)
/// needs none; one that denies or sets up a new one does (setting up a new one at the next
/// sign-in would let whoever knows the password choose the second factor).
pub(super) fn keep_reason(
    p: &Portal,
    req: &Request<'_>,
    devices: &[Device],
    device: &Device,
) -> Option<String> {
    use crate::flow::stages::authenticator_validate::validatable;
    if !validatable(device) {
        return None;
    }
    let cfg = p.gate.config();
    let confirm = p.gate.reauthentication_flow(req.authority);
    let mut slugs: Vec<&str> = cfg.apps.iter().map(|a| a.flow.as_str()).collect();
    slugs.extend(confirm);
    slugs.sort_unstable();
    slugs.dedup();
    for slug in slugs {
        let Some(flow) = cfg.flow(slug) else { continue };
        for stage in flow.stages.iter().filter_map(|s| cfg.stages.get(s)) {
            let StageConfig::AuthenticatorValidate(v) = stage else {
                continue;
            };
            if v.not_configured_action == NotConfigured::Skip
                || !v.device_classes.contains(&device.class)
            {
                continue;
            }
            let others = devices.iter().any(|d| {
                d.id != device.id && v.device_classes.contains(&d.class) && validatable(d)
            });
            if !others {
                let kinds: Vec<&str> = v.device_classes.iter().map(|c| kind_name(*c)).collect();
                return Some(format!(
                    "Signing in needs one of: {}. This is your last one: add another before removing it.",
                    kinds.join(", ")
                ));
            }
        }
    }
    None
}
