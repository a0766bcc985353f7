//! The policy in force: built once from the configuration, identified by a content hash, swapped whole
//! on reload so a change applies to the next token issued and never to tokens already out.

use std::collections::BTreeMap;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::policy::authorizers;
use crate::policy::engine::{NamedAuthorizer, PolicyEngine, ScopeDef};
use crate::policy::templates::Template;

/// Scopes, authorizers and lifetimes, compiled.
#[derive(Debug)]
pub struct Policy {
    pub engine: PolicyEngine,
    pub access_token_seconds: i64,
    pub default_audience: String,
    /// SHA-256 (hex) of the canonical JSON in [`Policy::document`].
    pub version: String,
    /// What decisions depend on, as published in `PolicyPublished`.
    pub document: serde_json::Value,
    /// The options of every `http` authorizer, by name: what the grants must ask before deciding. Empty
    /// when there is none, so the common path asks nothing.
    pub http_authorizers: BTreeMap<String, crate::policy::authorizers::http::HttpConfig>,
}

impl Policy {
    /// Compiles the policy a configuration defines; `Err` names the key at fault.
    pub fn from_config(config: &Config) -> Result<Policy, (String, String)> {
        let mut named = Vec::with_capacity(config.authorizers.len());
        let mut http_authorizers = BTreeMap::new();
        for (i, a) in config.authorizers.iter().enumerate() {
            if config.authorizers[..i].iter().any(|b| b.name == a.name) {
                return Err((
                    format!("authorizers[{i}].name"),
                    format!("{:?} is defined twice", a.name),
                ));
            }
            let authorizer = authorizers::build(a).map_err(|e| (format!("authorizers[{i}]"), e))?;
            if let authorizers::AuthorizerKind::Http(c) = &a.kind {
                http_authorizers.insert(a.name.clone(), c.clone());
            }
            named.push(NamedAuthorizer {
                name: a.name.clone(),
                type_name: a.kind.type_name(),
                authorizer,
            });
        }
        let mut scopes = Vec::with_capacity(config.scopes.len());
        for (i, s) in config.scopes.iter().enumerate() {
            let template = Template::parse(&s.name).map_err(|e| (format!("scopes[{i}].name"), e))?;
            let mut assigned = Vec::with_capacity(s.authorizers.len());
            for name in &s.authorizers {
                let index = named.iter().position(|a| &a.name == name).ok_or_else(|| {
                    (
                        format!("scopes[{i}].authorizers"),
                        format!("no authorizer is named {name:?}"),
                    )
                })?;
                assigned.push(index);
            }
            scopes.push(ScopeDef {
                name: s.name.clone(),
                template,
                description: s.description.clone(),
                default: s.default,
                lifetime_seconds: s.lifetime_seconds,
                consent_lifetime_seconds: s.consent_lifetime_seconds,
                authorizers: assigned,
            });
        }
        let default_audience = config
            .default_audience
            .clone()
            .unwrap_or_else(|| config.issuer.clone());
        let document = json!({
            "scopes": config.scopes,
            "authorizers": config.authorizers,
            "strict_consent": config.policy.strict_consent,
            "access_token_seconds": config.tokens.access_token_seconds,
            "default_audience": default_audience,
        });
        let version = hex::encode(Sha256::digest(projections::chain::canonical_json(&document)));
        Ok(Policy {
            engine: PolicyEngine::new(scopes, named, config.policy.strict_consent),
            access_token_seconds: config.tokens.access_token_seconds,
            default_audience,
            version,
            document,
            http_authorizers,
        })
    }

    /// How long a consent `client` is given to `scope` stands: the shorter of the scope's and the
    /// client's consent lifetimes; `None` (until revoked) when neither sets one.
    pub fn consent_lifetime_seconds(
        &self,
        scope: &str,
        client: &projections::event::ClientSpec,
    ) -> Option<i64> {
        match self.engine.find(scope) {
            Some((def, _)) => def.consent_lifetime_seconds_for(client),
            None => client.consent_lifetime_seconds,
        }
    }

    /// Names of the configured scopes and templates.
    pub fn scope_names(&self) -> impl Iterator<Item = &str> {
        self.engine.scopes.iter().map(|s| s.name.as_str())
    }

    /// The scopes in `scopes` (a client's registration) that no configured scope declares: neither a
    /// configured name or template, nor a value a template matches. Such a scope can never be granted.
    pub fn undeclared_scopes<'s>(&self, scopes: &'s [String]) -> Vec<&'s str> {
        scopes
            .iter()
            .map(String::as_str)
            .filter(|scope| {
                *scope != super::AUDIT_SCOPE
                    && !self
                        .engine
                        .scopes
                        .iter()
                        .any(|s| s.name == *scope || s.template.matches(scope).is_some())
            })
            .collect()
    }
}

/// What to tell whoever registered a client holding `undeclared` scopes.
pub fn undeclared_message(undeclared: &[&str]) -> String {
    let names: Vec<String> = undeclared.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "scope {} is not defined under [[scopes]], so it could never be granted; declare it in the \
         configuration first (see docs/configuration.md)",
        names.join(", ")
    )
}
