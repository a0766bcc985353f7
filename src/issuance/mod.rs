//! The issuance decision: one pure function from the request, the client and the policy to the scopes,
//! audience and lifetime of a token, with a trail that says why. Every grant type calls it.

use std::collections::BTreeMap;

use projections::clients::Client;
use projections::event::UnixSeconds;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, ScopeConfig};
use crate::oauth::OAuthError;

/// The policy in force: the scope catalogue and lifetimes, identified by a content hash.
#[derive(Debug, Clone)]
pub struct Policy {
    pub scopes: BTreeMap<String, ScopeConfig>,
    pub access_token_seconds: i64,
    pub default_audience: String,
    /// SHA-256 over the canonical JSON of what decisions depend on; recorded with every issuance.
    pub version: String,
}

impl Policy {
    /// The policy a configuration defines.
    pub fn from_config(config: &Config) -> Policy {
        let scopes: BTreeMap<String, ScopeConfig> = config
            .scopes
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        let default_audience = config
            .default_audience
            .clone()
            .unwrap_or_else(|| config.issuer.clone());
        let content = serde_json::json!({
            "scopes": scopes.values().map(|s| serde_json::json!({"name": s.name, "default": s.default})).collect::<Vec<_>>(),
            "access_token_seconds": config.tokens.access_token_seconds,
            "default_audience": default_audience,
        });
        let version = hex::encode(Sha256::digest(projections::chain::canonical_json(&content)));
        Policy {
            scopes,
            access_token_seconds: config.tokens.access_token_seconds,
            default_audience,
            version,
        }
    }
}

/// What a grant asks the pipeline to decide.
#[derive(Debug, Clone)]
pub struct IssuanceRequest<'a> {
    pub client: &'a Client,
    /// `None` when the request named no scope: the defaults apply.
    pub requested: Option<&'a [String]>,
    /// RFC 8707 `resource`.
    pub resource: Option<&'a str>,
    pub grant_type: &'a str,
    pub now: UnixSeconds,
}

/// Why one requested scope was or was not issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Issued,
    UnknownScope,
    NotAllowedForClient,
}

/// One line of the decision trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeTrail {
    pub scope: String,
    pub outcome: Outcome,
}

/// The decision: what the token carries, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub scopes: Vec<String>,
    pub audience: Vec<String>,
    pub issued_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    pub trail: Vec<ScopeTrail>,
    /// Whether the client asked for scopes explicitly (RFC 6749 §5.1: echo `scope` when it differs).
    pub defaulted: bool,
}

/// Decides a token for `request` under `policy`.
pub fn decide(policy: &Policy, request: &IssuanceRequest<'_>) -> Result<Decision, OAuthError> {
    let client = &request.client.spec;
    let audience = match request.resource {
        Some(r) if client.resources.iter().any(|a| a == r) => vec![r.to_owned()],
        Some(_) => {
            return Err(OAuthError::InvalidTarget(
                "the resource is not allowed for this client".into(),
            ));
        }
        None => vec![
            client
                .resources
                .first()
                .cloned()
                .unwrap_or_else(|| policy.default_audience.clone()),
        ],
    };
    let allowed = |s: &str| client.scopes.iter().any(|c| c == s);
    let candidates: Vec<String> = match request.requested {
        Some(r) => r.to_vec(),
        None => policy
            .scopes
            .values()
            .filter(|s| s.default && allowed(&s.name))
            .map(|s| s.name.clone())
            .collect(),
    };
    let trail: Vec<ScopeTrail> = candidates
        .into_iter()
        .map(|scope| {
            let outcome = if !policy.scopes.contains_key(&scope) {
                Outcome::UnknownScope
            } else if !allowed(&scope) {
                Outcome::NotAllowedForClient
            } else {
                Outcome::Issued
            };
            ScopeTrail { scope, outcome }
        })
        .collect();
    let scopes: Vec<String> = trail
        .iter()
        .filter(|t| t.outcome == Outcome::Issued)
        .map(|t| t.scope.clone())
        .collect();
    if scopes.is_empty() {
        return Err(OAuthError::InvalidScope(
            "none of the requested scopes can be granted to this client".into(),
        ));
    }
    Ok(Decision {
        scopes,
        audience,
        issued_at: request.now,
        expires_at: request.now + policy.access_token_seconds,
        trail,
        defaulted: request.requested.is_none(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use projections::event::ClientSpec;

    fn policy() -> Policy {
        let config: Config = Config::parse(
            "t",
            r#"
            default_audience = "https://api"
            [[scopes]]
            name = "read"
            default = true
            [[scopes]]
            name = "write"
            [[scopes]]
            name = "admin"
            "#,
        )
        .unwrap();
        Policy::from_config(&config)
    }

    fn client(scopes: &[&str], resources: &[&str]) -> Client {
        Client {
            spec: ClientSpec {
                client_id: "c".into(),
                name: "C".into(),
                kind: Default::default(),
                audience: Default::default(),
                dynamically_registered: false,
                redirect_uris: vec![],
                grant_types: vec!["client_credentials".into()],
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                token_endpoint_auth_method: "client_secret_basic".into(),
                secret_hash: None,
                jwks: None,
                jwks_uri: None,
                resources: resources.iter().map(|s| s.to_string()).collect(),
                metadata: serde_json::Value::Null,
            },
            disabled: None,
            registered_at: 0,
            updated_at: 0,
        }
    }

    fn decide_for(
        c: &Client,
        requested: Option<&[String]>,
        resource: Option<&str>,
    ) -> Result<Decision, OAuthError> {
        decide(
            &policy(),
            &IssuanceRequest {
                client: c,
                requested,
                resource,
                grant_type: "client_credentials",
                now: 1_000,
            },
        )
    }

    #[test]
    fn requested_scopes_are_cut_to_what_the_client_may_have_with_a_trail() {
        let c = client(&["read", "write"], &[]);
        let req = ["read".to_owned(), "admin".to_owned(), "nope".to_owned()];
        let d = decide_for(&c, Some(&req), None).unwrap();
        assert_eq!(d.scopes, vec!["read"]);
        assert_eq!(
            d.trail.iter().map(|t| t.outcome.clone()).collect::<Vec<_>>(),
            vec![
                Outcome::Issued,
                Outcome::NotAllowedForClient,
                Outcome::UnknownScope
            ]
        );
        assert_eq!((d.issued_at, d.expires_at), (1_000, 1_300));
        assert_eq!(d.audience, vec!["https://api"]);
    }

    #[test]
    fn no_scope_requested_means_the_defaults_the_client_may_have() {
        let d = decide_for(&client(&["read", "write"], &[]), None, None).unwrap();
        assert_eq!((d.scopes, d.defaulted), (vec!["read".to_owned()], true));
        assert!(matches!(
            decide_for(&client(&["write"], &[]), None, None),
            Err(OAuthError::InvalidScope(_))
        ));
    }

    #[test]
    fn nothing_grantable_is_invalid_scope() {
        let req = ["admin".to_owned()];
        assert!(matches!(
            decide_for(&client(&["read"], &[]), Some(&req), None),
            Err(OAuthError::InvalidScope(_))
        ));
    }

    #[test]
    fn a_resource_must_be_registered_for_the_client() {
        let c = client(&["read"], &["https://a", "https://b"]);
        assert_eq!(
            decide_for(&c, None, Some("https://b")).unwrap().audience,
            vec!["https://b"]
        );
        assert_eq!(decide_for(&c, None, None).unwrap().audience, vec!["https://a"]);
        assert!(matches!(
            decide_for(&c, None, Some("https://x")),
            Err(OAuthError::InvalidTarget(_))
        ));
    }
}
