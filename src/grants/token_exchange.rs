//! RFC 8693: OAuth 2.0 Token Exchange, for tokens this server issued (the access-token exchange: a
//! service trades a broad token for a narrower one, or for one meant for another of its resources).
//!
//! The subject token is one of this server's access tokens, refresh tokens (only the exchanging client's
//! own: a refresh token is a bearer secret of the client it was issued to) or ID tokens (only one whose
//! `aud` is the exchanging client). Whatever it is, the new token belongs to the same delegation, so it
//! ends when that delegation does; a client-credentials token has none, and neither has its exchange.
//!
//! Delegation or impersonation is decided by the subject token, not by the parameters: a subject token
//! that names who may act for it (`may_act`) is exchanged only with that actor. With an actor the new
//! token carries `act` (nested when the subject token already had one); without one the client must be
//! allowed to impersonate. Scopes only narrow and the token never outlives its subject token; its
//! audience is one of the exchanging client's registered resources. Errors follow RFC 8693 §2.2.2: a
//! subject or actor token that is not active is `invalid_grant`; a request the client's settings or the
//! subject token's `may_act` refuse is `invalid_request`.

use projections::clients::Client;
use projections::delegations::Delegation;
use projections::event::{Actor, AuthContext, Party, TokenExchangeSettings, UnixSeconds};
use projections::queries;
use projections::refresh_tokens::RefreshToken;
use projections::users::User;
use serde_json::{Value, json};

use super::refresh::{self, Minting};
use super::{Exchanged, GrantType, TokenResponse, prepare_exchanged_token};
use crate::access_tokens::{self, Found};
use crate::app::App;
use crate::issuance::{self, Decision, IssuanceRequest, Policy};
use crate::oauth::form::Form;
use crate::oauth::{OAuthError, scope};
use crate::policy::external::{self, External};
use crate::store;

/// The `grant_type` of a token exchange.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// Token type identifiers (RFC 8693 §3).
pub mod token_types {
    /// An OAuth access token.
    pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
    /// An OAuth refresh token.
    pub const REFRESH_TOKEN: &str = "urn:ietf:params:oauth:token-type:refresh_token";
    /// An OpenID Connect ID token.
    pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
    /// A JWT from some issuer.
    pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
}

/// A subject token, by the kind `subject_token_type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectToken<'a> {
    /// One of this server's access tokens.
    AccessToken(&'a str),
    /// One of this server's refresh tokens, by its value.
    RefreshToken(&'a str),
    /// One of this server's ID tokens.
    IdToken(&'a str),
    /// A JWT from a trusted issuer (`foreign_exchange.rs`).
    Jwt(&'a str),
}

impl<'a> SubjectToken<'a> {
    /// Reads `subject_token` as the type `subject_token_type` names.
    pub fn parse(value: &'a str, token_type: &str) -> Result<SubjectToken<'a>, OAuthError> {
        match token_type {
            token_types::ACCESS_TOKEN => Ok(SubjectToken::AccessToken(value)),
            token_types::REFRESH_TOKEN => Ok(SubjectToken::RefreshToken(value)),
            token_types::ID_TOKEN => Ok(SubjectToken::IdToken(value)),
            token_types::JWT => Ok(SubjectToken::Jwt(value)),
            other => Err(not_accepted("subject_token_type", other)),
        }
    }
}

/// An actor token, by the kind `actor_token_type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorToken<'a> {
    /// One of this server's access tokens, issued to the exchanging client; its subject acts.
    AccessToken(&'a str),
}

impl<'a> ActorToken<'a> {
    /// Reads `actor_token` and `actor_token_type`, which come together or not at all.
    pub fn parse(value: Option<&'a str>, token_type: Option<&str>) -> Result<Option<Self>, OAuthError> {
        match (value, token_type) {
            (None, None) => Ok(None),
            (Some(v), Some(token_types::ACCESS_TOKEN)) => Ok(Some(ActorToken::AccessToken(v))),
            (Some(_), Some(other)) => Err(not_accepted("actor_token_type", other)),
            (Some(_), None) => Err(OAuthError::InvalidRequest(
                "actor_token_type is required with actor_token".into(),
            )),
            (None, Some(_)) => Err(OAuthError::InvalidRequest(
                "actor_token_type was sent without actor_token".into(),
            )),
        }
    }
}

fn not_accepted(parameter: &str, value: &str) -> OAuthError {
    OAuthError::InvalidRequest(format!("{parameter} {value} is not accepted"))
}

/// What the client asks to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// An access token (the default).
    AccessToken,
    /// An access token and a refresh token in the same delegation.
    RefreshToken,
}

impl Requested {
    /// Reads `requested_token_type`.
    pub fn parse(value: Option<&str>) -> Result<Requested, OAuthError> {
        match value {
            None | Some(token_types::ACCESS_TOKEN) => Ok(Requested::AccessToken),
            Some(token_types::REFRESH_TOKEN) => Ok(Requested::RefreshToken),
            Some(other) => Err(OAuthError::InvalidRequest(format!(
                "requested_token_type {other} is not issued by token exchange"
            ))),
        }
    }
}

/// The exchange request's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `scope`: narrows the subject token's scopes; all of them when absent.
    pub scope: Option<&'a [String]>,
    /// `resource` or `audience` (RFC 8707, RFC 8693 §2.1): one of the client's registered resources.
    pub target: Option<&'a str>,
    pub requested: Requested,
    /// Whether an `actor_token` was presented.
    pub actor_token: bool,
}

/// Which kind of token the subject token was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    AccessToken,
    RefreshToken,
    IdToken,
}

impl SubjectKind {
    /// Its token type identifier.
    pub fn token_type(self) -> &'static str {
        match self {
            SubjectKind::AccessToken => token_types::ACCESS_TOKEN,
            SubjectKind::RefreshToken => token_types::REFRESH_TOKEN,
            SubjectKind::IdToken => token_types::ID_TOKEN,
        }
    }
}

/// What a subject token stands for, as the ledger recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub kind: SubjectKind,
    /// How the ledger names it: a JWT's `jti`, a refresh token's hash.
    pub reference: String,
    /// Whose token it is (`sub`).
    pub subject: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Its scopes (an ID token's are its delegation's).
    pub scopes: Vec<String>,
    pub audience: Vec<String>,
    pub delegation_id: Option<String>,
    pub expires_at: Option<UnixSeconds>,
    /// Judged by the same query introspection uses, at the request's instant.
    pub active: bool,
    pub act: Option<Actor>,
    pub may_act: Option<Party>,
}

/// The party an actor token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acting {
    /// The actor token's `jti`.
    pub jti: String,
    /// The actor token's subject: who acts.
    pub subject: String,
    /// The client the actor token was issued to.
    pub client_id: String,
    pub active: bool,
}

/// What an exchange is decided on, read before deciding.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `None` when the subject token is not one of this server's (or not this client's to present).
    pub subject: Option<Subject>,
    /// `None` when no actor token was presented or it is not one of this server's access tokens.
    pub actor: Option<Acting>,
    /// The subject token's delegation.
    pub delegation: Option<Delegation>,
    /// The subject, when it is a local user.
    pub user: Option<User>,
    /// The subject's attributes, as the authorizers see them.
    pub attributes: Value,
    pub external: External,
}

/// Server settings an exchange is decided under.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// This server's issuer: a `may_act` naming another issuer matches none of its actors.
    pub issuer: &'a str,
    pub refresh: refresh::Settings,
    /// `[tokens] refresh_token_seconds`.
    pub refresh_token_seconds: i64,
}

/// What an exchange becomes: the access token to issue, in which delegation, acting for whom, and
/// whether a refresh token comes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub decision: Decision,
    pub subject: String,
    pub delegation_id: Option<String>,
    pub act: Option<Actor>,
    /// The refresh token's lifetime, when one is issued.
    pub refresh_token_seconds: Option<i64>,
    /// Which subject (and actor) token were exchanged, for the decision trail.
    pub from: Value,
}

fn invalid_grant(why: &str) -> OAuthError {
    OAuthError::InvalidGrant(why.into())
}

fn invalid_request(why: &str) -> OAuthError {
    OAuthError::InvalidRequest(why.into())
}

/// Who acts for the subject in the new token: routed on the subject token's claims (`may_act`, an
/// earlier `act`), so leaving out the actor token skips nothing. `actor` is `None` without an actor
/// token, `Some(None)` for one that is not this server's access token. Pure.
pub(super) fn who_acts(
    exchange: &TokenExchangeSettings,
    me: &str,
    issuer: &str,
    actor: Option<Option<&Acting>>,
    may_act: Option<&Party>,
    prior: Option<&Actor>,
) -> Result<Option<Actor>, OAuthError> {
    let actor = match actor {
        None => None,
        Some(Some(a)) if a.active => Some(a),
        Some(_) => return Err(invalid_grant("the actor token is not active")),
    };
    if actor.is_some_and(|a| a.client_id != me) {
        return Err(invalid_request(
            "the actor token must be an access token issued to this client",
        ));
    }
    if let Some(may_act) = may_act {
        let Some(a) = actor else {
            return Err(invalid_request(
                "the subject token names who may act for its subject (may_act); an actor_token is required",
            ));
        };
        let same_issuer = may_act.iss.as_deref().is_none_or(|iss| iss == issuer);
        if a.subject != may_act.sub || !same_issuer {
            return Err(invalid_request(
                "the actor is not the party the subject token allows to act (may_act)",
            ));
        }
    }
    match actor {
        Some(a) => {
            if !exchange.actors.allows(&a.subject) {
                return Err(invalid_request(
                    "this client may not exchange tokens for this actor",
                ));
            }
            Ok(Some(Actor {
                sub: a.subject.clone(),
                act: prior.cloned().map(Box::new),
            }))
        }
        None => {
            if !exchange.impersonation {
                return Err(invalid_request(
                    "this client may not exchange a token without an actor_token (impersonation)",
                ));
            }
            // Whoever already acted in the subject token still does.
            Ok(prior.cloned())
        }
    }
}

/// Decides an exchange. Pure: the subject token and its delegation, the actor, the client's settings,
/// then the policy in force through the one issuance pipeline.
pub fn decide(
    policy: &Policy,
    client: &Client,
    settings: Settings<'_>,
    facts: &Facts,
    request: Request<'_>,
    now: UnixSeconds,
) -> Result<Outcome, OAuthError> {
    let me = client.spec.client_id.as_str();
    let exchange = client
        .spec
        .token_exchange
        .as_ref()
        .ok_or_else(|| OAuthError::UnauthorizedClient("this client may not exchange tokens".into()))?;
    let registered = |r: &str| client.spec.resources.iter().any(|a| a == r);

    // The subject token: active, and this client's to present.
    let subject = facts
        .subject
        .as_ref()
        .filter(|s| s.active && s.expires_at.is_none_or(|exp| now < exp))
        .ok_or_else(|| invalid_grant("the subject token is not active"))?;
    let presentable = match subject.kind {
        // Issued to this client, or to be sent to a resource this client serves.
        SubjectKind::AccessToken => subject.client_id == me || subject.audience.iter().any(|a| registered(a)),
        SubjectKind::RefreshToken => subject.client_id == me,
        SubjectKind::IdToken => subject.audience.iter().any(|a| a == me),
    };
    if !presentable {
        return Err(invalid_grant(match subject.kind {
            SubjectKind::AccessToken => {
                "the subject token was issued neither to this client nor for a resource it registered"
            }
            SubjectKind::RefreshToken => "the subject token is another client's refresh token",
            SubjectKind::IdToken => "the subject ID token's audience is another client",
        }));
    }
    let delegation = match &subject.delegation_id {
        Some(id) => Some(
            facts
                .delegation
                .as_ref()
                .filter(|d| &d.delegation_id == id && d.is_active_at(now))
                .ok_or_else(|| invalid_grant("the grant behind the subject token has ended"))?,
        ),
        None if subject.kind == SubjectKind::AccessToken => None,
        None => return Err(invalid_grant("the subject token belongs to no grant")),
    };
    if facts.user.as_ref().is_some_and(|u| !u.is_enabled()) {
        return Err(invalid_grant("the user's account is disabled"));
    }

    let act = who_acts(
        exchange,
        me,
        settings.issuer,
        request.actor_token.then_some(facts.actor.as_ref()),
        subject.may_act.as_ref(),
        subject.act.as_ref(),
    )?;

    // A refresh token continues this client's own delegation, for the subject alone.
    let refresh_token_seconds = match request.requested {
        Requested::AccessToken => None,
        Requested::RefreshToken => {
            let may_refresh = exchange.refresh_tokens
                && client
                    .spec
                    .grant_types
                    .iter()
                    .any(|g| g == GrantType::RefreshToken.name());
            if !may_refresh {
                return Err(invalid_request(
                    "this client may not receive refresh tokens by token exchange",
                ));
            }
            let Some(d) = delegation.filter(|d| d.client_id == me) else {
                return Err(invalid_request(
                    "a refresh token continues the client's own grant; the subject token's is not",
                ));
            };
            if act.is_some() {
                return Err(invalid_request("a refresh token cannot carry an actor (act)"));
            }
            let lifetime = settings
                .refresh_token_seconds
                .min(refresh::delegation_end(d, client, settings.refresh).saturating_sub(now));
            if lifetime <= 0 {
                return Err(invalid_request(
                    "the grant has reached its absolute lifetime; no refresh token can continue it",
                ));
            }
            Some(lifetime)
        }
    };

    // Scopes narrow: what is asked must be in the subject token.
    let held = held_scopes(subject, delegation, now);
    if let Some(extra) = request.scope.and_then(|r| r.iter().find(|s| !held.contains(s))) {
        return Err(OAuthError::InvalidScope(format!(
            "{extra} is not in the subject token's scope"
        )));
    }
    let wanted = request.scope.map_or(held, <[String]>::to_vec);

    // The audience: one of this client's registered resources; by default the subject token's own, if
    // this client registered it, else the client's default.
    let target = match request.target {
        Some(r) if registered(r) => Some(r.to_owned()),
        Some(_) => {
            return Err(OAuthError::InvalidTarget(
                "the audience is not a resource this client registered".into(),
            ));
        }
        None => subject.audience.iter().find(|a| registered(a)).cloned(),
    };
    // The delegation as this exchange sees it: it may be re-targeted within the client's resources.
    let view = delegation.map(|d| Delegation {
        audience: vec![target.clone().unwrap_or_else(|| {
            client
                .spec
                .resources
                .first()
                .cloned()
                .unwrap_or_else(|| policy.default_audience.clone())
        })],
        ..d.clone()
    });
    let no_auth = AuthContext::default();
    let mut decision = issuance::decide(
        policy,
        &IssuanceRequest {
            client,
            subject: &subject.subject,
            subject_attributes: &facts.attributes,
            requested: Some(&wanted),
            resource: target.as_deref(),
            grant_type: GRANT_TYPE,
            user_present: false,
            auth: delegation.map_or(&no_auth, |d| &d.auth),
            delegation: view.as_ref(),
            authorization_details: delegation.map_or(&Value::Null, |d| &d.authorization_details),
            // Continuing a delegation: its own consent stands. Without one (a client-credentials token)
            // nobody can consent, so a scope needing consent is dropped.
            consents: &[],
            approved_now: &[],
            fresh_since: None,
            external: &facts.external,
            now,
        },
    )?;
    // Never outlive the subject token.
    if let Some(end) = subject.expires_at {
        decision.expires_at = decision.expires_at.min(end);
    }
    let from = json!({
        "subject_token_type": subject.kind.token_type(),
        "subject_token": subject.reference,
        "actor_token": facts.actor.as_ref().filter(|_| request.actor_token).map(|a| &a.jti),
    });
    Ok(Outcome {
        decision,
        subject: subject.subject.clone(),
        delegation_id: subject.delegation_id.clone(),
        act,
        refresh_token_seconds,
        from,
    })
}

/// The scopes a subject token carries: its own, or for an ID token its delegation's at `now`.
fn held_scopes(subject: &Subject, delegation: Option<&Delegation>, now: UnixSeconds) -> Vec<String> {
    match (subject.kind, delegation) {
        (SubjectKind::IdToken, Some(d)) => d.scopes_at(now).map(|g| g.scope.clone()).collect(),
        _ => subject.scopes.clone(),
    }
}

/// The facts a verified JWT of this server gives.
fn from_found(kind: SubjectKind, f: Found) -> Subject {
    Subject {
        kind,
        reference: f.token.jti,
        subject: f.token.subject,
        client_id: f.token.client_id,
        scopes: f.token.scopes,
        audience: f.token.audience,
        delegation_id: f.token.delegation_id,
        expires_at: Some(f.token.expires_at),
        active: f.active,
        act: f.token.act,
        may_act: f.token.may_act,
    }
}

/// The actor token's record: `None` without an actor token, `Some(None)` for one that is not one of
/// this server's access tokens.
pub(super) async fn fetch_actor(
    app: &App,
    actor_token: Option<ActorToken<'_>>,
    now: UnixSeconds,
) -> Result<Option<Option<Acting>>, OAuthError> {
    let Some(ActorToken::AccessToken(jwt)) = actor_token else {
        return Ok(None);
    };
    let found = access_tokens::find(app.store.as_ref(), &app.config.issuer, jwt, now).await?;
    Ok(Some(found.map(|f| Acting {
        jti: f.token.jti,
        subject: f.token.subject,
        client_id: f.token.client_id,
        active: f.active,
    })))
}

/// Reads what [`decide`] needs: the subject token's record and its delegation, the actor token's, the
/// subject's attributes, and the external decision points' verdicts.
pub async fn fetch(
    app: &App,
    policy: &Policy,
    client: &Client,
    subject_token: SubjectToken<'_>,
    actor_token: Option<ActorToken<'_>>,
    request: Request<'_>,
    now: UnixSeconds,
) -> Result<Facts, OAuthError> {
    let store = app.store.as_ref();
    let issuer = app.config.issuer.as_str();
    let subject = match subject_token {
        SubjectToken::AccessToken(jwt) => access_tokens::find(store, issuer, jwt, now)
            .await?
            .map(|f| from_found(SubjectKind::AccessToken, f)),
        SubjectToken::IdToken(jwt) => access_tokens::find_id_token(store, issuer, jwt, now)
            .await?
            .map(|f| from_found(SubjectKind::IdToken, f)),
        SubjectToken::RefreshToken(value) => refresh_subject(app, client, value, now).await?,
        // Exchanged by `foreign_exchange`, which `grant` hands it to; nothing of this server's.
        SubjectToken::Jwt(_) => None,
    };
    let actor = fetch_actor(app, actor_token, now).await?.flatten();
    let Some(subject) = subject else {
        return Ok(Facts {
            actor,
            ..Facts::default()
        });
    };
    let delegation: Option<Delegation> = match &subject.delegation_id {
        Some(id) => store::get(store, id).await?,
        None => None,
    };
    let user = crate::users::by_subject(store, &subject.subject).await?;
    let attributes = match (&user, &subject.delegation_id) {
        (Some(u), _) => u.attributes.clone(),
        // A client-credentials token: its subject is the client, whose metadata the policies read.
        (None, None) => store::get::<Client>(store, &subject.subject)
            .await?
            .map_or(Value::Null, |c| c.spec.metadata),
        (None, Some(_)) => Value::Null,
    };
    let held = held_scopes(&subject, delegation.as_ref(), now);
    let external = external::fetch(
        &app.http,
        policy,
        external::Asking {
            client: &client.spec,
            subject: &subject.subject,
            grant_type: GRANT_TYPE,
            user_present: false,
            requested: Some(request.scope.unwrap_or(&held)),
            now,
        },
    )
    .await;
    Ok(Facts {
        subject: Some(subject),
        actor,
        delegation,
        user,
        attributes,
        external,
    })
}

/// A refresh token as a subject token: by the hash of its value, and only the exchanging client's (a
/// refresh token of another client is as unknown to this one as a made-up value).
async fn refresh_subject(
    app: &App,
    client: &Client,
    value: &str,
    now: UnixSeconds,
) -> Result<Option<Subject>, OAuthError> {
    let store = app.store.as_ref();
    let token: Option<RefreshToken> = store::get(store, &refresh::hash(value)).await?;
    let Some(token) = token.filter(|t| t.client_id == client.spec.client_id) else {
        return Ok(None);
    };
    let delegation: Option<Delegation> = store::get(store, &token.delegation_id).await?;
    let active = queries::refresh_token_active(&token, Some(client), delegation.as_ref(), now);
    Ok(Some(Subject {
        kind: SubjectKind::RefreshToken,
        reference: token.token_hash,
        subject: token.subject,
        client_id: token.client_id,
        scopes: token.scopes,
        audience: delegation.map(|d| d.audience).unwrap_or_default(),
        delegation_id: Some(token.delegation_id),
        expires_at: token.expires_at,
        active,
        act: None,
        may_act: None,
    }))
}

/// Signs and records what [`decide`] decided, in one append: the access token (with `act`) and, when
/// one was asked for and allowed, a refresh token in the same delegation. Then answers.
async fn record(
    app: &App,
    policy: &Policy,
    client: &Client,
    outcome: Outcome,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let (mut response, mut append) = prepare_exchanged_token(
        app,
        policy,
        client,
        &outcome.subject,
        GrantType::TokenExchange,
        &outcome.decision,
        outcome.delegation_id.clone(),
        Exchanged {
            act: outcome.act,
            from: Some(outcome.from),
        },
    )
    .await?;
    response.issued_token_type = Some(token_types::ACCESS_TOKEN);
    if let (Some(lifetime), Some(delegation_id)) = (outcome.refresh_token_seconds, &outcome.delegation_id) {
        let (value, minted) = refresh::mint(Minting {
            delegation_id,
            client_id: &client.spec.client_id,
            subject: &outcome.subject,
            scopes: outcome.decision.scope_names(),
            now,
            lifetime_seconds: lifetime,
            parent_hash: None,
        })?;
        response.refresh_token = Some(value);
        append = append.and(minted);
    }
    super::record(app, append).await?;
    Ok(response)
}

/// Exchanges a subject token for a new access token: parse, fetch, [`decide`], record.
pub async fn grant(
    app: &App,
    client: &Client,
    form: &Form,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let subject_token = SubjectToken::parse(
        form.require("subject_token")?,
        form.require("subject_token_type")?,
    )?;
    let actor_token = ActorToken::parse(form.get("actor_token"), form.get("actor_token_type"))?;
    let requested = Requested::parse(form.get("requested_token_type"))?;
    let target = match (form.get("resource"), form.get("audience")) {
        (Some(r), Some(a)) if r != a => {
            return Err(OAuthError::InvalidTarget(
                "resource and audience name different targets; a token has one".into(),
            ));
        }
        (r, a) => r.or(a),
    };
    let limits = &app.config.limits;
    let scope = form
        .get("scope")
        .map(|s| scope::parse(s, limits.scopes_per_request_max, limits.scope_len_max))
        .transpose()?;
    let request = Request {
        scope: scope.as_deref(),
        target,
        requested,
        actor_token: actor_token.is_some(),
    };
    let settings = Settings {
        issuer: &app.config.issuer,
        refresh: refresh::Settings {
            delegation_lifetime_seconds: app.config.tokens.delegation_lifetime_seconds,
        },
        refresh_token_seconds: app.config.tokens.refresh_token_seconds,
    };
    if let SubjectToken::Jwt(jwt) = subject_token {
        let actor = fetch_actor(app, actor_token, now).await?;
        return super::foreign_exchange::grant(app, client, jwt, actor, request, now).await;
    }
    let policy = app.policy();
    let facts = fetch(app, &policy, client, subject_token, actor_token, request, now).await?;
    let outcome = decide(&policy, client, settings, &facts, request, now)?;
    record(app, &policy, client, outcome, now).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::{self, NOW, client};
    use projections::delegations::Revocation;
    use projections::event::{Actors, GrantedScope, RevocationReason, TokenExchangeSettings};

    const ISSUER: &str = "https://id.example";
    const API: &str = "https://api.example";
    const PAYMENTS: &str = "https://payments.example";

    fn policy() -> Policy {
        testing::policy(
            r#"
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
        "#,
        )
    }

    /// The service `svc`: it serves the API and may target the payments API too.
    fn svc(settings: TokenExchangeSettings) -> Client {
        let mut c = client("svc");
        c.spec.grant_types = vec![GRANT_TYPE.into(), "refresh_token".into()];
        c.spec.scopes = vec!["read".into(), "write".into(), "old".into()];
        c.spec.resources = vec![API.into(), PAYMENTS.into()];
        c.spec.token_exchange = Some(settings);
        c
    }

    fn delegating() -> TokenExchangeSettings {
        TokenExchangeSettings {
            actors: Actors::Any(true),
            ..TokenExchangeSettings::default()
        }
    }

    fn impersonating() -> TokenExchangeSettings {
        TokenExchangeSettings {
            impersonation: true,
            refresh_tokens: true,
            ..TokenExchangeSettings::default()
        }
    }

    const SETTINGS: Settings<'static> = Settings {
        issuer: ISSUER,
        refresh: refresh::Settings {
            delegation_lifetime_seconds: 90 * 86_400,
        },
        refresh_token_seconds: 86_400,
    };

    /// Ann's access token, issued to `app` for the API, from delegation `d`.
    fn subject(kind: SubjectKind) -> Subject {
        Subject {
            kind,
            reference: "jti-1".into(),
            subject: "sub-ann".into(),
            client_id: "app".into(),
            scopes: vec!["read".into(), "write".into()],
            audience: vec![API.into()],
            delegation_id: Some("d".into()),
            expires_at: Some(NOW + 300),
            active: true,
            act: None,
            may_act: None,
        }
    }

    fn delegation(client_id: &str) -> Delegation {
        Delegation {
            delegation_id: "d".into(),
            subject: "sub-ann".into(),
            client_id: client_id.into(),
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
            audience: vec![API.into()],
        }
    }

    fn actor(sub: &str, client_id: &str) -> Option<Acting> {
        Some(Acting {
            jti: "jti-actor".into(),
            subject: sub.into(),
            client_id: client_id.into(),
            active: true,
        })
    }

    fn given(subject: Subject) -> Facts {
        Facts {
            subject: Some(subject),
            delegation: Some(delegation("app")),
            ..Facts::default()
        }
    }

    fn with_actor(mut facts: Facts, acting: Option<Acting>) -> Facts {
        facts.actor = acting;
        facts
    }

    const PLAIN: Request<'static> = Request {
        scope: None,
        target: None,
        requested: Requested::AccessToken,
        actor_token: false,
    };

    const ACTING: Request<'static> = Request {
        actor_token: true,
        ..PLAIN
    };

    /// What the exchange answers: the error code, or the issued scopes, audience and `act` subjects.
    fn then(client: &Client, facts: &Facts, request: Request<'_>) -> String {
        match decide(&policy(), client, SETTINGS, facts, request, NOW) {
            Err(e) => e.to_string(),
            Ok(o) => {
                let mut acts = vec![];
                let mut act = o.act.as_ref();
                while let Some(a) = act {
                    acts.push(a.sub.clone());
                    act = a.act.as_deref();
                }
                format!(
                    "{} @ {} act [{}]{}",
                    o.decision.scope_names().join(" "),
                    o.decision.audience.join(" "),
                    acts.join(" > "),
                    if o.refresh_token_seconds.is_some() {
                        " +refresh"
                    } else {
                        ""
                    }
                )
            }
        }
    }

    #[test]
    fn exchange_table() {
        let may_act = Subject {
            may_act: Some(Party {
                sub: "sub-bob".into(),
                iss: None,
            }),
            ..subject(SubjectKind::AccessToken)
        };
        let may_act_elsewhere = Subject {
            may_act: Some(Party {
                sub: "sub-bob".into(),
                iss: Some("https://other.example".into()),
            }),
            ..subject(SubjectKind::AccessToken)
        };
        let already_acted = Subject {
            act: Some(Actor {
                sub: "sub-carol".into(),
                act: None,
            }),
            ..subject(SubjectKind::AccessToken)
        };
        let inactive = Subject {
            active: false,
            ..subject(SubjectKind::AccessToken)
        };
        let someone_elses = Subject {
            client_id: "other".into(),
            audience: vec!["https://elsewhere.example".into()],
            ..subject(SubjectKind::AccessToken)
        };
        let others_refresh = Subject {
            client_id: "other".into(),
            ..subject(SubjectKind::RefreshToken)
        };
        let own_refresh = Subject {
            client_id: "svc".into(),
            ..subject(SubjectKind::RefreshToken)
        };
        let id_token_for = |aud: &str| Subject {
            client_id: aud.into(),
            scopes: vec!["openid".into()],
            audience: vec![aud.into()],
            ..subject(SubjectKind::IdToken)
        };
        let machine = Subject {
            subject: "batch".into(),
            client_id: "batch".into(),
            delegation_id: None,
            ..subject(SubjectKind::AccessToken)
        };
        let mut revoked = given(subject(SubjectKind::AccessToken));
        if let Some(d) = revoked.delegation.as_mut() {
            d.revoked = Some(Revocation {
                reason: RevocationReason::RevokedByUser,
                at: NOW - 5,
            });
        }
        let mut own_delegation = given(own_refresh.clone());
        own_delegation.delegation = Some(delegation("svc"));
        let read = ["read".to_owned()];
        let widen = ["read".to_owned(), "old".to_owned()];
        let bob = actor("sub-bob", "svc");
        let named = |names: &[&str]| TokenExchangeSettings {
            actors: Actors::Only(names.iter().map(|n| (*n).to_owned()).collect()),
            ..TokenExchangeSettings::default()
        };
        let delegates = svc(delegating());
        let impersonates = svc(impersonating());
        let lists_bob = svc(named(&["sub-bob"]));
        let lists_dan = svc(named(&["sub-dan"]));

        let cases: Vec<(&str, &Client, Facts, Request<'_>, &str)> = vec![
            // Delegation and impersonation, routed on the subject token
            (
                "may_act and its actor: act names the actor",
                &delegates,
                with_actor(given(may_act.clone()), bob.clone()),
                ACTING,
                "read write @ https://api.example act [sub-bob]",
            ),
            (
                "may_act without an actor token, by a client that may impersonate",
                &impersonates,
                given(may_act.clone()),
                PLAIN,
                "invalid_request",
            ),
            (
                "may_act and another actor",
                &delegates,
                with_actor(given(may_act.clone()), actor("sub-eve", "svc")),
                ACTING,
                "invalid_request",
            ),
            (
                "may_act naming another issuer's party",
                &delegates,
                with_actor(given(may_act_elsewhere), bob.clone()),
                ACTING,
                "invalid_request",
            ),
            (
                "a subject token that already had an actor: act nests",
                &delegates,
                with_actor(given(already_acted.clone()), bob.clone()),
                ACTING,
                "read write @ https://api.example act [sub-bob > sub-carol]",
            ),
            (
                "impersonation by a client configured for it",
                &impersonates,
                given(subject(SubjectKind::AccessToken)),
                PLAIN,
                "read write @ https://api.example act []",
            ),
            (
                "impersonation keeps whoever already acted",
                &impersonates,
                given(already_acted),
                PLAIN,
                "read write @ https://api.example act [sub-carol]",
            ),
            (
                "impersonation by a client not configured for it",
                &delegates,
                given(subject(SubjectKind::AccessToken)),
                PLAIN,
                "invalid_request",
            ),
            (
                "an actor the client may not present",
                &impersonates,
                with_actor(given(subject(SubjectKind::AccessToken)), bob.clone()),
                ACTING,
                "invalid_request",
            ),
            (
                "an actor the client lists",
                &lists_bob,
                with_actor(given(subject(SubjectKind::AccessToken)), bob.clone()),
                ACTING,
                "read write @ https://api.example act [sub-bob]",
            ),
            (
                "an actor the client does not list",
                &lists_dan,
                with_actor(given(subject(SubjectKind::AccessToken)), bob.clone()),
                ACTING,
                "invalid_request",
            ),
            (
                "an actor token issued to another client",
                &delegates,
                with_actor(given(may_act.clone()), actor("sub-bob", "other")),
                ACTING,
                "invalid_request",
            ),
            (
                "an actor token that is not active",
                &delegates,
                with_actor(
                    given(may_act),
                    Some(Acting {
                        active: false,
                        ..Acting {
                            jti: "jti-actor".into(),
                            subject: "sub-bob".into(),
                            client_id: "svc".into(),
                            active: true,
                        }
                    }),
                ),
                ACTING,
                "invalid_grant",
            ),
            // Scopes and audiences narrow, within what the client registered
            (
                "a narrower scope",
                &impersonates,
                given(subject(SubjectKind::AccessToken)),
                Request {
                    scope: Some(&read),
                    ..PLAIN
                },
                "read @ https://api.example act []",
            ),
            (
                "a scope beyond the subject token's",
                &impersonates,
                given(subject(SubjectKind::AccessToken)),
                Request {
                    scope: Some(&widen),
                    ..PLAIN
                },
                "invalid_scope",
            ),
            (
                "another registered audience",
                &impersonates,
                given(subject(SubjectKind::AccessToken)),
                Request {
                    target: Some(PAYMENTS),
                    ..PLAIN
                },
                "read write @ https://payments.example act []",
            ),
            (
                "an audience the client did not register",
                &impersonates,
                given(subject(SubjectKind::AccessToken)),
                Request {
                    target: Some("https://elsewhere.example"),
                    ..PLAIN
                },
                "invalid_target",
            ),
            // The subject token
            (
                "an inactive subject token",
                &impersonates,
                given(inactive),
                PLAIN,
                "invalid_grant",
            ),
            (
                "an unknown subject token",
                &impersonates,
                Facts::default(),
                PLAIN,
                "invalid_grant",
            ),
            (
                "a subject token whose delegation was revoked",
                &impersonates,
                revoked,
                PLAIN,
                "invalid_grant",
            ),
            (
                "an access token neither for this client nor its resources",
                &impersonates,
                given(someone_elses),
                PLAIN,
                "invalid_grant",
            ),
            (
                "another client's refresh token",
                &impersonates,
                given(others_refresh),
                PLAIN,
                "invalid_grant",
            ),
            (
                "an ID token issued to this client",
                &impersonates,
                given(id_token_for("svc")),
                PLAIN,
                "read write @ https://api.example act []",
            ),
            (
                "an ID token issued to another client",
                &impersonates,
                given(id_token_for("app")),
                PLAIN,
                "invalid_grant",
            ),
            (
                "a client-credentials token: no delegation, still narrowed",
                &impersonates,
                Facts {
                    subject: Some(machine),
                    ..Facts::default()
                },
                Request {
                    scope: Some(&read),
                    ..PLAIN
                },
                "read @ https://api.example act []",
            ),
            // Refresh tokens
            (
                "a refresh token, not allowed to this client",
                &delegates,
                with_actor(given(subject(SubjectKind::AccessToken)), bob),
                Request {
                    requested: Requested::RefreshToken,
                    ..ACTING
                },
                "invalid_request",
            ),
            (
                "a refresh token in another client's delegation",
                &impersonates,
                given(subject(SubjectKind::AccessToken)),
                Request {
                    requested: Requested::RefreshToken,
                    ..PLAIN
                },
                "invalid_request",
            ),
            (
                "a refresh token in the client's own delegation",
                &impersonates,
                own_delegation,
                Request {
                    requested: Requested::RefreshToken,
                    ..PLAIN
                },
                "read write @ https://api.example act [] +refresh",
            ),
        ];
        for (name, client, facts, request, expected) in cases {
            assert_eq!(then(client, &facts, request), expected, "{name}");
        }
    }

    #[test]
    fn the_exchanged_token_never_outlives_its_subject_token() {
        let short = Subject {
            expires_at: Some(NOW + 10),
            ..subject(SubjectKind::AccessToken)
        };
        let Ok(o) = decide(
            &policy(),
            &svc(impersonating()),
            SETTINGS,
            &given(short),
            PLAIN,
            NOW,
        ) else {
            panic!("expected an exchange");
        };
        assert_eq!(o.decision.expires_at, NOW + 10);
        assert_eq!(o.delegation_id.as_deref(), Some("d"));
    }

    #[test]
    fn subject_token_types_parse_to_their_kind_and_others_are_not_accepted() {
        assert_eq!(
            SubjectToken::parse("t", token_types::REFRESH_TOKEN),
            Ok(SubjectToken::RefreshToken("t"))
        );
        assert_eq!(
            SubjectToken::parse("t", token_types::JWT),
            Ok(SubjectToken::Jwt("t"))
        );
        assert!(matches!(
            SubjectToken::parse("t", "urn:ietf:params:oauth:token-type:saml2"),
            Err(OAuthError::InvalidRequest(m)) if m.contains("is not accepted")
        ));
        assert!(matches!(
            ActorToken::parse(Some("t"), None),
            Err(OAuthError::InvalidRequest(_))
        ));
        assert!(matches!(
            Requested::parse(Some(token_types::ID_TOKEN)),
            Err(OAuthError::InvalidRequest(_))
        ));
    }
}
