//! RFC 8628 §3.4: the device polls the token endpoint with its device code until the user has answered
//! on the verification page.
//!
//! A device code is redeemed once: the redemption appends `DeviceCodeRedeemed` to the device request's
//! stream expecting version 2 (its request and its answer), so of two concurrent polls exactly one gets
//! the tokens. How fast a device polls is kept off the ledger (it is not an audit fact): a poll before
//! the interval has passed answers `slow_down` and adds 5 seconds to that device's interval.

use projections::Event;
use projections::clients::Client;
use projections::devices::{DeviceAuthorization, DeviceStatus};
use projections::event::{DeviceCodeRedeemed, UnixSeconds, V1};
use projections::users::User;

use super::pace::{self, Pace};
use super::{GrantType, TokenResponse, redemption};
use crate::app::App;
use crate::device;
use crate::issuance::{Decision, Policy};
use crate::oauth::OAuthError;
use crate::oauth::form::Form;
use crate::policy::external::External;
use crate::store::{self, AppendRequest, ExpectedVersion};

/// Where each device's poll pace is kept off the ledger.
const PACE_NAMESPACE: &str = "device-pace";

/// What a poll is decided on, read before deciding.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The device request the code names, if this client holds such a request.
    pub device: Option<DeviceAuthorization>,
    /// The user who answered, once approved.
    pub user: Option<User>,
    /// The device's pace so far (`None` before its first poll).
    pub pace: Option<Pace>,
    /// What the policy's external decision points answered.
    pub external: External,
}

/// What a poll becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A new delegation holding what `decision` grants, and its tokens.
    Redeem(Box<Decision>),
}

/// A poll's answer, and the pace to remember for the device (`None`: nothing to remember).
#[derive(Debug, Clone, PartialEq)]
pub struct Polled {
    pub answer: Result<Outcome, OAuthError>,
    pub pace: Option<Pace>,
}

fn unknown_code() -> OAuthError {
    OAuthError::InvalidGrant("the device code is unknown, already used, or not this client's".into())
}

/// Decides a poll: another client's or an unknown code, a used one, expiry, the pace while the user has
/// not answered, a refusal, and on approval the policy again (what it denies now is not issued, even if
/// the user approved it). Pure.
pub fn decide(policy: &Policy, client: &Client, facts: &Facts, now: UnixSeconds) -> Polled {
    let refuse = |e: OAuthError| Polled {
        answer: Err(e),
        pace: None,
    };
    let Some(device) = facts
        .device
        .as_ref()
        .filter(|d| d.client_id == client.spec.client_id)
    else {
        return refuse(unknown_code());
    };
    if matches!(device.status, DeviceStatus::Redeemed { .. }) {
        return refuse(unknown_code());
    }
    if now >= device.expires_at {
        return refuse(OAuthError::ExpiredToken(
            "the device code expired; start again".into(),
        ));
    }
    let (subject, auth, scopes, audience) = match &device.status {
        DeviceStatus::Pending => {
            let (pace, answer) = pace::pending(facts.pace, device.interval, now);
            return Polled {
                answer: Err(answer),
                pace: Some(pace),
            };
        }
        DeviceStatus::Denied { .. } => {
            return refuse(OAuthError::AccessDenied(
                "the user did not allow the request".into(),
            ));
        }
        DeviceStatus::Redeemed { .. } => return refuse(unknown_code()),
        DeviceStatus::Approved {
            subject,
            auth,
            scopes,
            audience,
            ..
        } => (subject, auth, scopes, audience),
    };
    let Some(user) = facts
        .user
        .as_ref()
        .filter(|u| u.is_enabled() && &u.subject == subject)
    else {
        return refuse(OAuthError::InvalidGrant("the user can no longer sign in".into()));
    };
    let approval = redemption::Approval {
        auth,
        scopes,
        audience,
        requested_at: device.requested_at,
    };
    let answer = redemption::decide(
        policy,
        client,
        GrantType::DeviceCode,
        user,
        approval,
        &facts.external,
        now,
    )
    .map(|d| Outcome::Redeem(Box::new(d)));
    Polled { answer, pace: None }
}

/// Reads what [`decide`] needs: the device request, its user, the pace, and the external verdicts.
async fn fetch(
    app: &App,
    policy: &Policy,
    client: &Client,
    hash: &str,
    now: UnixSeconds,
) -> Result<Facts, OAuthError> {
    let store = app.store.as_ref();
    let device: Option<DeviceAuthorization> = store::get(store, hash)
        .await?
        .filter(|d: &DeviceAuthorization| d.client_id == client.spec.client_id);
    let Some(device) = device else {
        return Ok(Facts::default());
    };
    let pace = match &device.status {
        DeviceStatus::Pending => app
            .store
            .off_ledger_get(PACE_NAMESPACE, hash, now)
            .await?
            .and_then(|json| serde_json::from_str(&json).ok()),
        _ => None,
    };
    let (user, external) = match &device.status {
        DeviceStatus::Approved { subject, scopes, .. } => {
            redemption::fetch(app, policy, client, GrantType::DeviceCode, subject, scopes, now).await?
        }
        _ => (None, External::default()),
    };
    Ok(Facts {
        device: Some(device),
        user,
        pace,
        external,
    })
}

/// Exchanges an approved device code for an access token, a refresh token (when the client may
/// refresh) and, when `openid` was granted, an ID token: fetch, [`decide`], record.
pub async fn grant(
    app: &App,
    client: &Client,
    form: &Form,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let hash = device::hash(form.require("device_code")?);
    let policy = app.policy();
    let facts = fetch(app, &policy, client, &hash, now).await?;
    let polled = decide(&policy, client, &facts, now);
    if let (Some(pace), Some(device)) = (polled.pace, &facts.device) {
        let json = serde_json::to_string(&pace).map_err(|e| OAuthError::internal("pace", e))?;
        app.store
            .off_ledger_put(PACE_NAMESPACE, &hash, &json, Some(device.expires_at), now)
            .await?;
    }
    match polled.answer? {
        Outcome::Redeem(decision) => record(app, &policy, client, &facts, &hash, &decision, now).await,
    }
}

/// Records a redemption (`grants/redemption.rs`), whose append expects the request answered and not
/// yet redeemed.
async fn record(
    app: &App,
    policy: &Policy,
    client: &Client,
    facts: &Facts,
    hash: &str,
    decision: &Decision,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let (Some(device), Some(user)) = (&facts.device, &facts.user) else {
        return Err(unknown_code());
    };
    let DeviceStatus::Approved { auth, .. } = &device.status else {
        return Err(unknown_code());
    };
    let ended = |delegation_id: &str| {
        AppendRequest::to_stream(
            projections::event::streams::device(hash),
            ExpectedVersion::Exact(2),
            vec![Event::DeviceCodeRedeemed(DeviceCodeRedeemed {
                v: V1,
                device_code_hash: hash.to_owned(),
                delegation_id: delegation_id.to_owned(),
                at: now,
            })],
        )
    };
    redemption::record(
        app,
        policy,
        client,
        GrantType::DeviceCode,
        user,
        auth,
        decision,
        ended,
        unknown_code,
        now,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::{self, NOW, client};
    use projections::event::{AuthContext, GrantedScope};

    fn policy() -> Policy {
        testing::policy(
            r#"
            [[authorizers]]
            name = "never"
            type = "deny"
            reason = "retired"
            [[scopes]]
            name = "read"
            [[scopes]]
            name = "old"
            authorizers = ["never"]
        "#,
        )
    }

    fn tv() -> Client {
        let mut c = client("tv");
        c.spec.scopes = vec!["read".into(), "old".into()];
        c
    }

    fn device(status: DeviceStatus) -> DeviceAuthorization {
        DeviceAuthorization {
            device_code_hash: "dh".into(),
            user_code_hash: "uh".into(),
            client_id: "tv".into(),
            scopes: Some(vec!["read".into()]),
            resource: None,
            requested_at: NOW - 100,
            expires_at: NOW + 500,
            interval: 5,
            status,
        }
    }

    fn approved(scopes: &[&str]) -> DeviceStatus {
        DeviceStatus::Approved {
            subject: "sub-ann".into(),
            auth: AuthContext {
                acr: Some("pwd".into()),
                amr: vec!["pwd".into()],
                auth_time: Some(NOW - 50),
            },
            scopes: scopes
                .iter()
                .map(|s| GrantedScope {
                    scope: (*s).into(),
                    expires_at: None,
                })
                .collect(),
            audience: vec![],
            position: 2,
        }
    }

    fn user() -> User {
        crate::policy::authorizers::testing::ann()
    }

    fn given(status: DeviceStatus, pace: Option<Pace>) -> Facts {
        Facts {
            device: Some(device(status)),
            user: Some(user()),
            pace,
            external: External::default(),
        }
    }

    fn when(facts: &Facts, at: UnixSeconds) -> Polled {
        decide(&policy(), &tv(), facts, at)
    }

    fn error(p: &Polled) -> String {
        match &p.answer {
            Err(e) => e.to_string(),
            Ok(o) => format!("{o:?}"),
        }
    }

    fn issued(p: &Polled) -> Vec<String> {
        match &p.answer {
            Ok(Outcome::Redeem(d)) => d.scope_names(),
            Err(e) => panic!("expected a redemption, got {e:?}"),
        }
    }

    #[test]
    fn polling_table() {
        // Given a pending request, when the device polls for the first time, then pending, and its pace
        // starts at the interval it was given
        let first = when(&given(DeviceStatus::Pending, None), NOW);
        assert_eq!(error(&first), "authorization_pending");
        assert_eq!(
            first.pace,
            Some(Pace {
                last_poll: NOW,
                interval: 5
            })
        );
        // When it polls again after the interval, then pending still
        let on_time = when(&given(DeviceStatus::Pending, first.pace), NOW + 5);
        assert_eq!(error(&on_time), "authorization_pending");
        // When it polls too early, then slow_down and 5 s more; twice, then 10 s more
        let fast = when(&given(DeviceStatus::Pending, on_time.pace), NOW + 6);
        assert_eq!(error(&fast), "slow_down");
        let faster = when(&given(DeviceStatus::Pending, fast.pace), NOW + 7);
        assert_eq!(error(&faster), "slow_down");
        assert_eq!(
            faster.pace,
            Some(Pace {
                last_poll: NOW + 7,
                interval: 15
            })
        );
        // ... and the grown interval is what it must keep from then on
        let slow = when(&given(DeviceStatus::Pending, faster.pace), NOW + 17);
        assert_eq!(error(&slow), "slow_down");
        let kept = when(&given(DeviceStatus::Pending, slow.pace), NOW + 17 + 20);
        assert_eq!(error(&kept), "authorization_pending");
        // Given a refusal, then access_denied at the next poll
        let denied = DeviceStatus::Denied {
            subject: "sub-ann".into(),
        };
        assert_eq!(error(&when(&given(denied, None), NOW)), "access_denied");
        // Given an expired request, then expired_token, answered or not
        assert_eq!(
            error(&when(&given(DeviceStatus::Pending, None), NOW + 500)),
            "expired_token"
        );
        assert_eq!(
            error(&when(&given(approved(&["read"]), None), NOW + 500)),
            "expired_token"
        );
        // Given an approval, then exactly the approved scopes
        assert_eq!(issued(&when(&given(approved(&["read"]), None), NOW)), ["read"]);
        // ... less what the policy denies now; nothing left is invalid_grant
        assert_eq!(
            issued(&when(&given(approved(&["read", "old"]), None), NOW)),
            ["read"]
        );
        assert_eq!(
            error(&when(&given(approved(&["old"]), None), NOW)),
            "invalid_grant"
        );
        // Given a redeemed code, then invalid_grant: it works once
        let redeemed = DeviceStatus::Redeemed {
            subject: "sub-ann".into(),
            delegation_id: "d1".into(),
        };
        assert_eq!(error(&when(&given(redeemed, None), NOW)), "invalid_grant");
        // Given another client's code, or none, then invalid_grant
        let mut other = given(approved(&["read"]), None);
        if let Some(d) = other.device.as_mut() {
            d.client_id = "other".into();
        }
        assert_eq!(error(&when(&other, NOW)), "invalid_grant");
        assert_eq!(error(&when(&Facts::default(), NOW)), "invalid_grant");
        // Given a disabled account, then invalid_grant
        let mut disabled = given(approved(&["read"]), None);
        if let Some(u) = disabled.user.as_mut() {
            u.disabled = Some("left".into());
        }
        assert_eq!(error(&when(&disabled, NOW)), "invalid_grant");
    }
}
