//! Client registration: deciding the events for a registration, an update or a disabling.

use aws_lc_rs::rand::SecureRandom;
use base64::Engine;
use projections::Event;
use projections::clients::Client;
use projections::event::{ClientDisabled, ClientRegistered, ClientSpec, ClientUpdated, UnixSeconds, V1};

use crate::config::{ClientConfig, SUPPORTED_AUTH_METHODS, SUPPORTED_GRANT_TYPES};
use crate::oauth::client_auth::secret_hash;
use crate::store::{AppendRequest, ExpectedVersion};

/// The stream of one client's events.
pub fn stream(client_id: &str) -> String {
    projections::event::streams::client(client_id)
}

/// A fresh 256-bit secret, base64url: shown once, stored only as its SHA-256.
///
/// A fast hash is right here: the secret is 256 random bits, so there is nothing to brute-force; a slow
/// password hash would only cost every token request tens of milliseconds.
pub fn generate_secret() -> Result<String, aws_lc_rs::error::Unspecified> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Why a registration is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistrationError {
    #[error("client {0} already exists")]
    Exists(String),
    #[error("client {0} does not exist")]
    Unknown(String),
    #[error("{0}")]
    Invalid(String),
}

/// Checks a spec's attributes.
pub fn validate(spec: &ClientSpec) -> Result<(), RegistrationError> {
    let invalid = |m: String| Err(RegistrationError::Invalid(m));
    if spec.client_id.is_empty() || spec.client_id.len() > 128 || spec.client_id.contains(':') {
        return invalid("client_id must be 1 to 128 characters without ':'".into());
    }
    if spec.name.is_empty() || spec.name.len() > 200 {
        return invalid("name must be 1 to 200 characters".into());
    }
    if let Some(g) = spec
        .grant_types
        .iter()
        .find(|g| !SUPPORTED_GRANT_TYPES.contains(&g.as_str()))
    {
        return invalid(format!("unsupported grant type {g}"));
    }
    if !SUPPORTED_AUTH_METHODS.contains(&spec.token_endpoint_auth_method.as_str()) {
        return invalid(format!(
            "unsupported token_endpoint_auth_method {}",
            spec.token_endpoint_auth_method
        ));
    }
    if spec.jwks_uri.is_some() {
        return invalid(
            "jwks_uri is not fetched by this server yet; register the keys inline as jwks".into(),
        );
    }
    if spec.token_endpoint_auth_method == "private_key_jwt" && spec.jwks.is_none() {
        return invalid("private_key_jwt needs jwks".into());
    }
    if spec.token_endpoint_auth_method == "none" && spec.grant_types.iter().any(|g| g == "client_credentials")
    {
        return invalid("a public client cannot use client_credentials".into());
    }
    Ok(())
}

/// The append that registers `spec`, which must not exist yet.
pub fn register(
    existing: Option<&Client>,
    spec: ClientSpec,
    now: UnixSeconds,
) -> Result<AppendRequest, RegistrationError> {
    validate(&spec)?;
    if existing.is_some() {
        return Err(RegistrationError::Exists(spec.client_id));
    }
    Ok(AppendRequest::to_stream(
        stream(&spec.client_id),
        ExpectedVersion::NoStream,
        vec![Event::ClientRegistered(ClientRegistered {
            v: V1,
            client: spec,
            at: now,
        })],
    ))
}

/// The append that replaces an existing client's attributes.
pub fn update(
    existing: Option<&Client>,
    spec: ClientSpec,
    now: UnixSeconds,
) -> Result<AppendRequest, RegistrationError> {
    validate(&spec)?;
    if existing.is_none() {
        return Err(RegistrationError::Unknown(spec.client_id));
    }
    Ok(AppendRequest::to_stream(
        stream(&spec.client_id),
        ExpectedVersion::Any,
        vec![Event::ClientUpdated(ClientUpdated {
            v: V1,
            client: spec,
            at: now,
        })],
    ))
}

/// The append that disables a client.
pub fn disable(
    existing: Option<&Client>,
    client_id: &str,
    reason: &str,
    now: UnixSeconds,
) -> Result<AppendRequest, RegistrationError> {
    if existing.is_none() {
        return Err(RegistrationError::Unknown(client_id.to_owned()));
    }
    Ok(AppendRequest::to_stream(
        stream(client_id),
        ExpectedVersion::Any,
        vec![Event::ClientDisabled(ClientDisabled {
            v: V1,
            client_id: client_id.into(),
            reason: reason.into(),
            at: now,
        })],
    ))
}

/// The spec a config file entry describes.
pub fn spec_from_config(c: &ClientConfig) -> ClientSpec {
    ClientSpec {
        client_id: c.client_id.clone(),
        name: c.name.clone(),
        kind: c.kind,
        audience: c.audience,
        dynamically_registered: false,
        redirect_uris: c.redirect_uris.clone(),
        grant_types: c.grant_types.clone(),
        scopes: c.scopes.clone(),
        token_endpoint_auth_method: c.token_endpoint_auth_method.clone(),
        secret_hash: c.secret_sha256.clone().map(|h| h.to_ascii_lowercase()),
        jwks: c.jwks.clone(),
        jwks_uri: None,
        resources: c.resources.clone(),
        metadata: serde_json::Value::Null,
        require_pushed_authorization_requests: c.require_pushed_authorization_requests,
        refresh_reuse_grace_seconds: c.refresh_reuse_grace_seconds,
    }
}

/// The append (if any) that brings a config-file client into the ledger: register when absent, update
/// when its attributes changed, nothing when they match.
pub fn bootstrap(
    existing: Option<&Client>,
    config: &ClientConfig,
    now: UnixSeconds,
) -> Result<Option<AppendRequest>, RegistrationError> {
    let spec = spec_from_config(config);
    match existing {
        None => register(None, spec, now).map(Some),
        Some(c) if c.spec == spec => Ok(None),
        Some(c) => update(Some(c), spec, now).map(Some),
    }
}

/// Hashes a presented secret the way registrations store it.
pub fn hash_secret(secret: &str) -> String {
    secret_hash(secret)
}
