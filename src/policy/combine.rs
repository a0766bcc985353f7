//! Combining the verdicts of a scope's authorizers: any Deny denies; otherwise the conditions merge —
//! consent if any asks, the shortest TTL, the strictest step-up.

use super::authorizer::{Conditions, StepUp, Verdict};

/// Merges two step-up demands: the shorter maximum age, and the first acr demanded.
///
/// acr values carry no order the engine knows, so when two authorizers name different classes the
/// earlier one (in the scope's authorizer order) stands; assign an `acr` authorizer first to rank them.
fn merge_step_up(a: Option<StepUp>, b: Option<StepUp>) -> Option<StepUp> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => Some(StepUp {
            acr: a.acr.or(b.acr),
            max_age_seconds: match (a.max_age_seconds, b.max_age_seconds) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            },
        }),
    }
}

fn merge(a: Conditions, b: Conditions) -> Conditions {
    Conditions {
        consent: a.consent || b.consent,
        ttl_seconds: match (a.ttl_seconds, b.ttl_seconds) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        },
        step_up: merge_step_up(a.step_up, b.step_up),
    }
}

/// The combined verdict of `verdicts`, in authorizer order. No authorizer at all allows.
pub fn combine<'a>(verdicts: impl IntoIterator<Item = &'a Verdict>) -> Verdict {
    let mut conditions: Option<Conditions> = None;
    for v in verdicts {
        match v {
            Verdict::Deny { .. } => return v.clone(),
            Verdict::Allow => {}
            Verdict::Conditional { conditions: c } => {
                conditions = Some(merge(conditions.unwrap_or_default(), c.clone()));
            }
        }
    }
    match conditions {
        Some(c) if c != Conditions::default() => Verdict::Conditional { conditions: c },
        _ => Verdict::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_deny_denies_and_the_first_reason_is_kept() {
        let v = [
            Verdict::Allow,
            Verdict::deny("one"),
            Verdict::consent(),
            Verdict::deny("two"),
        ];
        assert_eq!(combine(&v), Verdict::deny("one"));
    }

    #[test]
    fn conditions_merge_consent_shortest_ttl_strictest_step_up() {
        let v = [
            Verdict::ttl(600),
            Verdict::consent(),
            Verdict::ttl(60),
            Verdict::step_up(StepUp {
                acr: Some("mfa".into()),
                max_age_seconds: Some(300),
            }),
            Verdict::step_up(StepUp {
                acr: None,
                max_age_seconds: Some(120),
            }),
            Verdict::Allow,
        ];
        assert_eq!(
            combine(&v),
            Verdict::Conditional {
                conditions: Conditions {
                    consent: true,
                    ttl_seconds: Some(60),
                    step_up: Some(StepUp {
                        acr: Some("mfa".into()),
                        max_age_seconds: Some(120)
                    }),
                }
            }
        );
    }

    #[test]
    fn all_allow_or_nothing_assigned_allows() {
        assert_eq!(combine(&[Verdict::Allow, Verdict::Allow]), Verdict::Allow);
        assert_eq!(combine(&[]), Verdict::Allow);
    }
}
