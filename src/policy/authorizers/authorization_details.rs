//! `authorization-details`: rules on RFC 9396 `authorization_details` — which types may be asked for,
//! which fields each must carry, and, by the largest amount asked, whether to allow, ask for consent,
//! demand a step-up as well, or refuse.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::JsonPath;
use crate::policy::authorizer::{Authorize, Conditions, Context, ScopeRequest, StepUp, Verdict};

/// Options of `authorization-details`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationDetailsConfig {
    /// The detail types allowed; when non-empty, details are also required.
    #[serde(default)]
    pub types: Vec<String>,
    /// Dot paths every detail must carry (not null).
    #[serde(default)]
    pub required_fields: Vec<String>,
    /// Dot path to each detail's amount: a number or a numeric string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_field: Option<String>,
    /// Amounts up to this are allowed outright.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_up_to: Option<f64>,
    /// Amounts up to this need consent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_up_to: Option<f64>,
    /// Amounts up to this need consent and a step-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up_up_to: Option<f64>,
    /// The authentication class the step-up demands; without it, a fresh sign-in of any class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up_acr: Option<String>,
}

/// What an amount within a band gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Band {
    Allow,
    Consent,
    StepUp,
}

#[derive(Debug, Clone)]
struct Amounts {
    field: JsonPath,
    /// Upper bounds, inclusive, increasing.
    bands: Vec<(f64, Band)>,
}

/// Checks `ctx.authorization_details` against the configured types, fields and amount bands.
#[derive(Debug, Clone)]
pub struct AuthorizationDetailsAuthorizer {
    types: Vec<String>,
    required_fields: Vec<JsonPath>,
    amounts: Option<Amounts>,
    step_up_acr: Option<String>,
}

impl AuthorizationDetailsAuthorizer {
    /// Builds from `config`: paths well formed, bounds finite, non-negative and strictly increasing
    /// (allow < consent < step-up), and bounds only alongside an `amount_field`.
    pub fn new(config: &AuthorizationDetailsConfig) -> Result<Self, String> {
        if config.types.iter().any(|t| t.is_empty()) {
            return Err("types must not contain an empty type".into());
        }
        let required_fields = config
            .required_fields
            .iter()
            .map(|p| JsonPath::parse("required_fields entry", p))
            .collect::<Result<Vec<_>, _>>()?;
        let bounds = [
            ("allow_up_to", config.allow_up_to, Band::Allow),
            ("consent_up_to", config.consent_up_to, Band::Consent),
            ("step_up_up_to", config.step_up_up_to, Band::StepUp),
        ];
        let set: Vec<(&str, f64, Band)> = bounds
            .iter()
            .filter_map(|&(name, bound, band)| bound.map(|b| (name, b, band)))
            .collect();
        for &(name, bound, _) in &set {
            if !bound.is_finite() || bound < 0.0 {
                return Err(format!(
                    "{name} must be a finite number of at least 0, got {bound}"
                ));
            }
        }
        for pair in set.windows(2) {
            if let [(lower_name, lower, _), (upper_name, upper, _)] = pair
                && upper <= lower
            {
                return Err(format!(
                    "{upper_name} must exceed {lower_name} ({upper} <= {lower})"
                ));
            }
        }
        if config.step_up_acr.is_some() && config.step_up_up_to.is_none() {
            return Err("step_up_acr needs step_up_up_to".into());
        }
        let amounts = match (&config.amount_field, set.first()) {
            (Some(field), Some(_)) => Some(Amounts {
                field: JsonPath::parse("amount_field", field)?,
                bands: set.iter().map(|&(_, bound, band)| (bound, band)).collect(),
            }),
            (Some(_), None) => {
                return Err(
                    "amount_field needs at least one of allow_up_to, consent_up_to, step_up_up_to".into(),
                );
            }
            (None, Some((name, _, _))) => return Err(format!("{name} needs amount_field")),
            (None, None) => None,
        };
        Ok(AuthorizationDetailsAuthorizer {
            types: config.types.clone(),
            required_fields,
            amounts,
            step_up_acr: config.step_up_acr.clone(),
        })
    }

    /// Checks one detail's type and fields, and reads its amount when amounts are configured.
    fn check(&self, i: usize, detail: &Value) -> Result<Option<f64>, String> {
        let Some(kind) = detail.get("type").and_then(Value::as_str) else {
            return Err(format!("authorization_details[{i}] has no type"));
        };
        if !self.types.is_empty() && !self.types.iter().any(|t| t == kind) {
            return Err(format!("authorization_details type {kind:?} is not allowed"));
        }
        if let Some(missing) = self.required_fields.iter().find(|p| p.lookup(detail).is_none()) {
            return Err(format!("authorization_details[{i}] ({kind}) lacks {missing}"));
        }
        let Some(amounts) = &self.amounts else {
            return Ok(None);
        };
        // A detail whose amount cannot be read could be for any sum: it is refused, not waved through.
        let amount = match amounts.field.lookup(detail) {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.parse::<f64>().ok(),
            _ => None,
        };
        match amount {
            Some(a) if a.is_finite() && a >= 0.0 => Ok(Some(a)),
            Some(a) => Err(format!(
                "authorization_details[{i}] ({kind}) has an invalid {}: {a}",
                amounts.field
            )),
            None => Err(format!(
                "authorization_details[{i}] ({kind}) has no numeric {}",
                amounts.field
            )),
        }
    }

    fn decide(&self, details: &[Value]) -> Result<Verdict, String> {
        if details.is_empty() {
            return if self.types.is_empty() {
                Ok(Verdict::Allow)
            } else {
                Err("authorization_details required".into())
            };
        }
        let mut largest: Option<f64> = None;
        for (i, detail) in details.iter().enumerate() {
            if let Some(amount) = self.check(i, detail)? {
                largest = Some(largest.map_or(amount, |l| l.max(amount)));
            }
        }
        let (Some(amounts), Some(largest)) = (&self.amounts, largest) else {
            return Ok(Verdict::Allow);
        };
        let band = amounts
            .bands
            .iter()
            .find(|(bound, _)| largest <= *bound)
            .map(|&(_, band)| band);
        Ok(match band {
            Some(Band::Allow) => Verdict::Allow,
            Some(Band::Consent) => Verdict::consent(),
            Some(Band::StepUp) => Verdict::Conditional {
                conditions: Conditions {
                    consent: true,
                    step_up: Some(StepUp {
                        acr: self.step_up_acr.clone(),
                        max_age_seconds: None,
                    }),
                    ..Conditions::default()
                },
            },
            None => {
                let highest = amounts.bands.last().map_or(0.0, |&(bound, _)| bound);
                return Err(format!("amount {largest} exceeds {highest}"));
            }
        })
    }
}

impl Authorize for AuthorizationDetailsAuthorizer {
    fn evaluate(&self, ctx: &Context<'_>, _scope: &ScopeRequest<'_>) -> Verdict {
        let details: &[Value] = match ctx.authorization_details {
            Value::Null => &[],
            Value::Array(items) => items,
            _ => return Verdict::deny("authorization_details must be an array"),
        };
        self.decide(details).unwrap_or_else(Verdict::deny)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::authorizers::testing::Fixture;

    fn payments() -> AuthorizationDetailsConfig {
        AuthorizationDetailsConfig {
            types: vec!["payment_initiation".into()],
            required_fields: vec!["creditorAccount.iban".into()],
            amount_field: Some("instructedAmount.amount".into()),
            allow_up_to: Some(10.0),
            consent_up_to: Some(1000.0),
            step_up_up_to: Some(10_000.0),
            step_up_acr: Some("hwk".into()),
        }
    }

    fn payment(amount: Value) -> Value {
        json!({
            "type": "payment_initiation",
            "instructedAmount": {"currency": "EUR", "amount": amount},
            "creditorAccount": {"iban": "DE02100100109307118603"},
        })
    }

    fn decide(config: &AuthorizationDetailsConfig, details: Value) -> Verdict {
        Fixture::with_details(details).evaluate(&AuthorizationDetailsAuthorizer::new(config).unwrap())
    }

    fn reason(verdict: Verdict) -> String {
        match verdict {
            Verdict::Deny { reason } => reason,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    fn consent_and_step_up(acr: Option<&str>) -> Verdict {
        Verdict::Conditional {
            conditions: Conditions {
                consent: true,
                step_up: Some(StepUp {
                    acr: acr.map(str::to_owned),
                    max_age_seconds: None,
                }),
                ..Conditions::default()
            },
        }
    }

    #[test]
    fn amounts_fall_into_bands_with_inclusive_upper_bounds() {
        let config = payments();
        let cases = [
            (json!(0), Verdict::Allow),
            (json!(10), Verdict::Allow),
            (json!("10.00"), Verdict::Allow),
            (json!(10.01), Verdict::consent()),
            (json!("1000"), Verdict::consent()),
            (json!(1000.5), consent_and_step_up(Some("hwk"))),
            (json!(10_000), consent_and_step_up(Some("hwk"))),
        ];
        for (amount, expected) in cases {
            // Given one payment of `amount`
            let verdict = decide(&config, json!([payment(amount.clone())]));

            // Then its band decides
            assert_eq!(verdict, expected, "amount {amount}");
        }
    }

    #[test]
    fn an_amount_above_every_band_is_denied() {
        assert_eq!(
            reason(decide(&payments(), json!([payment(json!(10_000.5))]))),
            "amount 10000.5 exceeds 10000"
        );
    }

    #[test]
    fn the_largest_amount_over_all_details_decides() {
        // Given a small and a large payment together
        let details = json!([payment(json!(5)), payment(json!("2500")), payment(json!(1))]);

        // Then the large one sets the band
        assert_eq!(decide(&payments(), details), consent_and_step_up(Some("hwk")));
    }

    #[test]
    fn missing_bands_are_skipped_and_the_step_up_acr_is_optional() {
        // Given no consent band and no step-up acr
        let config = AuthorizationDetailsConfig {
            consent_up_to: None,
            step_up_acr: None,
            ..payments()
        };

        // Then past the allow band comes the step-up band, asking for a fresh sign-in of any class
        assert_eq!(decide(&config, json!([payment(json!(9))])), Verdict::Allow);
        assert_eq!(
            decide(&config, json!([payment(json!(11))])),
            consent_and_step_up(None)
        );
        assert!(matches!(
            decide(&config, json!([payment(json!(10_001))])),
            Verdict::Deny { .. }
        ));

        // And with only a consent band, nothing is allowed outright
        let consent_only = AuthorizationDetailsConfig {
            allow_up_to: None,
            step_up_up_to: None,
            step_up_acr: None,
            ..payments()
        };
        assert_eq!(
            decide(&consent_only, json!([payment(json!(0))])),
            Verdict::consent()
        );
        assert_eq!(
            reason(decide(&consent_only, json!([payment(json!(1001))]))),
            "amount 1001 exceeds 1000"
        );
    }

    #[test]
    fn unreadable_or_negative_amounts_are_denied() {
        for amount in [
            json!(null),
            json!("ten"),
            json!("NaN"),
            json!("inf"),
            json!(-5),
            json!([5]),
            json!(true),
        ] {
            let verdict = decide(&payments(), json!([payment(amount.clone())]));
            let reason = reason(verdict);
            assert!(reason.contains("instructedAmount.amount"), "{amount}: {reason}");
        }
    }

    #[test]
    fn a_type_not_allowed_is_denied() {
        // Given a payment and an account information request, where only payments are allowed
        let details = json!([payment(json!(1)), {"type": "account_information", "actions": ["read"]}]);

        // Then the whole request is denied, naming the type
        assert_eq!(
            reason(decide(&payments(), details)),
            "authorization_details type \"account_information\" is not allowed"
        );
    }

    #[test]
    fn a_detail_without_a_type_is_denied() {
        let details = json!([{"instructedAmount": {"amount": 1}, "creditorAccount": {"iban": "x"}}]);
        assert_eq!(
            reason(decide(&payments(), details)),
            "authorization_details[0] has no type"
        );
        let config = AuthorizationDetailsConfig::default();
        assert_eq!(
            reason(decide(&config, json!(["payment_initiation"]))),
            "authorization_details[0] has no type"
        );
    }

    #[test]
    fn a_missing_required_field_is_denied() {
        // Given a second payment without a creditor IBAN
        let mut second = payment(json!(1));
        second["creditorAccount"] = json!({"bic": "MARKDEFF"});

        // Then the request is denied, naming the detail and the field
        let verdict = decide(&payments(), json!([payment(json!(1)), second]));
        assert_eq!(
            reason(verdict),
            "authorization_details[1] (payment_initiation) lacks creditorAccount.iban"
        );
    }

    #[test]
    fn no_details_are_allowed_only_when_no_types_are_configured() {
        let open = AuthorizationDetailsConfig {
            types: vec![],
            ..payments()
        };
        for none in [Value::Null, json!([])] {
            assert_eq!(decide(&open, none.clone()), Verdict::Allow);
            assert_eq!(
                reason(decide(&payments(), none)),
                "authorization_details required"
            );
        }
    }

    #[test]
    fn without_types_any_type_with_the_required_fields_passes() {
        let config = AuthorizationDetailsConfig {
            required_fields: vec!["locations".into()],
            ..Default::default()
        };
        let details = json!([{"type": "a", "locations": ["https://x"]}, {"type": "b", "locations": []}]);
        assert_eq!(decide(&config, details), Verdict::Allow);
        assert!(matches!(
            decide(&config, json!([{"type": "a"}])),
            Verdict::Deny { .. }
        ));
    }

    #[test]
    fn details_that_are_not_an_array_are_denied() {
        assert_eq!(
            reason(decide(&payments(), payment(json!(1)))),
            "authorization_details must be an array"
        );
    }

    #[test]
    fn inconsistent_options_are_refused() {
        let cases = [
            (
                AuthorizationDetailsConfig {
                    consent_up_to: Some(10.0),
                    ..payments()
                },
                "consent_up_to must exceed allow_up_to",
            ),
            (
                AuthorizationDetailsConfig {
                    step_up_up_to: Some(500.0),
                    ..payments()
                },
                "step_up_up_to must exceed consent_up_to",
            ),
            (
                AuthorizationDetailsConfig {
                    consent_up_to: None,
                    step_up_up_to: Some(5.0),
                    ..payments()
                },
                "step_up_up_to must exceed allow_up_to",
            ),
            (
                AuthorizationDetailsConfig {
                    allow_up_to: Some(-1.0),
                    ..payments()
                },
                "allow_up_to must be a finite number",
            ),
            (
                AuthorizationDetailsConfig {
                    step_up_up_to: Some(f64::INFINITY),
                    ..payments()
                },
                "step_up_up_to must be a finite",
            ),
            (
                AuthorizationDetailsConfig {
                    amount_field: None,
                    ..payments()
                },
                "allow_up_to needs amount_field",
            ),
            (
                AuthorizationDetailsConfig {
                    allow_up_to: None,
                    consent_up_to: None,
                    step_up_up_to: None,
                    step_up_acr: None,
                    ..payments()
                },
                "amount_field needs at least one of",
            ),
            (
                AuthorizationDetailsConfig {
                    step_up_up_to: None,
                    ..payments()
                },
                "step_up_acr needs step_up_up_to",
            ),
            (
                AuthorizationDetailsConfig {
                    amount_field: Some("a..b".into()),
                    ..payments()
                },
                "empty segment",
            ),
            (
                AuthorizationDetailsConfig {
                    required_fields: vec!["".into()],
                    ..payments()
                },
                "must not be empty",
            ),
            (
                AuthorizationDetailsConfig {
                    types: vec!["".into()],
                    ..payments()
                },
                "empty type",
            ),
        ];
        for (bad, expected) in cases {
            let err = AuthorizationDetailsAuthorizer::new(&bad).unwrap_err();
            assert!(err.contains(expected), "{err:?} should contain {expected:?}");
        }
    }
}
