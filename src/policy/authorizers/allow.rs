//! `allow` and `deny`: fixed verdicts, for scopes anyone may have and scopes no one may.

use serde::{Deserialize, Serialize};

use crate::policy::authorizer::{Authorize, Context, ScopeRequest, Verdict};

/// Options of `allow`: none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllowConfig {}

/// Options of `deny`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DenyConfig {
    /// Recorded in the decision trail and returned with the denial.
    pub reason: String,
}

/// Allows every scope.
#[derive(Debug, Clone, Default)]
pub struct AllowAuthorizer;

impl AllowAuthorizer {
    /// Builds from `config`; there is nothing to validate.
    pub fn new(_config: &AllowConfig) -> Result<Self, String> {
        Ok(AllowAuthorizer)
    }
}

impl Authorize for AllowAuthorizer {
    fn evaluate(&self, _ctx: &Context<'_>, _scope: &ScopeRequest<'_>) -> Verdict {
        Verdict::Allow
    }
}

/// Denies every scope with the configured reason.
#[derive(Debug, Clone)]
pub struct DenyAuthorizer {
    reason: String,
}

impl DenyAuthorizer {
    /// Builds from `config`; the reason must say something, since it is all the trail will show.
    pub fn new(config: &DenyConfig) -> Result<Self, String> {
        if config.reason.trim().is_empty() {
            return Err("reason must not be empty".into());
        }
        Ok(DenyAuthorizer {
            reason: config.reason.clone(),
        })
    }
}

impl Authorize for DenyAuthorizer {
    fn evaluate(&self, _ctx: &Context<'_>, _scope: &ScopeRequest<'_>) -> Verdict {
        Verdict::deny(self.reason.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::Fixture;

    #[test]
    fn allow_allows_whoever_asks() {
        // Given an allow authorizer and an absent user of a dynamically registered client
        let allow = AllowAuthorizer::new(&AllowConfig {}).unwrap();
        let mut f = Fixture {
            user_present: false,
            ..Fixture::default()
        };
        f.client.spec.dynamically_registered = true;

        // Then it allows
        assert_eq!(f.evaluate(&allow), Verdict::Allow);
    }

    #[test]
    fn deny_denies_with_its_reason() {
        // Given a deny authorizer
        let deny = DenyAuthorizer::new(&DenyConfig {
            reason: "scope retired".into(),
        })
        .unwrap();

        // Then even a fresh first-party sign-in is denied, with the configured reason
        let mut f = Fixture::default();
        f.client.spec.kind = projections::event::ClientKind::FirstParty;
        assert_eq!(f.evaluate(&deny), Verdict::deny("scope retired"));
    }

    #[test]
    fn deny_without_a_reason_is_refused() {
        for reason in ["", "   "] {
            let err = DenyAuthorizer::new(&DenyConfig {
                reason: reason.into(),
            })
            .unwrap_err();
            assert!(err.contains("reason"), "{err}");
        }
    }
}
