//! `acr`: the authentication context class must be at or above a required level, else a step-up to it.

use serde::{Deserialize, Serialize};

use crate::policy::authorizer::{Authorize, Context, ScopeRequest, StepUp, Verdict};

/// Options of `acr`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcrConfig {
    /// The weakest acceptable class; must appear in `order`.
    pub required: String,
    /// Every class the policy ranks, weakest first.
    pub order: Vec<String>,
}

/// Allows authentications at or above the required class; demands a step-up to it otherwise.
#[derive(Debug, Clone)]
pub struct AcrAuthorizer {
    required: String,
    /// The classes at or above `required`: nothing else passes.
    sufficient: Vec<String>,
}

impl AcrAuthorizer {
    /// Builds from `config`: `order` must rank each class once, and include `required`.
    pub fn new(config: &AcrConfig) -> Result<Self, String> {
        if let Some((i, dup)) = config
            .order
            .iter()
            .enumerate()
            .find(|(i, acr)| config.order[..*i].contains(acr))
        {
            return Err(format!(
                "order lists acr {dup:?} twice (again at position {})",
                i + 1
            ));
        }
        let Some(rank) = config.order.iter().position(|acr| *acr == config.required) else {
            return Err(format!("required acr {:?} is not in order", config.required));
        };
        Ok(AcrAuthorizer {
            required: config.required.clone(),
            sufficient: config.order[rank..].to_vec(),
        })
    }
}

impl Authorize for AcrAuthorizer {
    fn evaluate(&self, ctx: &Context<'_>, _scope: &ScopeRequest<'_>) -> Verdict {
        // A class the policy does not rank (or none) cannot be shown to be strong enough.
        match &ctx.auth.acr {
            Some(acr) if self.sufficient.contains(acr) => Verdict::Allow,
            _ => Verdict::step_up(StepUp {
                acr: Some(self.required.clone()),
                max_age_seconds: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::Fixture;

    fn requiring(required: &str) -> AcrAuthorizer {
        AcrAuthorizer::new(&AcrConfig {
            required: required.into(),
            order: vec!["pwd".into(), "mfa".into(), "hwk".into()],
        })
        .unwrap()
    }

    fn authenticated_with(acr: Option<&str>) -> Fixture {
        let mut f = Fixture::default();
        f.auth.acr = acr.map(str::to_owned);
        f
    }

    fn step_up_to(acr: &str) -> Verdict {
        Verdict::step_up(StepUp {
            acr: Some(acr.into()),
            max_age_seconds: None,
        })
    }

    #[test]
    fn the_required_class_and_stronger_ones_are_allowed() {
        // Given mfa required
        let mfa = requiring("mfa");

        // Then mfa and hardware keys pass
        assert_eq!(authenticated_with(Some("mfa")).evaluate(&mfa), Verdict::Allow);
        assert_eq!(authenticated_with(Some("hwk")).evaluate(&mfa), Verdict::Allow);
    }

    #[test]
    fn weaker_unknown_or_missing_classes_step_up_to_the_required_one() {
        // Given mfa required
        let mfa = requiring("mfa");

        // Then a password, a class the order does not know, or none demands a step-up to mfa
        for acr in [Some("pwd"), Some("biometric"), Some("MFA"), None] {
            assert_eq!(
                authenticated_with(acr).evaluate(&mfa),
                step_up_to("mfa"),
                "{acr:?}"
            );
        }
    }

    #[test]
    fn the_weakest_and_strongest_requirements_rank_at_the_ends() {
        assert_eq!(
            authenticated_with(Some("pwd")).evaluate(&requiring("pwd")),
            Verdict::Allow
        );
        assert_eq!(
            authenticated_with(Some("mfa")).evaluate(&requiring("hwk")),
            step_up_to("hwk")
        );
        assert_eq!(
            authenticated_with(Some("hwk")).evaluate(&requiring("hwk")),
            Verdict::Allow
        );
    }

    #[test]
    fn a_required_class_outside_the_order_is_refused() {
        let err = AcrAuthorizer::new(&AcrConfig {
            required: "mfa".into(),
            order: vec!["pwd".into()],
        })
        .unwrap_err();
        assert_eq!(err, "required acr \"mfa\" is not in order");
        let err = AcrAuthorizer::new(&AcrConfig {
            required: "mfa".into(),
            order: vec![],
        })
        .unwrap_err();
        assert_eq!(err, "required acr \"mfa\" is not in order");
    }

    #[test]
    fn an_order_ranking_a_class_twice_is_refused() {
        let err = AcrAuthorizer::new(&AcrConfig {
            required: "mfa".into(),
            order: vec!["pwd".into(), "mfa".into(), "pwd".into()],
        })
        .unwrap_err();
        assert!(err.contains("\"pwd\" twice"), "{err}");
    }
}
