//! `http`: asks an external policy decision point (PDP), in the shape of the OpenID AuthZEN Access
//! Evaluation API.
//!
//! Authorizers are pure, so the question is not asked here: [`crate::policy::external::prefetch`] asks it
//! before the decision (concurrently, with this authorizer's timeout) and hands the answers over in
//! [`Context::external`]. This authorizer only reads its own answer for the scope. No answer means the
//! fetch did not happen (a grant that does not prefetch, a bug): it denies, because a policy fails closed.

use serde::{Deserialize, Serialize};

use crate::policy::authorizer::{Authorize, Context, ScopeRequest, Verdict};

/// The longest timeout accepted: a PDP slower than this holds every token request hostage.
pub const TIMEOUT_MS_MAX: u64 = 10_000;

/// Options of an `http` authorizer.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The PDP's evaluation endpoint, e.g. `https://pdp.example/access/v1/evaluation`. Recorded in the
    /// ledger with the policy, so it must not carry credentials.
    pub url: String,
    /// How long to wait for the whole exchange before denying, in milliseconds (1 to 10000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Sent as `Authorization: Bearer …`. Never serialized: the policy document is published in the
    /// ledger, and a secret must not reach it (nor change the policy version when it is rotated).
    #[serde(default, skip_serializing)]
    pub bearer_token: Option<String>,
}

fn default_timeout_ms() -> u64 {
    500
}

// Written by hand so that logging a configuration never prints the bearer token.
impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("url", &self.url)
            .field("timeout_ms", &self.timeout_ms)
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl HttpConfig {
    /// Checks what can be checked at load, so that a bad option stops the load instead of denying every
    /// request at issuance.
    pub fn validate(&self) -> Result<(), String> {
        let url =
            reqwest::Url::parse(&self.url).map_err(|e| format!("url {:?} is not a URL: {e}", self.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("url must be http or https, not {:?}", url.scheme()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("url must name a host".into());
        }
        // The url is published in the ledger with the policy; credentials belong in bearer_token.
        if !url.username().is_empty() || url.password().is_some() {
            return Err("url must not carry credentials; use bearer_token".into());
        }
        if !(1..=TIMEOUT_MS_MAX).contains(&self.timeout_ms) {
            return Err(format!("timeout_ms must be between 1 and {TIMEOUT_MS_MAX}"));
        }
        if let Some(token) = &self.bearer_token {
            if token.trim().is_empty() {
                return Err("bearer_token must not be empty".into());
            }
            // A token that cannot be a header value would fail every request; say so now. The error
            // does not quote the token.
            if reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
                return Err("bearer_token must be printable ASCII".into());
            }
        }
        Ok(())
    }
}

/// Reads the verdict the PDP gave for this authorizer and scope, fetched before evaluation.
#[derive(Debug, Clone)]
pub struct HttpAuthorizer {
    name: String,
}

impl HttpAuthorizer {
    /// Validates `config`; `name` is the configured name, the first half of the key of its answers.
    pub fn new(name: &str, config: &HttpConfig) -> Result<Self, String> {
        config.validate()?;
        Ok(HttpAuthorizer {
            name: name.to_owned(),
        })
    }
}

impl Authorize for HttpAuthorizer {
    fn evaluate(&self, ctx: &Context<'_>, scope: &ScopeRequest<'_>) -> Verdict {
        ctx.external
            .get(&(self.name.clone(), scope.scope.to_owned()))
            .cloned()
            .unwrap_or_else(|| Verdict::deny("http: no decision was fetched"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::{Fixture, static_scope};

    fn config(url: &str) -> HttpConfig {
        HttpConfig {
            url: url.into(),
            timeout_ms: default_timeout_ms(),
            bearer_token: None,
        }
    }

    #[test]
    fn the_fetched_verdict_for_its_own_name_and_scope_is_the_answer() {
        // Given answers fetched for this authorizer and for another one
        let a = HttpAuthorizer::new("pdp", &config("https://pdp.example/access/v1/evaluation")).unwrap();
        let mut f = Fixture::default();
        f.external.insert(("pdp".into(), "read".into()), Verdict::Allow);
        f.external
            .insert(("pdp".into(), "write".into()), Verdict::deny("no"));
        f.external
            .insert(("other".into(), "admin".into()), Verdict::Allow);

        // Then each scope gets its own answer, and a scope with none is denied
        assert_eq!(f.evaluate_scope(&a, &static_scope("read")), Verdict::Allow);
        assert_eq!(f.evaluate_scope(&a, &static_scope("write")), Verdict::deny("no"));
        assert_eq!(
            f.evaluate_scope(&a, &static_scope("admin")),
            Verdict::deny("http: no decision was fetched")
        );
    }

    #[test]
    fn bad_options_are_refused_at_build() {
        let cases = [
            (config("ftp://pdp.example/x"), "http or https"),
            (config("not a url"), "not a URL"),
            (config("https://user:pw@pdp.example/x"), "credentials"),
            (
                HttpConfig {
                    timeout_ms: 0,
                    ..config("https://pdp.example")
                },
                "timeout_ms",
            ),
            (
                HttpConfig {
                    timeout_ms: 10_001,
                    ..config("https://pdp.example")
                },
                "timeout_ms",
            ),
            (
                HttpConfig {
                    bearer_token: Some(" ".into()),
                    ..config("https://pdp.example")
                },
                "bearer_token",
            ),
            (
                HttpConfig {
                    bearer_token: Some("se\ncret".into()),
                    ..config("https://pdp.example")
                },
                "bearer_token",
            ),
        ];
        for (c, expected) in cases {
            let err = HttpAuthorizer::new("pdp", &c).unwrap_err();
            assert!(err.contains(expected), "{err:?} should contain {expected:?}");
            assert!(!err.contains("cret"), "{err:?} quotes the token");
        }
        assert!(HttpAuthorizer::new("pdp", &config("http://127.0.0.1:8181/access/v1/evaluation")).is_ok());
    }

    #[test]
    fn the_bearer_token_is_neither_serialized_nor_printed() {
        let c = HttpConfig {
            bearer_token: Some("s3cret-token".into()),
            ..config("https://pdp.example")
        };
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
