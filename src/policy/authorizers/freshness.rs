//! `authentication-freshness`: the older the user's authentication, the shorter the scope lives, then a
//! step-up is demanded, then the scope is refused.

use serde::{Deserialize, Serialize};

use crate::policy::authorizer::{Authorize, Context, ScopeRequest, StepUp, Verdict};

fn default_min_ttl_seconds() -> i64 {
    60
}

/// Options of `authentication-freshness`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FreshnessConfig {
    /// The scope's lifetime right after authentication; it shrinks by the authentication's age.
    pub full_ttl_seconds: i64,
    /// The shortest lifetime granted, however old the authentication.
    #[serde(default = "default_min_ttl_seconds")]
    pub min_ttl_seconds: i64,
    /// Past this age, a fresh authentication is demanded.
    #[serde(default)]
    pub step_up_after_seconds: Option<i64>,
    /// Past this age, the scope is refused.
    #[serde(default)]
    pub deny_after_seconds: Option<i64>,
}

/// Shortens, steps up or refuses scopes by the age of `ctx.auth.auth_time`.
#[derive(Debug, Clone)]
pub struct FreshnessAuthorizer {
    full_ttl: i64,
    min_ttl: i64,
    step_up_after: Option<i64>,
    deny_after: Option<i64>,
}

impl FreshnessAuthorizer {
    /// Builds from `config`: every duration positive, the minimum TTL within the full one, and the
    /// denial threshold beyond the step-up one (else the step-up could never be reached).
    pub fn new(config: &FreshnessConfig) -> Result<Self, String> {
        let positive = |name: &str, v: i64| {
            if v > 0 {
                Ok(())
            } else {
                Err(format!("{name} must be positive, got {v}"))
            }
        };
        positive("full_ttl_seconds", config.full_ttl_seconds)?;
        positive("min_ttl_seconds", config.min_ttl_seconds)?;
        if let Some(v) = config.step_up_after_seconds {
            positive("step_up_after_seconds", v)?;
        }
        if let Some(v) = config.deny_after_seconds {
            positive("deny_after_seconds", v)?;
        }
        if config.min_ttl_seconds > config.full_ttl_seconds {
            return Err(format!(
                "min_ttl_seconds ({}) must not exceed full_ttl_seconds ({})",
                config.min_ttl_seconds, config.full_ttl_seconds
            ));
        }
        if let (Some(step_up), Some(deny)) = (config.step_up_after_seconds, config.deny_after_seconds)
            && deny <= step_up
        {
            return Err(format!(
                "deny_after_seconds must exceed step_up_after_seconds ({deny} <= {step_up})"
            ));
        }
        Ok(FreshnessAuthorizer {
            full_ttl: config.full_ttl_seconds,
            min_ttl: config.min_ttl_seconds,
            step_up_after: config.step_up_after_seconds,
            deny_after: config.deny_after_seconds,
        })
    }
}

impl Authorize for FreshnessAuthorizer {
    fn evaluate(&self, ctx: &Context<'_>, _scope: &ScopeRequest<'_>) -> Verdict {
        let Some(auth_time) = ctx.auth.auth_time else {
            // No authentication time to measure: a present user can sign in again; for an absent one
            // (a machine client, a refresh without the user) nothing can be checked, so the scope gets
            // only the shortest lifetime.
            return if ctx.user_present {
                Verdict::step_up(StepUp {
                    acr: None,
                    max_age_seconds: Some(self.step_up_after.unwrap_or(self.full_ttl)),
                })
            } else {
                Verdict::ttl(self.min_ttl)
            };
        };
        // An auth_time slightly ahead of `now` is clock skew between nodes, not a reason to refuse.
        let age = ctx.now.saturating_sub(auth_time).max(0);
        if let Some(deny_after) = self.deny_after
            && age > deny_after
        {
            return Verdict::deny(format!(
                "authentication is too old: {age}s, at most {deny_after}s accepted"
            ));
        }
        if let Some(step_up_after) = self.step_up_after
            && age > step_up_after
        {
            return Verdict::step_up(StepUp {
                acr: None,
                max_age_seconds: Some(step_up_after),
            });
        }
        Verdict::ttl(self.full_ttl.saturating_sub(age).max(self.min_ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::Fixture;

    fn config() -> FreshnessConfig {
        FreshnessConfig {
            full_ttl_seconds: 3600,
            min_ttl_seconds: 300,
            step_up_after_seconds: Some(7200),
            deny_after_seconds: Some(86_400),
        }
    }

    fn authorizer(config: FreshnessConfig) -> FreshnessAuthorizer {
        FreshnessAuthorizer::new(&config).unwrap()
    }

    fn max_age(seconds: i64) -> Verdict {
        Verdict::step_up(StepUp {
            acr: None,
            max_age_seconds: Some(seconds),
        })
    }

    #[test]
    fn ttl_shrinks_as_the_authentication_ages() {
        // Given a full TTL of an hour and a minimum of five minutes
        let fresh = authorizer(config());

        // Then the TTL is the hour minus the age, never below the minimum
        assert_eq!(Fixture::authenticated_ago(0).evaluate(&fresh), Verdict::ttl(3600));
        assert_eq!(
            Fixture::authenticated_ago(600).evaluate(&fresh),
            Verdict::ttl(3000)
        );
        assert_eq!(
            Fixture::authenticated_ago(3300).evaluate(&fresh),
            Verdict::ttl(300)
        );
        assert_eq!(
            Fixture::authenticated_ago(5000).evaluate(&fresh),
            Verdict::ttl(300)
        );
    }

    #[test]
    fn past_step_up_after_a_fresh_authentication_is_demanded() {
        // Given step-up after two hours
        let fresh = authorizer(config());

        // Then at exactly two hours the scope still lives, and one second later a step-up is demanded
        assert_eq!(
            Fixture::authenticated_ago(7200).evaluate(&fresh),
            Verdict::ttl(300)
        );
        assert_eq!(Fixture::authenticated_ago(7201).evaluate(&fresh), max_age(7200));
    }

    #[test]
    fn past_deny_after_the_scope_is_refused() {
        // Given denial after a day
        let fresh = authorizer(config());

        // Then at a day a step-up is still enough, and past it the scope is refused
        assert_eq!(Fixture::authenticated_ago(86_400).evaluate(&fresh), max_age(7200));
        let verdict = Fixture::authenticated_ago(86_401).evaluate(&fresh);
        let Verdict::Deny { reason } = verdict else {
            panic!("expected a denial, got {verdict:?}")
        };
        assert!(reason.starts_with("authentication is too old"), "{reason}");
    }

    #[test]
    fn without_thresholds_an_old_authentication_only_gets_the_minimum() {
        // Given neither a step-up nor a deny threshold
        let fresh = authorizer(FreshnessConfig {
            step_up_after_seconds: None,
            deny_after_seconds: None,
            ..config()
        });

        // Then a week-old authentication still gets the minimum TTL
        assert_eq!(
            Fixture::authenticated_ago(604_800).evaluate(&fresh),
            Verdict::ttl(300)
        );
    }

    #[test]
    fn an_authentication_time_ahead_of_now_counts_as_fresh() {
        let fresh = authorizer(config());
        assert_eq!(
            Fixture::authenticated_ago(-30).evaluate(&fresh),
            Verdict::ttl(3600)
        );
    }

    #[test]
    fn without_an_authentication_time_a_present_user_steps_up() {
        // Given no auth_time and a present user
        let mut f = Fixture::default();
        f.auth.auth_time = None;

        // Then a fresh authentication is demanded: within step_up_after, or the full TTL when unset
        assert_eq!(f.evaluate(&authorizer(config())), max_age(7200));
        let no_step_up = authorizer(FreshnessConfig {
            step_up_after_seconds: None,
            ..config()
        });
        assert_eq!(f.evaluate(&no_step_up), max_age(3600));
    }

    #[test]
    fn without_an_authentication_time_an_absent_user_gets_the_minimum_ttl() {
        // Given a machine client: no auth_time, no user
        let mut f = Fixture {
            user_present: false,
            grant_type: "client_credentials".into(),
            ..Fixture::default()
        };
        f.auth.auth_time = None;

        // Then the scope lives only the minimum
        assert_eq!(f.evaluate(&authorizer(config())), Verdict::ttl(300));
    }

    #[test]
    fn inconsistent_options_are_refused() {
        let cases = [
            (
                FreshnessConfig {
                    full_ttl_seconds: 0,
                    ..config()
                },
                "full_ttl_seconds must be positive",
            ),
            (
                FreshnessConfig {
                    min_ttl_seconds: -1,
                    ..config()
                },
                "min_ttl_seconds must be positive",
            ),
            (
                FreshnessConfig {
                    min_ttl_seconds: 4000,
                    ..config()
                },
                "must not exceed full_ttl_seconds",
            ),
            (
                FreshnessConfig {
                    step_up_after_seconds: Some(0),
                    ..config()
                },
                "step_up_after_seconds must be positive",
            ),
            (
                FreshnessConfig {
                    deny_after_seconds: Some(-5),
                    ..config()
                },
                "deny_after_seconds must be positive",
            ),
            (
                FreshnessConfig {
                    deny_after_seconds: Some(7200),
                    ..config()
                },
                "deny_after_seconds must exceed step_up_after_seconds (7200 <= 7200)",
            ),
        ];
        for (bad, expected) in cases {
            let err = FreshnessAuthorizer::new(&bad).unwrap_err();
            assert!(err.contains(expected), "{err:?} should contain {expected:?}");
        }
    }

    #[test]
    fn min_ttl_defaults_to_a_minute() {
        let config: FreshnessConfig = toml::from_str("full_ttl_seconds = 600").unwrap();
        assert_eq!(config.min_ttl_seconds, 60);
        assert_eq!(config.step_up_after_seconds, None);
        assert_eq!(config.deny_after_seconds, None);
    }
}
