//! RFC 6749 §6: the refresh token grant, rotated on every use with reuse detection (RFC 9700 §4.14).

use projections::clients::Client;
use projections::delegations::Delegation;
use projections::event::{
    RefreshTokenIssued, RefreshTokenReuseDetected, RefreshTokenRotated, ReuseAction, RevocationReason,
    UnixSeconds, V1,
};
use projections::refresh_tokens::{RefreshStatus, RefreshToken};
use projections::{Event, Metadata};
use serde_json::Value;
use sha2::{Digest, Sha256};

use projections::users::User;

use super::{GrantType, TokenResponse, prepare_access_token, record};
use crate::app::App;
use crate::delegations;
use crate::issuance::{self, Decision, IssuanceRequest, Policy};
use crate::oauth::form::Form;
use crate::oauth::{OAuthError, scope};
use crate::policy::external::{self, External};
use crate::store::{self, AppendError, AppendRequest, ExpectedVersion};

/// The version of an active refresh token's stream: only its `RefreshTokenIssued`.
const ACTIVE_VERSION: u64 = 1;

/// How often a refresh re-reads after losing an optimistic check before giving up.
const ATTEMPTS: usize = 3;

/// The stream a refresh token's events go to; its version is the rotation check.
pub fn stream(token_hash: &str) -> String {
    projections::event::streams::refresh_token(token_hash)
}

/// SHA-256 (hex) of a refresh token's value: all the ledger ever holds of it.
pub fn hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// What a new refresh token belongs to.
#[derive(Debug, Clone)]
pub struct Minting<'a> {
    pub delegation_id: &'a str,
    pub client_id: &'a str,
    pub subject: &'a str,
    pub scopes: Vec<String>,
    pub now: UnixSeconds,
    pub lifetime_seconds: i64,
    /// The token this one replaces by rotation.
    pub parent_hash: Option<String>,
}

/// A fresh refresh token: its value (for the client, once) and the append that records its hash. A
/// public client's token is bound to the key of the request's DPoP proof, if it sent one
/// ([`super::binding`]).
pub fn mint(m: Minting<'_>) -> Result<(String, AppendRequest), OAuthError> {
    let value = crate::ids::secret().map_err(|e| OAuthError::internal("randomness", e))?;
    let token_hash = hash(&value);
    let event = Event::RefreshTokenIssued(RefreshTokenIssued {
        v: V1,
        token_hash: token_hash.clone(),
        delegation_id: m.delegation_id.to_owned(),
        client_id: m.client_id.to_owned(),
        subject: m.subject.to_owned(),
        scopes: m.scopes,
        issued_at: m.now,
        expires_at: Some(m.now + m.lifetime_seconds),
        parent_hash: m.parent_hash,
        dpop_jkt: super::binding().refresh_jkt(),
    });
    Ok((
        value,
        AppendRequest::to_stream(stream(&token_hash), ExpectedVersion::NoStream, vec![event]),
    ))
}

/// The refresh request's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// RFC 6749 §6 `scope`: narrows what the refresh token carries.
    pub scope: Option<&'a [String]>,
    /// RFC 8707 `resource`: narrows the delegation's audiences.
    pub resource: Option<&'a str>,
    /// RFC 9449: the thumbprint of the key the request's DPoP proof was signed with, if it sent one.
    pub dpop_jkt: Option<&'a str>,
}

/// What a refresh is decided on, read before deciding.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub token: Option<RefreshToken>,
    pub delegation: Option<Delegation>,
    /// The version of the delegation's stream, which a revocation expects.
    pub delegation_version: Option<u64>,
    /// The delegation's subject, when it is a local user.
    pub user: Option<User>,
    pub external: External,
}

/// Server settings a refresh is decided under.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `[tokens] delegation_lifetime_seconds`, unless the client sets its own.
    pub delegation_lifetime_seconds: i64,
}

/// What a refresh becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// An active token: replace it by a successor and issue `decision`.
    Rotate(Box<Decision>),
    /// A rotated token presented again within the client's grace window: a fresh pair.
    GraceReissue(Box<Decision>),
    /// A rotated token presented again past any grace window: the delegation ends (RFC 9700 §4.14).
    RevokeDelegation(RevocationReason),
}

/// The instant a delegation stops being refreshable, however its tokens rotate.
pub fn delegation_end(delegation: &Delegation, client: &Client, settings: Settings) -> UnixSeconds {
    let lifetime = client
        .spec
        .delegation_lifetime_seconds
        .unwrap_or(settings.delegation_lifetime_seconds);
    delegation.created_at.saturating_add(lifetime)
}

/// Decides a refresh. Pure: the token's status, the delegation's state and lifetime, the account, the
/// requested narrowing, then the policy in force (re-evaluated: what it denies now is not issued).
pub fn decide(
    policy: &Policy,
    client: &Client,
    settings: Settings,
    facts: &Facts,
    request: Request<'_>,
    now: UnixSeconds,
) -> Result<Outcome, OAuthError> {
    // A token of another client is as unknown to this one as a made-up value.
    let token = facts
        .token
        .as_ref()
        .filter(|t| t.client_id == client.spec.client_id && client.is_enabled())
        .ok_or_else(|| invalid_grant("unknown refresh token"))?;
    // RFC 9449 §5: a bound token is worth nothing without its key. Checked before anything else, so a
    // stolen rotated token presented without the key cannot even revoke the victim's grant as reuse.
    if let Some(bound) = token.dpop_jkt.as_deref() {
        match request.dpop_jkt {
            None => {
                return Err(OAuthError::InvalidDpopProof(
                    "this refresh token is bound to a DPoP key; send a proof signed by it".into(),
                ));
            }
            Some(presented) if presented != bound => {
                return Err(invalid_grant("this refresh token is bound to another DPoP key"));
            }
            Some(_) => {}
        }
    }
    if token.expires_at.is_some_and(|exp| now >= exp) {
        return Err(invalid_grant("the refresh token has expired"));
    }
    let rotated_at = match &token.status {
        RefreshStatus::Revoked { .. } => return Err(invalid_grant("the refresh token was revoked")),
        RefreshStatus::Rotated { at, .. } => Some(*at),
        RefreshStatus::Active => None,
    };
    let ended = || invalid_grant("the grant behind this refresh token has ended");
    let delegation = facts
        .delegation
        .as_ref()
        .filter(|d| d.delegation_id == token.delegation_id && d.client_id == token.client_id)
        .filter(|d| d.revoked.is_none())
        .ok_or_else(ended)?;
    if let Some(rotated_at) = rotated_at {
        let grace = i64::from(client.spec.refresh_reuse_grace_seconds);
        let within_grace = grace > 0 && now.saturating_sub(rotated_at) <= grace;
        if !within_grace || !delegation.is_active_at(now) {
            return Ok(Outcome::RevokeDelegation(RevocationReason::RefreshTokenReuse));
        }
    }
    if !delegation.is_active_at(now) {
        return Err(ended());
    }
    if now >= delegation_end(delegation, client, settings) {
        return Err(invalid_grant(
            "the grant has reached its absolute lifetime; the user must authorize the client again",
        ));
    }
    if facts.user.as_ref().is_some_and(|u| !u.is_enabled()) {
        return Err(invalid_grant("the user's account is disabled"));
    }
    // RFC 6749 §6: a requested scope may only narrow what the refresh token carries.
    if let Some(extra) = request
        .scope
        .and_then(|r| r.iter().find(|s| !token.scopes.contains(s)))
    {
        return Err(OAuthError::InvalidScope(format!(
            "{extra} is not in the refresh token's scope"
        )));
    }
    let wanted = request.scope.unwrap_or(&token.scopes);
    let attributes = facts.user.as_ref().map_or(&Value::Null, |u| &u.attributes);
    let decision = issuance::decide(
        policy,
        &IssuanceRequest {
            client,
            subject: &token.subject,
            subject_attributes: attributes,
            requested: Some(wanted),
            resource: request.resource,
            grant_type: GrantType::RefreshToken.name(),
            user_present: false,
            auth: &delegation.auth,
            delegation: Some(delegation),
            authorization_details: &delegation.authorization_details,
            // Continuing a delegation: its own consent stands, and ledger consents are never consulted.
            consents: &[],
            approved_now: &[],
            fresh_since: None,
            external: &facts.external,
            now,
        },
    )
    .map_err(|e| match (e, request.scope) {
        (OAuthError::InvalidScope(_), Some(_)) => {
            OAuthError::InvalidScope("the grant no longer holds the requested scopes".into())
        }
        (OAuthError::InvalidScope(_), None) => {
            invalid_grant("the grant no longer holds any of this refresh token's scopes")
        }
        (other, _) => other,
    })?;
    Ok(match rotated_at {
        None => Outcome::Rotate(Box::new(decision)),
        Some(_) => Outcome::GraceReissue(Box::new(decision)),
    })
}

/// Reads what [`decide`] needs about the presented token.
async fn fetch(
    app: &App,
    policy: &Policy,
    client: &Client,
    token_hash: &str,
    request: Request<'_>,
    now: UnixSeconds,
) -> Result<Facts, OAuthError> {
    let store = app.store.as_ref();
    let token: Option<RefreshToken> = store::get(store, token_hash).await?;
    let Some(token) = token.filter(|t| t.client_id == client.spec.client_id) else {
        return Ok(Facts::default());
    };
    let delegation_stream = delegations::stream(&token.delegation_id);
    let delegation_version = store.stream_version(&delegation_stream).await?;
    let delegation: Option<Delegation> = store::get(store, &token.delegation_id).await?;
    let user = crate::users::by_subject(store, &token.subject).await?;
    let external = external::fetch(
        &app.http,
        policy,
        external::Asking {
            client: &client.spec,
            subject: &token.subject,
            grant_type: GrantType::RefreshToken.name(),
            user_present: false,
            requested: Some(request.scope.unwrap_or(&token.scopes)),
            now,
        },
    )
    .await;
    Ok(Facts {
        token: Some(token),
        delegation,
        delegation_version,
        user,
        external,
    })
}

/// Rotates a refresh token and issues a new access token from its delegation: fetch, [`decide`],
/// record.
///
/// An active token is replaced by a successor in one append that also records the access token; the
/// append expects the token's stream to hold nothing but the token's issuance, so of several
/// concurrent refreshes (in this process or another sharing the database) exactly one rotates it. The
/// others, and any later presentation of the rotated token, are reuse (RFC 9700 §4.14): within the
/// client's grace window a fresh pair is issued in the same delegation, otherwise the delegation is
/// revoked. A revocation expects the delegation's stream at the version read, so of several concurrent
/// reuses exactly one records it; the others read again and find it ended.
pub async fn grant(
    app: &App,
    client: &Client,
    form: &Form,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let presented = form.require("refresh_token")?;
    let limits = &app.config.limits;
    let scope = form
        .get("scope")
        .map(|s| scope::parse(s, limits.scopes_per_request_max, limits.scope_len_max))
        .transpose()?;
    let dpop_jkt = super::binding().jkt;
    let request = Request {
        scope: scope.as_deref(),
        resource: form.get("resource"),
        dpop_jkt: dpop_jkt.as_deref(),
    };
    let settings = Settings {
        delegation_lifetime_seconds: app.config.tokens.delegation_lifetime_seconds,
    };
    let token_hash = hash(presented);
    for _ in 0..ATTEMPTS {
        let policy = app.policy();
        let facts = fetch(app, &policy, client, &token_hash, request, now).await?;
        let outcome = decide(&policy, client, settings, &facts, request, now)?;
        let (Some(token), Some(delegation)) = (&facts.token, &facts.delegation) else {
            return Err(invalid_grant("unknown refresh token"));
        };
        let recorded = match outcome {
            Outcome::Rotate(decision) => {
                let pair =
                    issue_pair(app, &policy, client, token, delegation, &decision, settings, now).await?;
                let rotation = AppendRequest::to_stream(
                    stream(&token_hash),
                    // Every event but `RefreshTokenIssued` changes the status, so an active token's stream
                    // is at version 1; a rotation, revocation or reuse since this read makes this fail.
                    ExpectedVersion::Exact(ACTIVE_VERSION),
                    vec![Event::RefreshTokenRotated(RefreshTokenRotated {
                        v: V1,
                        token_hash: token.token_hash.clone(),
                        successor_hash: pair.successor_hash.clone(),
                        at: now,
                    })],
                );
                let request = rotation.and(pair.request).with_metadata(pair.metadata);
                app.store.append(request).await.map(|_| Ok(pair.response))
            }
            Outcome::GraceReissue(decision) => {
                let pair =
                    issue_pair(app, &policy, client, token, delegation, &decision, settings, now).await?;
                let request = detected(token, ReuseAction::GraceReissued, now)
                    .and(pair.request)
                    .with_metadata(pair.metadata);
                record(app, request).await?;
                return Ok(pair.response);
            }
            Outcome::RevokeDelegation(reason) => {
                let Some(version) = facts.delegation_version else {
                    return Err(invalid_grant("the grant behind this refresh token has ended"));
                };
                let revoked = delegations::revoke(
                    &delegation.delegation_id,
                    reason,
                    ExpectedVersion::Exact(version),
                    now,
                );
                let request = revoked
                    .and(detected(token, ReuseAction::DelegationRevoked, now))
                    .with_metadata(actor(client, None));
                app.store.append(request).await.map(|_| {
                    Err(invalid_grant(
                        "the refresh token was already used; the grant is revoked",
                    ))
                })
            }
        };
        match recorded {
            Ok(answer) => return answer,
            // Someone else changed this token or its delegation first: read again and answer what it
            // now is.
            Err(AppendError::Conflict { .. }) => continue,
            Err(AppendError::Store(e)) => return Err(OAuthError::from(e)),
            Err(e) => return Err(OAuthError::internal("recording the refresh", e)),
        }
    }
    Err(OAuthError::TemporarilyUnavailable)
}

fn invalid_grant(why: &str) -> OAuthError {
    OAuthError::InvalidGrant(why.into())
}

fn actor(client: &Client, policy_version: Option<String>) -> Metadata {
    Metadata {
        request_id: None,
        actor: Some(format!("client:{}", client.spec.client_id)),
        policy_version,
    }
}

/// The `RefreshTokenReuseDetected` record of a rotated token presented again.
fn detected(token: &RefreshToken, action: ReuseAction, now: UnixSeconds) -> AppendRequest {
    AppendRequest::to_stream(
        stream(&token.token_hash),
        ExpectedVersion::Any,
        vec![Event::RefreshTokenReuseDetected(RefreshTokenReuseDetected {
            v: V1,
            token_hash: token.token_hash.clone(),
            delegation_id: token.delegation_id.clone(),
            client_id: token.client_id.clone(),
            action,
            at: now,
        })],
    )
}

/// A new access token and successor refresh token, not yet recorded.
struct Pair {
    response: TokenResponse,
    /// Records the successor refresh token and the access token.
    request: AppendRequest,
    successor_hash: String,
    metadata: Metadata,
}

/// Signs `decision` and mints a successor refresh token in `delegation`, not past its absolute end.
#[allow(clippy::too_many_arguments)]
async fn issue_pair(
    app: &App,
    policy: &Policy,
    client: &Client,
    token: &RefreshToken,
    delegation: &Delegation,
    decision: &Decision,
    settings: Settings,
    now: UnixSeconds,
) -> Result<Pair, OAuthError> {
    let lifetime = app
        .config
        .tokens
        .refresh_token_seconds
        .min(delegation_end(delegation, client, settings).saturating_sub(now));
    let (value, minted) = mint(Minting {
        delegation_id: &delegation.delegation_id,
        client_id: &client.spec.client_id,
        subject: &token.subject,
        scopes: token.scopes.clone(),
        now,
        lifetime_seconds: lifetime,
        parent_hash: Some(token.token_hash.clone()),
    })?;
    let (mut response, access) = prepare_access_token(
        app,
        policy,
        client,
        &token.subject,
        GrantType::RefreshToken,
        decision,
        Some(delegation.delegation_id.clone()),
    )
    .await?;
    response.refresh_token = Some(value.clone());
    Ok(Pair {
        response,
        request: minted.and(access),
        successor_hash: hash(&value),
        metadata: actor(client, Some(policy.version.clone())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::{self, NOW, client};
    use projections::delegations::Revocation;
    use projections::event::{AuthContext, GrantedScope};

    fn policy() -> Policy {
        let toml = r#"
            default_audience = "https://api.example"
            [[authorizers]]
            name = "never"
            type = "deny"
            reason = "retired"
            [[scopes]]
            name = "read"
            [[scopes]]
            name = "write"
            [[scopes]]
            name = "old"
            authorizers = ["never"]
        "#;
        testing::policy(toml)
    }

    fn app_client(grace: u32) -> Client {
        let mut c = client("app");
        c.spec.scopes = vec!["read".into(), "write".into(), "old".into()];
        c.spec.resources = vec!["https://api.example".into(), "https://payments.example".into()];
        c.spec.refresh_reuse_grace_seconds = grace;
        c
    }

    const SETTINGS: Settings = Settings {
        delegation_lifetime_seconds: 90 * 86_400,
    };

    fn token(status: RefreshStatus) -> RefreshToken {
        RefreshToken {
            token_hash: "t".into(),
            delegation_id: "d".into(),
            client_id: "app".into(),
            subject: "sub-ann".into(),
            scopes: vec!["read".into(), "write".into()],
            issued_at: NOW - 100,
            expires_at: Some(NOW + 1_000),
            parent_hash: None,
            status,
            dpop_jkt: None,
        }
    }

    fn delegation() -> Delegation {
        Delegation {
            delegation_id: "d".into(),
            subject: "sub-ann".into(),
            client_id: "app".into(),
            scopes: ["read", "write", "old"]
                .iter()
                .map(|s| GrantedScope {
                    scope: (*s).into(),
                    expires_at: None,
                })
                .collect(),
            authorization_details: Value::Null,
            claims: Value::Null,
            auth: AuthContext::default(),
            grant_type: "authorization_code".into(),
            created_at: NOW - 86_400,
            created_position: 1,
            last_used_at: NOW - 100,
            revoked: None,
            audience: vec!["https://api.example".into()],
        }
    }

    fn given(status: RefreshStatus) -> Facts {
        Facts {
            token: Some(token(status)),
            delegation: Some(delegation()),
            delegation_version: Some(3),
            user: None,
            external: External::default(),
        }
    }

    const PLAIN: Request<'static> = Request {
        scope: None,
        resource: None,
        dpop_jkt: None,
    };

    fn when(facts: &Facts, client: &Client, request: Request<'_>) -> Result<Outcome, OAuthError> {
        decide(&policy(), client, SETTINGS, facts, request, NOW)
    }

    fn rotated(at: UnixSeconds) -> RefreshStatus {
        RefreshStatus::Rotated {
            successor_hash: "s".into(),
            at,
        }
    }

    fn code(outcome: Result<Outcome, OAuthError>) -> String {
        match outcome {
            Err(e) => e.to_string(),
            Ok(Outcome::Rotate(_)) => "rotate".into(),
            Ok(Outcome::GraceReissue(_)) => "grace".into(),
            Ok(Outcome::RevokeDelegation(_)) => "revoke".into(),
        }
    }

    #[test]
    fn refresh_table() {
        let c = app_client(0);
        let graced = app_client(30);
        let mut revoked_delegation = given(RefreshStatus::Active);
        if let Some(d) = revoked_delegation.delegation.as_mut() {
            d.revoked = Some(Revocation {
                reason: RevocationReason::RevokedByUser,
                at: NOW - 5,
            });
        }
        let mut expired = given(RefreshStatus::Active);
        if let Some(t) = expired.token.as_mut() {
            t.expires_at = Some(NOW);
        }
        let mut old_delegation = given(RefreshStatus::Active);
        if let Some(d) = old_delegation.delegation.as_mut() {
            d.created_at = NOW - 90 * 86_400;
        }
        let mut other_client = c.clone();
        other_client.spec.client_id = "other".into();
        let revoked_token = RefreshStatus::Revoked {
            reason: RevocationReason::RevokedByClient,
            at: NOW - 1,
        };
        let bound = |status: RefreshStatus| {
            let mut facts = given(status);
            if let Some(t) = facts.token.as_mut() {
                t.dpop_jkt = Some("key-a".into());
            }
            facts
        };
        let proved_by = |jkt: &'static str| Request {
            dpop_jkt: Some(jkt),
            ..PLAIN
        };
        let old = ["old".to_owned()];
        let cases: Vec<(&str, Facts, &Client, Request<'_>, &str)> = vec![
            (
                "an active token rotates",
                given(RefreshStatus::Active),
                &c,
                PLAIN,
                "rotate",
            ),
            ("an unknown token", Facts::default(), &c, PLAIN, "invalid_grant"),
            (
                "another client's token",
                given(RefreshStatus::Active),
                &other_client,
                PLAIN,
                "invalid_grant",
            ),
            ("an expired token", expired, &c, PLAIN, "invalid_grant"),
            (
                "a revoked token",
                given(revoked_token),
                &c,
                PLAIN,
                "invalid_grant",
            ),
            (
                "a revoked delegation",
                revoked_delegation,
                &c,
                PLAIN,
                "invalid_grant",
            ),
            (
                "past the absolute lifetime",
                old_delegation,
                &c,
                PLAIN,
                "invalid_grant",
            ),
            (
                "reuse without grace",
                given(rotated(NOW - 5)),
                &c,
                PLAIN,
                "revoke",
            ),
            (
                "reuse within grace",
                given(rotated(NOW - 5)),
                &graced,
                PLAIN,
                "grace",
            ),
            (
                "reuse past grace",
                given(rotated(NOW - 31)),
                &graced,
                PLAIN,
                "revoke",
            ),
            (
                "a scope beyond the token's",
                given(RefreshStatus::Active),
                &c,
                Request {
                    scope: Some(&old),
                    ..PLAIN
                },
                "invalid_scope",
            ),
            (
                "an audience the delegation was not given",
                given(RefreshStatus::Active),
                &c,
                Request {
                    resource: Some("https://payments.example"),
                    ..PLAIN
                },
                "invalid_target",
            ),
            (
                "the audience the delegation was given",
                given(RefreshStatus::Active),
                &c,
                Request {
                    resource: Some("https://api.example"),
                    ..PLAIN
                },
                "rotate",
            ),
            (
                "a bound token with a proof by its key rotates",
                bound(RefreshStatus::Active),
                &c,
                proved_by("key-a"),
                "rotate",
            ),
            (
                "a bound token without a proof",
                bound(RefreshStatus::Active),
                &c,
                PLAIN,
                "invalid_dpop_proof",
            ),
            (
                "a bound token with a proof by another key",
                bound(RefreshStatus::Active),
                &c,
                proved_by("key-b"),
                "invalid_grant",
            ),
            (
                "a stolen rotated bound token without its key revokes nothing",
                bound(rotated(NOW - 5)),
                &c,
                proved_by("key-b"),
                "invalid_grant",
            ),
            (
                "an unbound token with a proof rotates",
                given(RefreshStatus::Active),
                &c,
                proved_by("key-a"),
                "rotate",
            ),
        ];
        for (name, facts, client, request, then) in cases {
            assert_eq!(code(when(&facts, client, request)), then, "{name}");
        }
    }

    #[test]
    fn a_rotation_reissues_what_the_policy_allows_now_for_the_granted_audience() {
        let Ok(Outcome::Rotate(d)) = when(&given(RefreshStatus::Active), &app_client(0), PLAIN) else {
            panic!("expected a rotation");
        };
        assert_eq!(d.scope_names(), ["read", "write"]);
        assert_eq!(d.audience, ["https://api.example"]);
    }

    #[test]
    fn the_absolute_lifetime_is_the_clients_own_when_it_sets_one() {
        let mut c = app_client(0);
        c.spec.delegation_lifetime_seconds = Some(3_600);
        assert_eq!(delegation_end(&delegation(), &c, SETTINGS), NOW - 86_400 + 3_600);
        assert_eq!(
            code(when(&given(RefreshStatus::Active), &c, PLAIN)),
            "invalid_grant"
        );
    }
}
