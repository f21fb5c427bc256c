//! Duo in validation: nothing is sent when the device is chosen; the user asks for a push (then
//! "I approved it — continue" asks Duo's `auth_status`) or types a passcode. The device is
//! asked about through the Duo integration of the setup stage that enrolled it.

use super::class::{Answer, Class, ClassCx, Pending};
use crate::flow::duo::{Asked, DuoAsk, DuoCx};
use crate::flow::step::{mismatch, Effect};
use crate::flow::{Challenge, FlowError, Input, StageKind};
use crate::notify::duo::DuoUser;
use crate::store::Device;
use async_trait::async_trait;

/// What users see when the Duo integration that enrolled a device is no longer configured.
const GONE: &str = "Duo is not set up on this site any more. Contact whoever runs this site.";

pub(super) struct Duo;

impl Duo {
    fn duo_cx<'a>(cx: &'a ClassCx<'a>, api: &'a crate::config::DuoApi) -> DuoCx<'a> {
        DuoCx {
            api,
            http: cx.cx.services.http.as_ref(),
            now: cx.cx.now,
            client: cx.cx.client,
            max_attempts: cx.cfg.otp.max_allowed_attempts,
            max_pushes: cx.cfg.otp.max_challenges_sent,
        }
    }
}

#[async_trait]
impl Class for Duo {
    /// A Duo device names its Duo user in `secret`; one without cannot be asked about.
    fn usable(&self, device: &Device) -> bool {
        device.secret.as_deref().is_some_and(|s| !s.is_empty())
    }

    fn label(&self, device: &Device) -> String {
        device.name.clone()
    }

    /// Nothing to do first: the user chooses a push or a passcode.
    async fn begin(
        &self,
        cx: &ClassCx<'_>,
        device: Option<&Device>,
    ) -> Result<(Pending, Vec<Effect>), FlowError> {
        let user = match device.and_then(|d| d.secret.as_deref()) {
            Some(s) => DuoUser::from_stored(s),
            None => DuoUser::Username(String::new()),
        };
        Ok((
            Pending::Duo(DuoAsk::resumed(user, cx.spent.sends, cx.spent.attempts)),
            Vec::new(),
        ))
    }

    fn challenge(&self, cx: &ClassCx<'_>, pending: &Pending) -> Result<Challenge, FlowError> {
        let Pending::Duo(ask) = pending else {
            return Err(mismatch(cx.cx));
        };
        Ok(ask.challenge(StageKind::AuthenticatorValidate.as_str(), "Duo"))
    }

    async fn submit(
        &self,
        cx: &ClassCx<'_>,
        device: Option<&Device>,
        pending: Pending,
        input: &Input,
    ) -> Result<Answer, FlowError> {
        let Pending::Duo(ask) = pending else {
            return Err(mismatch(cx.cx));
        };
        // A typed passcode is a guess: counted by regulation before Duo (or the decoy) judges it.
        let guess = input
            .get(crate::flow::duo::PASSCODE)
            .is_some_and(|p| !p.trim().is_empty());
        let attempt = match guess {
            true => Some(crate::flow::regulated::attempt(
                cx.cx.services,
                cx.cx.exec,
                cx.cx.client,
                cx.cx.now,
            )?),
            false => None,
        };
        let asked = match device {
            // # Security
            // The decoy (unknown or ineligible account) shows the same steps and never asks
            // Duo or passes.
            None => ask.pretend(
                cx.cfg.otp.max_allowed_attempts,
                cx.cfg.otp.max_challenges_sent,
                input,
            ),
            Some(d) => {
                let Some(api) = cx.duo.get(&d.stage) else {
                    tracing::warn!(stage = cx.cx.name, setup = %d.stage, "a Duo device whose setup stage is gone");
                    return Ok(Answer::Cancel(GONE.into()));
                };
                ask.answer(&Self::duo_cx(cx, api), cx.cx.name, input)
                    .await?
            }
        };
        if let Some(a) = attempt {
            let right = matches!(asked, Asked::Approved(_));
            crate::flow::regulated::settle(cx.cx.services, a, right)?;
        }
        Ok(match asked {
            Asked::Stay(ask, errors) => Answer::Wait {
                pending: Pending::Duo(ask),
                errors,
                effects: Vec::new(),
            },
            Asked::Cancel(message) => Answer::Cancel(message),
            Asked::Approved(method) => {
                let Some(d) = device else {
                    return Err(mismatch(cx.cx));
                };
                Answer::Proved {
                    effects: vec![Effect::PutDevice(Device {
                        last_used: Some(cx.cx.now),
                        ..d.clone()
                    })],
                    methods: method.amr().to_vec(),
                    notice: Vec::new(),
                }
            }
        })
    }
}
