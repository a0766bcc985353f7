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
use projections::event::{Actor, AuthContext, Party, UnixSeconds};
use projections::queries;
use projections::refresh_tokens::RefreshToken;
use projections::users::User;
use serde_json::Value;

use super::refresh::{self, Minting};
use super::{GrantType, TokenResponse, prepare_acting_token};
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
}

impl<'a> SubjectToken<'a> {
    /// Reads `subject_token` as the type `subject_token_type` names.
    pub fn parse(value: &'a str, token_type: &str) -> Result<SubjectToken<'a>, OAuthError> {
        match token_type {
            token_types::ACCESS_TOKEN => Ok(SubjectToken::AccessToken(value)),
            token_types::REFRESH_TOKEN => Ok(SubjectToken::RefreshToken(value)),
            token_types::ID_TOKEN => Ok(SubjectToken::IdToken(value)),
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

/// What a subject token stands for, as the ledger recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub kind: SubjectKind,
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
}

fn invalid_grant(why: &str) -> OAuthError {
    OAuthError::InvalidGrant(why.into())
}

fn invalid_request(why: &str) -> OAuthError {
    OAuthError::InvalidRequest(why.into())
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

    // Who acts: routed on the subject token's claims, so leaving out the actor token skips nothing.
    let actor = match (request.actor_token, &facts.actor) {
        (false, _) => None,
        (true, Some(a)) if a.active => Some(a),
        (true, _) => return Err(invalid_grant("the actor token is not active")),
    };
    if actor.is_some_and(|a| a.client_id != me) {
        return Err(invalid_request(
            "the actor token must be an access token issued to this client",
        ));
    }
    if let Some(may_act) = &subject.may_act {
        let Some(a) = actor else {
            return Err(invalid_request(
                "the subject token names who may act for its subject (may_act); an actor_token is required",
            ));
        };
        let same_issuer = may_act.iss.as_deref().is_none_or(|iss| iss == settings.issuer);
        if a.subject != may_act.sub || !same_issuer {
            return Err(invalid_request(
                "the actor is not the party the subject token allows to act (may_act)",
            ));
        }
    }
    let act = match actor {
        Some(a) => {
            if !exchange.actors.allows(&a.subject) {
                return Err(invalid_request("this client may not exchange tokens for this actor"));
            }
            Some(Actor {
                sub: a.subject.clone(),
                act: subject.act.clone().map(Box::new),
            })
        }
        None => {
            if !exchange.impersonation {
                return Err(invalid_request(
                    "this client may not exchange a token without an actor_token (impersonation)",
                ));
            }
            // Whoever already acted in the subject token still does.
            subject.act.clone()
        }
    };

    // A refresh token continues this client's own delegation, for the subject alone.
    let refresh_token_seconds = match request.requested {
        Requested::AccessToken => None,
        Requested::RefreshToken => {
            let may_refresh = exchange.refresh_tokens
                && client.spec.grant_types.iter().any(|g| g == GrantType::RefreshToken.name());
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
    let held: Vec<String> = match (subject.kind, delegation) {
        (SubjectKind::IdToken, Some(d)) => d.scopes_at(now).map(|g| g.scope.clone()).collect(),
        _ => subject.scopes.clone(),
    };
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
    Ok(Outcome {
        decision,
        subject: subject.subject.clone(),
        delegation_id: subject.delegation_id.clone(),
        act,
        refresh_token_seconds,
    })
}

/// The facts a verified JWT of this server gives.
fn from_found(kind: SubjectKind, f: Found) -> Subject {
    Subject {
        kind,
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
    };
    let actor = match actor_token {
        Some(ActorToken::AccessToken(jwt)) => {
            access_tokens::find(store, issuer, jwt, now).await?.map(|f| Acting {
                subject: f.token.subject,
                client_id: f.token.client_id,
                active: f.active,
            })
        }
        None => None,
    };
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
    let external = external::fetch(
        &app.http,
        policy,
        external::Asking {
            client: &client.spec,
            subject: &subject.subject,
            grant_type: GRANT_TYPE,
            user_present: false,
            requested: Some(request.scope.unwrap_or(&subject.scopes)),
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
    let (mut response, mut append) = prepare_acting_token(
        app,
        policy,
        client,
        &outcome.subject,
        GrantType::TokenExchange,
        &outcome.decision,
        outcome.delegation_id.clone(),
        outcome.act,
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
    let policy = app.policy();
    let facts = fetch(app, &policy, client, subject_token, actor_token, request, now).await?;
    let outcome = decide(&policy, client, settings, &facts, request, now)?;
    record(app, &policy, client, outcome, now).await
}
