//! Issuers the server trusts to assert who a user is (RFC 7523): their configuration and its record in
//! the ledger (`issuers.rs`), their keys (`jwks.rs`), and the pure validation of an assertion
//! (`assertion.rs`). [`verify`] puts them together for the grants that accept a foreign JWT.

pub mod assertion;
pub mod issuers;
pub mod jwks;

use projections::event::{SubjectMapping, UnixSeconds};
use projections::users::User;
use serde_json::Value;

use crate::app::App;
use crate::oauth::OAuthError;
use crate::store::{self, EventStore, StoreError};
use issuers::TrustedIssuerConfig;
use jwks::KeySource;

/// Why an assertion is not accepted. Each says which check failed and nothing else: no key material,
/// no list of the issuers trusted.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("the assertion is not a well-formed signed JWT")]
    Malformed,
    #[error("the assertion's issuer is not trusted")]
    UnknownIssuer,
    #[error("{0}")]
    Algorithm(String),
    #[error("no key of the issuer matches the assertion's kid")]
    UnknownKey,
    #[error("the assertion's signature does not verify")]
    Signature,
    #[error("the issuer's keys cannot be fetched now")]
    KeysUnavailable,
    #[error("the assertion has no sub")]
    MissingSubject,
    #[error("the issuer may not assert this subject")]
    SubjectNotAllowed,
    #[error("the assertion's aud names neither this server's issuer nor its token endpoint")]
    Audience,
    #[error("the assertion has no exp")]
    MissingExpiry,
    #[error("the assertion has expired")]
    Expired,
    #[error("the assertion's exp is more than {0} seconds ahead")]
    TooLong(i64),
    #[error("the assertion is not valid yet (nbf)")]
    NotYetValid,
    #[error("the assertion was issued in the future (iat)")]
    IssuedInFuture,
    #[error("the assertion needs a jti of 1 to 256 characters")]
    MissingJti,
    #[error("the assertion's {0}")]
    Claim(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TrustError> for OAuthError {
    fn from(e: TrustError) -> Self {
        match e {
            TrustError::Store(s) => OAuthError::from(s),
            other => OAuthError::InvalidGrant(other.to_string()),
        }
    }
}

/// A verified assertion: who issued it, whom it names, and what that issuer may obtain.
#[derive(Debug, Clone)]
pub struct Verified {
    pub issuer: String,
    /// The `sub` as asserted.
    pub subject: String,
    /// The local user the subject maps to, if there is one.
    pub user: Option<User>,
    pub jti: String,
    /// The assertion's `exp`.
    pub expires_at: UnixSeconds,
    pub claims: Value,
    /// The scopes this issuer's assertions may obtain at most.
    pub scopes: Vec<String>,
}

/// The configured trusted issuers and their keys, built once at start.
#[derive(Debug, Default)]
pub struct Trust {
    issuers: Vec<(TrustedIssuerConfig, KeySource)>,
}

impl Trust {
    /// Builds the key sources for validated `configured` issuers; nothing is fetched yet.
    pub fn new(configured: &[TrustedIssuerConfig]) -> Trust {
        Trust {
            issuers: configured
                .iter()
                .map(|c| (c.clone(), KeySource::new(c.inline_keys(), c.jwks_uri.as_deref())))
                .collect(),
        }
    }

    fn find(&self, issuer: &str) -> Option<&(TrustedIssuerConfig, KeySource)> {
        self.issuers.iter().find(|(c, _)| c.issuer == issuer)
    }
}

/// Verifies `jwt` as an assertion from a trusted issuer at `now` and maps its subject to a local user.
///
/// Its `aud` must name this server's issuer or token endpoint. Single use of the `jti` is the caller's
/// job (a grant claims it once the assertion has verified).
pub async fn verify(app: &App, jwt: &str, now: UnixSeconds) -> Result<Verified, TrustError> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    // Only to choose the issuer whose rules and keys apply; `validate` checks it again after the signature.
    let iss = assertion::segment::<Iss>(jwt, 1)?
        .iss
        .ok_or(TrustError::UnknownIssuer)?;
    let (config, keys) = app.trust.find(&iss).ok_or(TrustError::UnknownIssuer)?;
    let audiences = [app.config.issuer.clone(), app.endpoints.token.clone()];
    let current = keys.current(&app.http, now).await?;
    let asserted = match assertion::validate(jwt, &current, config, &audiences, now) {
        // The issuer may have rotated its key: look once more, at most once a minute.
        Err(TrustError::UnknownKey) => match keys.refetch_for_unknown_kid(&app.http, now).await {
            Some(fresh) => assertion::validate(jwt, &fresh, config, &audiences, now)?,
            None => return Err(TrustError::UnknownKey),
        },
        other => other?,
    };
    let user = local_user(app.store.as_ref(), &config.subject_mapping, &asserted.subject).await?;
    Ok(Verified {
        issuer: asserted.issuer,
        subject: asserted.subject,
        user,
        jti: asserted.jti,
        expires_at: asserted.expires_at,
        claims: asserted.claims,
        scopes: config.scopes.clone(),
    })
}

/// The local user an asserted `sub` names under `mapping`.
async fn local_user(
    store: &dyn EventStore,
    mapping: &SubjectMapping,
    sub: &str,
) -> Result<Option<User>, StoreError> {
    match mapping {
        SubjectMapping::Subject => crate::users::by_subject(store, sub).await,
        SubjectMapping::Username => crate::users::get(store, sub).await,
        SubjectMapping::Attribute { name } => {
            // Users have no index on attributes: this reads every user. Fine for the few thousand
            // accounts a deployment that maps by attribute has; map by subject or username beyond that.
            let users: Vec<User> = store::find(store, store::RowFilter::default()).await?;
            let mut matching = users
                .into_iter()
                .filter(|u| u.attributes.get(name).and_then(Value::as_str) == Some(sub));
            match (matching.next(), matching.next()) {
                (Some(u), None) => Ok(Some(u)),
                // Two users with the same value: the assertion names neither for sure.
                _ => Ok(None),
            }
        }
    }
}
