//! `[[trusted_issuers]]`: the configuration of an issuer whose signed assertions the server accepts, its
//! validation at load, and what the ledger records of it (`TrustedIssuerConfigured` / `Removed`).

use std::collections::BTreeSet;

use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use projections::Event;
use projections::event::{
    SubjectMapping, TrustedIssuerConfigured, TrustedIssuerRemoved, TrustedIssuerSettings, TrustedKeys,
    TrustedSubjects, UnixSeconds, V1, streams,
};
use projections::trusted_issuers::TrustedIssuer;
use serde::Deserialize;
use serde_json::Value;

use crate::store::{self, AppendError, AppendRequest, EventStore, ExpectedVersion, RowFilter};

/// The algorithms an issuer may sign with when its configuration names none: the asymmetric ones.
pub const DEFAULT_ALGORITHMS: &[&str] = &["RS256", "PS256", "ES256", "EdDSA"];

/// Every algorithm an issuer may be allowed. `none` and the HMAC algorithms are never among them: an
/// HMAC "signature" made with the issuer's public key as the secret would verify against anyone who
/// treats that public key as a shared secret.
pub const ASYMMETRIC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// The longest `max_assertion_lifetime_seconds` allowed: used `jti`s are kept this long.
pub const ASSERTION_LIFETIME_LIMIT: i64 = 3600;

fn default_lifetime() -> i64 {
    300
}

fn default_algorithms() -> Vec<String> {
    DEFAULT_ALGORITHMS.iter().map(|a| (*a).to_owned()).collect()
}

/// `subjects = "all"` or `subjects = ["sub-1", "sub-2"]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SubjectsConfig {
    /// Only `"all"` is accepted (checked at validation).
    Word(String),
    List(Vec<String>),
}

/// One `[[trusted_issuers]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuerConfig {
    /// The `iss` its assertions carry, compared exactly.
    pub issuer: String,
    /// Its public keys inline, as a JWK Set (`{ keys = [...] }`).
    #[serde(default)]
    pub jwks: Option<Value>,
    /// Where its JWK Set is fetched: https, or http to a loopback address.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The `sub` values it may assert: `"all"` or a list.
    pub subjects: SubjectsConfig,
    /// How an asserted `sub` names a local user; by default it is the user's subject.
    #[serde(default)]
    pub subject_mapping: SubjectMapping,
    /// The scopes its assertions may obtain at most.
    pub scopes: Vec<String>,
    /// How far ahead of now an assertion's `exp` may be.
    #[serde(default = "default_lifetime")]
    pub max_assertion_lifetime_seconds: i64,
    /// JWS algorithms its assertions may be signed with.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
}

impl TrustedIssuerConfig {
    /// The inline keys, parsed. Only `None` when the keys come from `jwks_uri` (validation guarantees
    /// inline keys parse).
    pub fn inline_keys(&self) -> Option<JwkSet> {
        self.jwks.clone().and_then(|v| serde_json::from_value(v).ok())
    }

    /// Whether `sub` is one this issuer may assert.
    pub fn allows_subject(&self, sub: &str) -> bool {
        match &self.subjects {
            SubjectsConfig::Word(_) => true,
            SubjectsConfig::List(list) => list.iter().any(|s| s == sub),
        }
    }

    /// What the ledger records of this configuration: no key material, only thumbprints or the URL.
    pub fn settings(&self) -> TrustedIssuerSettings {
        let keys = match (&self.jwks_uri, self.inline_keys()) {
            (Some(uri), _) => TrustedKeys::JwksUri { uri: uri.clone() },
            (None, set) => TrustedKeys::Jwks {
                thumbprints: set
                    .map(|s| {
                        s.keys
                            .iter()
                            .filter_map(|k| k.thumbprint(ThumbprintHash::SHA256).ok())
                            .collect()
                    })
                    .unwrap_or_default(),
            },
        };
        TrustedIssuerSettings {
            issuer: self.issuer.clone(),
            keys,
            subjects: match &self.subjects {
                SubjectsConfig::Word(_) => TrustedSubjects::All,
                SubjectsConfig::List(list) => TrustedSubjects::Only {
                    subjects: list.clone(),
                },
            },
            subject_mapping: self.subject_mapping.clone(),
            scopes: self.scopes.clone(),
            max_assertion_lifetime_seconds: self.max_assertion_lifetime_seconds,
            algorithms: self.algorithms.clone(),
        }
    }

    /// Checks what TOML types cannot. `Err` is (key under this entry, problem); `defined` says whether
    /// a scope name is configured (statically or as a template).
    pub fn validate(&self, defined: impl Fn(&str) -> bool) -> Result<(), (&'static str, String)> {
        if self.issuer.is_empty() || self.issuer.len() > 512 {
            return Err(("issuer", "1 to 512 characters".into()));
        }
        match (&self.jwks, &self.jwks_uri) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(("jwks", "give exactly one of jwks and jwks_uri".into()));
            }
            (Some(jwks), None) => validate_inline_keys(jwks).map_err(|p| ("jwks", p))?,
            (None, Some(uri)) => validate_jwks_uri(uri).map_err(|p| ("jwks_uri", p))?,
        }
        match &self.subjects {
            SubjectsConfig::Word(w) if w != "all" => {
                return Err((
                    "subjects",
                    format!("{w:?}: write \"all\" or a list of allowed sub values"),
                ));
            }
            SubjectsConfig::List(list) if list.is_empty() || list.iter().any(String::is_empty) => {
                return Err(("subjects", "a list of non-empty sub values, or \"all\"".into()));
            }
            _ => {}
        }
        if let SubjectMapping::Attribute { name } = &self.subject_mapping
            && name.is_empty()
        {
            return Err(("subject_mapping.name", "names the user attribute".into()));
        }
        if self.scopes.is_empty() {
            return Err(("scopes", "list the scopes its assertions may obtain".into()));
        }
        if let Some(s) = self.scopes.iter().find(|s| !defined(s)) {
            return Err(("scopes", format!("scope {s:?} is not defined under [[scopes]]")));
        }
        if !(1..=ASSERTION_LIFETIME_LIMIT).contains(&self.max_assertion_lifetime_seconds) {
            return Err((
                "max_assertion_lifetime_seconds",
                format!("must be between 1 and {ASSERTION_LIFETIME_LIMIT}"),
            ));
        }
        if self.algorithms.is_empty() {
            return Err(("algorithms", "list at least one algorithm".into()));
        }
        for alg in &self.algorithms {
            if alg.eq_ignore_ascii_case("none") {
                return Err(("algorithms", "\"none\" is never accepted".into()));
            }
            if alg.to_ascii_uppercase().starts_with("HS") {
                return Err((
                    "algorithms",
                    format!("{alg:?}: HMAC algorithms are never accepted from an issuer"),
                ));
            }
            if !ASYMMETRIC_ALGORITHMS.contains(&alg.as_str()) {
                return Err((
                    "algorithms",
                    format!("{alg:?} is not one of {}", ASYMMETRIC_ALGORITHMS.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

/// Inline keys: a JWK Set of public signing keys; with more than one key each names its `kid`.
fn validate_inline_keys(jwks: &Value) -> Result<(), String> {
    let set: JwkSet = serde_json::from_value(jwks.clone())
        .map_err(|e| format!("not a JWK Set ({{ keys = [...] }}): {e}"))?;
    if set.keys.is_empty() {
        return Err("holds no key".into());
    }
    if let Some(keys) = jwks.get("keys").and_then(Value::as_array)
        && keys.iter().any(|k| k.get("d").is_some() || k.get("k").is_some())
    {
        return Err("holds private or symmetric key material; give only public keys".into());
    }
    for key in &set.keys {
        usable(key)?;
    }
    if set.keys.len() > 1 && set.keys.iter().any(|k| k.common.key_id.is_none()) {
        return Err("with more than one key, every key needs a kid".into());
    }
    Ok(())
}

/// Whether `key` can verify a signature: an RSA, EC or OKP public key.
pub fn usable(key: &Jwk) -> Result<(), String> {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    match &key.algorithm {
        P::RSA(_) | P::EllipticCurve(_) | P::OctetKeyPair(_) => Ok(()),
        _ => Err("only RSA, EC and OKP public keys verify assertions".into()),
    }
}

/// `https`, or `http` to a loopback address (a local key service).
pub fn validate_jwks_uri(uri: &str) -> Result<(), String> {
    let parsed = url::Url::parse(uri).map_err(|e| format!("not an absolute URL ({e})"))?;
    if parsed.fragment().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("no fragment and no user information".into());
    }
    match (parsed.scheme(), parsed.host()) {
        ("https", Some(_)) => Ok(()),
        ("http", Some(url::Host::Ipv4(ip))) if ip.is_loopback() => Ok(()),
        ("http", Some(url::Host::Ipv6(ip))) if ip.is_loopback() => Ok(()),
        ("http", Some(url::Host::Domain("localhost"))) => Ok(()),
        _ => Err("must be https (http only to a loopback address)".into()),
    }
}

/// The events that bring the ledger's record of trusted issuers to `configured`. Pure.
pub fn changes(
    recorded: &[TrustedIssuer],
    configured: &[TrustedIssuerSettings],
    now: UnixSeconds,
) -> Vec<Event> {
    let mut events = Vec::new();
    for settings in configured {
        let current = recorded
            .iter()
            .find(|r| r.settings.issuer == settings.issuer && r.is_trusted());
        if current.map(|r| &r.settings) != Some(settings) {
            events.push(Event::TrustedIssuerConfigured(TrustedIssuerConfigured {
                v: V1,
                trust: settings.clone(),
                at: now,
            }));
        }
    }
    let still: BTreeSet<&str> = configured.iter().map(|s| s.issuer.as_str()).collect();
    for r in recorded {
        if r.is_trusted() && !still.contains(r.settings.issuer.as_str()) {
            events.push(Event::TrustedIssuerRemoved(TrustedIssuerRemoved {
                v: V1,
                issuer: r.settings.issuer.clone(),
                at: now,
            }));
        }
    }
    events
}

/// How many times start-up reads again after another node recorded a change first.
const RECORD_ATTEMPTS: usize = 5;

/// Records the configured trusted issuers in the ledger, if they differ from what it holds: idempotent,
/// and safe when several nodes start together (the one stream's expected version settles who writes; a
/// node that loses reads again and usually finds nothing left to record). Returns the events appended.
pub async fn record(
    store: &dyn EventStore,
    configured: &[TrustedIssuerConfig],
    now: UnixSeconds,
) -> Result<usize, AppendError> {
    let configured: Vec<TrustedIssuerSettings> = configured.iter().map(|c| c.settings()).collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        // The version first: rows are written with it, so they are at least as new.
        let version = store.stream_version(streams::TRUSTED_ISSUERS).await?;
        let recorded: Vec<TrustedIssuer> = store::find(store, RowFilter::default()).await?;
        let events = changes(&recorded, &configured, now);
        if events.is_empty() {
            return Ok(0);
        }
        let count = events.len();
        let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let request = AppendRequest::to_stream(streams::TRUSTED_ISSUERS, expected, events).with_metadata(
            projections::Metadata {
                actor: Some("configuration".into()),
                ..projections::Metadata::default()
            },
        );
        match store.append(request).await {
            Ok(_) => return Ok(count),
            Err(AppendError::Conflict { .. }) if attempt < RECORD_ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1",
        "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

    fn entry() -> TrustedIssuerConfig {
        TrustedIssuerConfig {
            issuer: "https://idp.example".into(),
            jwks: serde_json::from_str(KEY).ok(),
            jwks_uri: None,
            subjects: SubjectsConfig::Word("all".into()),
            subject_mapping: SubjectMapping::default(),
            scopes: vec!["read".into()],
            max_assertion_lifetime_seconds: default_lifetime(),
            algorithms: default_algorithms(),
        }
    }

    fn problem(change: impl FnOnce(&mut TrustedIssuerConfig)) -> Option<(&'static str, String)> {
        let mut c = entry();
        change(&mut c);
        c.validate(|s| s == "read").err()
    }

    #[test]
    fn configuration_table() {
        // Given the defaults, then valid: the asymmetric algorithms and five minutes
        assert_eq!(problem(|_| {}), None);
        let parsed: TrustedIssuerConfig = toml::from_str(
            "issuer = \"https://idp.example\"\njwks_uri = \"https://idp.example/jwks\"\n\
             subjects = [\"ann\"]\nscopes = [\"read\"]\n\
             subject_mapping = { by = \"attribute\", name = \"employee_id\" }\n",
        )
        .unwrap();
        assert_eq!(parsed.algorithms, DEFAULT_ALGORITHMS);
        assert_eq!(parsed.max_assertion_lifetime_seconds, 300);
        assert_eq!(
            parsed.subject_mapping,
            SubjectMapping::Attribute {
                name: "employee_id".into()
            }
        );
        assert_eq!(parsed.validate(|s| s == "read"), Ok(()));
        // Given none or an HMAC algorithm, then refused at load
        let none = problem(|c| c.algorithms = vec!["none".into()]).unwrap();
        assert_eq!(none.0, "algorithms");
        let hmac = problem(|c| c.algorithms = vec!["HS256".into()]).unwrap();
        assert!(hmac.1.contains("HMAC"), "{hmac:?}");
        // Given both key sources, or neither, then refused
        let both = problem(|c| c.jwks_uri = Some("https://idp.example/jwks".into()));
        assert_eq!(both.unwrap().0, "jwks");
        assert_eq!(problem(|c| c.jwks = None).unwrap().0, "jwks");
        // Given an http jwks_uri off loopback, then refused; on loopback accepted
        assert!(validate_jwks_uri("http://idp.example/jwks").is_err());
        assert!(validate_jwks_uri("http://127.0.0.1:9000/jwks").is_ok());
        assert!(validate_jwks_uri("https://idp.example/jwks").is_ok());
        // Given an undefined scope, a bad subjects word, a lifetime too long, then refused
        assert_eq!(problem(|c| c.scopes = vec!["write".into()]).unwrap().0, "scopes");
        let word = problem(|c| c.subjects = SubjectsConfig::Word("everyone".into()));
        assert_eq!(word.unwrap().0, "subjects");
        let long = problem(|c| c.max_assertion_lifetime_seconds = 86_400);
        assert_eq!(long.unwrap().0, "max_assertion_lifetime_seconds");
        // A private key is never configuration
        let private = serde_json::json!({"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}]});
        assert!(validate_inline_keys(&private).is_err());
    }

    #[test]
    fn the_ledger_records_only_changes() {
        let a = entry().settings();
        assert!(matches!(&a.keys, TrustedKeys::Jwks { thumbprints } if thumbprints.len() == 1));
        let recorded = |s: &TrustedIssuerSettings, removed: bool| TrustedIssuer {
            settings: s.clone(),
            configured_at: 1,
            position: 1,
            removed_at: removed.then_some(2),
        };
        // Given nothing recorded, then configured
        let e = changes(&[], std::slice::from_ref(&a), 10);
        assert!(matches!(e.as_slice(), [Event::TrustedIssuerConfigured(_)]));
        // Given the same recorded, then nothing
        assert!(changes(&[recorded(&a, false)], std::slice::from_ref(&a), 10).is_empty());
        // Given other settings, then configured again
        let mut b = a.clone();
        b.scopes = vec!["read".into(), "write".into()];
        let e = changes(&[recorded(&a, false)], std::slice::from_ref(&b), 10);
        assert!(matches!(e.as_slice(), [Event::TrustedIssuerConfigured(_)]));
        // Given it is no longer configured, then removed; once removed, nothing more
        let e = changes(&[recorded(&a, false)], &[], 10);
        assert!(matches!(e.as_slice(), [Event::TrustedIssuerRemoved(_)]));
        assert!(changes(&[recorded(&a, true)], &[], 10).is_empty());
        // Given a removed issuer configured again, then configured
        let e = changes(&[recorded(&a, true)], std::slice::from_ref(&a), 10);
        assert!(matches!(e.as_slice(), [Event::TrustedIssuerConfigured(_)]));
    }
}
