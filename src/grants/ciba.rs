//! OpenID CIBA Core §10–11: the client asks the token endpoint with its `auth_req_id` (grant type
//! `urn:openid:params:grant-type:ciba`) until the user has answered on `/approvals` (poll mode), or once
//! after the server pinged it (ping mode).
//!
//! An `auth_req_id` is redeemed once: the redemption appends `BackchannelAuthenticationRedeemed` to the
//! request's stream expecting version 2 (its request and its answer), so of two concurrent polls exactly
//! one gets the tokens. How fast a client polls is kept off the ledger, with the device grant's rule
//! (`grants/pace.rs`), and the redemption is the device grant's (`grants/redemption.rs`).

use projections::Event;
use projections::backchannel::{BackchannelRequest, BackchannelStatus};
use projections::clients::Client;
use projections::event::{BackchannelAuthenticationRedeemed, UnixSeconds, V1};
use projections::users::User;

use super::pace::{self, Pace};
use super::{GrantType, TokenResponse, redemption};
use crate::app::App;
use crate::ciba;
use crate::issuance::{Decision, Policy};
use crate::oauth::OAuthError;
use crate::oauth::form::Form;
use crate::policy::external::External;
use crate::store::{self, AppendRequest, ExpectedVersion};

/// The CIBA grant's `grant_type` (CIBA Core §10.1).
pub const GRANT_TYPE: &str = "urn:openid:params:grant-type:ciba";

/// Where each request's poll pace is kept off the ledger.
const PACE_NAMESPACE: &str = "ciba-pace";

/// What a poll is decided on, read before deciding.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The request the `auth_req_id` names, if this client holds such a request.
    pub request: Option<BackchannelRequest>,
    /// The user who approved, once approved.
    pub user: Option<User>,
    /// The client's pace so far (`None` before its first poll).
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

/// A poll's answer, and the pace to remember (`None`: nothing to remember).
#[derive(Debug, Clone, PartialEq)]
pub struct Polled {
    pub answer: Result<Outcome, OAuthError>,
    pub pace: Option<Pace>,
}

fn unknown_request() -> OAuthError {
    OAuthError::InvalidGrant("the auth_req_id is unknown, already used, or not this client's".into())
}

/// Decides a poll: another client's or an unknown id, a used one, expiry, the pace while the user has not
/// answered (poll mode only: a ping client waits for its ping), a refusal, and on approval the policy
/// again (what it denies now is not issued, even if the user approved it). Pure.
pub fn decide(policy: &Policy, client: &Client, facts: &Facts, now: UnixSeconds) -> Polled {
    let refuse = |e: OAuthError| Polled {
        answer: Err(e),
        pace: None,
    };
    let Some(request) = facts
        .request
        .as_ref()
        .filter(|r| r.client_id == client.spec.client_id)
    else {
        return refuse(unknown_request());
    };
    if matches!(request.status, BackchannelStatus::Redeemed { .. }) {
        return refuse(unknown_request());
    }
    if now >= request.expires_at {
        return refuse(OAuthError::ExpiredToken(
            "the authentication request expired; start again".into(),
        ));
    }
    let (auth, scopes, audience) = match &request.status {
        BackchannelStatus::Pending => {
            let (pace, answer) = pace::pending(facts.pace, request.interval, now);
            return Polled {
                answer: Err(answer),
                pace: Some(pace),
            };
        }
        BackchannelStatus::Denied => {
            return refuse(OAuthError::AccessDenied(
                "the user did not allow the request".into(),
            ));
        }
        BackchannelStatus::Redeemed { .. } => return refuse(unknown_request()),
        BackchannelStatus::Approved {
            auth,
            scopes,
            audience,
            ..
        } => (auth, scopes, audience),
    };
    let Some(user) = facts
        .user
        .as_ref()
        .filter(|u| u.is_enabled() && u.subject == request.subject)
    else {
        return refuse(OAuthError::InvalidGrant("the user can no longer sign in".into()));
    };
    let approval = redemption::Approval {
        auth,
        scopes,
        audience,
        requested_at: request.requested_at,
    };
    let answer = redemption::decide(
        policy,
        client,
        GrantType::Ciba,
        user,
        approval,
        &facts.external,
        now,
    )
    .map(|d| Outcome::Redeem(Box::new(d)));
    Polled { answer, pace: None }
}

/// Reads what [`decide`] needs: the request, its user, the pace, and the external verdicts.
async fn fetch(
    app: &App,
    policy: &Policy,
    client: &Client,
    hash: &str,
    now: UnixSeconds,
) -> Result<Facts, OAuthError> {
    let store = app.store.as_ref();
    let request: Option<BackchannelRequest> = store::get(store, hash)
        .await?
        .filter(|r: &BackchannelRequest| r.client_id == client.spec.client_id);
    let Some(request) = request else {
        return Ok(Facts::default());
    };
    let pace = match &request.status {
        BackchannelStatus::Pending => app
            .store
            .off_ledger_get(PACE_NAMESPACE, hash, now)
            .await?
            .and_then(|json| serde_json::from_str(&json).ok()),
        _ => None,
    };
    let (user, external) = match &request.status {
        BackchannelStatus::Approved { scopes, .. } => {
            redemption::fetch(
                app,
                policy,
                client,
                GrantType::Ciba,
                &request.subject,
                scopes,
                now,
            )
            .await?
        }
        _ => (None, External::default()),
    };
    Ok(Facts {
        request: Some(request),
        user,
        pace,
        external,
    })
}

/// Exchanges an approved `auth_req_id` for an access token, an ID token and, when the client may
/// refresh, a refresh token: fetch, [`decide`], record.
pub async fn grant(
    app: &App,
    client: &Client,
    form: &Form,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let hash = ciba::hash(form.require("auth_req_id")?);
    let policy = app.policy();
    let facts = fetch(app, &policy, client, &hash, now).await?;
    let polled = decide(&policy, client, &facts, now);
    if let (Some(pace), Some(request)) = (polled.pace, &facts.request) {
        let json = serde_json::to_string(&pace).map_err(|e| OAuthError::internal("pace", e))?;
        app.store
            .off_ledger_put(PACE_NAMESPACE, &hash, &json, Some(request.expires_at), now)
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
    let (Some(request), Some(user)) = (&facts.request, &facts.user) else {
        return Err(unknown_request());
    };
    let BackchannelStatus::Approved { auth, .. } = &request.status else {
        return Err(unknown_request());
    };
    let ended = |delegation_id: &str| {
        AppendRequest::to_stream(
            projections::event::streams::backchannel(hash),
            ExpectedVersion::Exact(2),
            vec![Event::BackchannelAuthenticationRedeemed(
                BackchannelAuthenticationRedeemed {
                    v: V1,
                    auth_req_id_hash: hash.to_owned(),
                    delegation_id: delegation_id.to_owned(),
                    at: now,
                },
            )],
        )
    };
    redemption::record(
        app,
        policy,
        client,
        GrantType::Ciba,
        user,
        auth,
        decision,
        ended,
        unknown_request,
        now,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::{self, NOW, client};
    use projections::event::{AuthContext, BackchannelDeliveryMode, GrantedScope};

    fn policy() -> Policy {
        testing::policy(
            r#"
            [[authorizers]]
            name = "never"
            type = "deny"
            reason = "retired"
            [[scopes]]
            name = "openid"
            [[scopes]]
            name = "read"
            [[scopes]]
            name = "old"
            authorizers = ["never"]
        "#,
        )
    }

    fn bank() -> Client {
        let mut c = client("bank");
        c.spec.scopes = vec!["openid".into(), "read".into(), "old".into()];
        c
    }

    fn request(status: BackchannelStatus) -> BackchannelRequest {
        BackchannelRequest {
            auth_req_id_hash: "ah".into(),
            client_id: "bank".into(),
            subject: "sub-ann".into(),
            scopes: vec!["openid".into(), "read".into()],
            binding_message: None,
            mode: BackchannelDeliveryMode::Poll,
            requested_at: NOW - 100,
            expires_at: NOW + 200,
            interval: 5,
            status,
        }
    }

    fn approved(scopes: &[&str]) -> BackchannelStatus {
        BackchannelStatus::Approved {
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

    fn given(status: BackchannelStatus, pace: Option<Pace>) -> Facts {
        Facts {
            request: Some(request(status)),
            user: Some(user()),
            pace,
            external: External::default(),
        }
    }

    fn when(facts: &Facts, at: UnixSeconds) -> Polled {
        decide(&policy(), &bank(), facts, at)
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
    fn ciba_polling_table() {
        // Given a pending request, when the client polls, then pending; too early, then slow_down
        let first = when(&given(BackchannelStatus::Pending, None), NOW);
        assert_eq!(error(&first), "authorization_pending");
        assert_eq!(
            first.pace,
            Some(Pace {
                last_poll: NOW,
                interval: 5
            })
        );
        let fast = when(&given(BackchannelStatus::Pending, first.pace), NOW + 1);
        assert_eq!(error(&fast), "slow_down");
        assert_eq!(fast.pace.map(|p| p.interval), Some(10));
        let on_time = when(&given(BackchannelStatus::Pending, fast.pace), NOW + 11);
        assert_eq!(error(&on_time), "authorization_pending");
        // Given a refusal, then access_denied at the next poll
        assert_eq!(
            error(&when(&given(BackchannelStatus::Denied, None), NOW)),
            "access_denied"
        );
        // Given an expired request, then expired_token, answered or not
        assert_eq!(
            error(&when(&given(BackchannelStatus::Pending, None), NOW + 200)),
            "expired_token"
        );
        assert_eq!(
            error(&when(&given(approved(&["openid"]), None), NOW + 200)),
            "expired_token"
        );
        // Given an approval, then exactly the approved scopes, less what the policy denies now
        assert_eq!(
            issued(&when(&given(approved(&["openid", "read"]), None), NOW)),
            ["openid", "read"]
        );
        assert_eq!(
            issued(&when(&given(approved(&["openid", "old"]), None), NOW)),
            ["openid"]
        );
        assert_eq!(
            error(&when(&given(approved(&["old"]), None), NOW)),
            "invalid_grant"
        );
        // Given a redeemed request, another client's, or none, then invalid_grant
        let redeemed = BackchannelStatus::Redeemed {
            delegation_id: "d1".into(),
        };
        assert_eq!(error(&when(&given(redeemed, None), NOW)), "invalid_grant");
        let mut other = given(approved(&["openid"]), None);
        if let Some(r) = other.request.as_mut() {
            r.client_id = "other".into();
        }
        assert_eq!(error(&when(&other, NOW)), "invalid_grant");
        assert_eq!(error(&when(&Facts::default(), NOW)), "invalid_grant");
        // Given a disabled account, or another user than the one named, then invalid_grant
        let mut disabled = given(approved(&["openid"]), None);
        if let Some(u) = disabled.user.as_mut() {
            u.disabled = Some("left".into());
        }
        assert_eq!(error(&when(&disabled, NOW)), "invalid_grant");
        let mut someone_else = given(approved(&["openid"]), None);
        if let Some(u) = someone_else.user.as_mut() {
            u.subject = "sub-bob".into();
        }
        assert_eq!(error(&when(&someone_else, NOW)), "invalid_grant");
    }
}
