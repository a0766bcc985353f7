//! `rego`: a policy in Rego (OPA-compatible), compiled once at load and evaluated in-process by regorus.
//!
//! Input: `{ "context": …the decision context…, "scope": {"scope", "template", "value"} }`. The rule named by
//! `rule` (default `data.consent_ledger.decision`) must produce a verdict in the trail's own shape:
//! `{"verdict": "allow"}`, `{"verdict": "deny", "reason": "…"}` or
//! `{"verdict": "conditional", "conditions": {"consent": true, "ttl_seconds": 300, "step_up": {"acr": "…"}}}`.
//! An undefined rule, an evaluation error or any other shape denies: the authorizer fails closed.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::policy::authorizer::{Authorize, Context, ScopeRequest, Verdict};

/// Options of a `rego` authorizer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegoConfig {
    /// The policy text. Exactly one of `source` and `file`.
    #[serde(default)]
    pub source: Option<String>,
    /// A `.rego` file, read at load.
    #[serde(default)]
    pub file: Option<String>,
    /// The rule whose value is the verdict.
    #[serde(default = "default_rule")]
    pub rule: String,
}

fn default_rule() -> String {
    "data.consent_ledger.decision".into()
}

/// A compiled Rego policy and a pool of engines, so concurrent requests do not wait on one another.
#[derive(Debug)]
pub struct Rego {
    prototype: regorus::Engine,
    idle: Mutex<Vec<regorus::Engine>>,
    rule: String,
}

/// Engines kept for reuse; cloning one costs about four evaluations.
const IDLE_ENGINES_MAX: usize = 8;

impl Rego {
    /// Parses and compiles the policy; `Err` carries regorus's message.
    pub fn build(config: &RegoConfig) -> Result<Rego, String> {
        let (name, text) = match (&config.source, &config.file) {
            (Some(s), None) => ("inline.rego".to_owned(), s.clone()),
            (None, Some(f)) => (
                f.clone(),
                std::fs::read_to_string(f).map_err(|e| format!("cannot read {f}: {e}"))?,
            ),
            _ => return Err("a rego authorizer needs exactly one of source and file".into()),
        };
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(name, text)
            .map_err(|e| format!("rego policy does not compile: {e}"))?;
        // Evaluate once with an empty input so a rule path that cannot exist is refused at load.
        engine.set_input(regorus::Value::from(json!({})));
        engine
            .eval_rule(config.rule.clone())
            .map_err(|e| format!("rule {}: {e}", config.rule))?;
        Ok(Rego {
            prototype: engine,
            idle: Mutex::new(Vec::new()),
            rule: config.rule.clone(),
        })
    }

    fn run(&self, input: serde_json::Value) -> Result<Verdict, String> {
        let mut engine = self
            .idle
            .lock()
            .ok()
            .and_then(|mut idle| idle.pop())
            .unwrap_or_else(|| self.prototype.clone());
        engine.set_input(regorus::Value::from(input));
        let result = engine.eval_rule(self.rule.clone());
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_ENGINES_MAX
        {
            idle.push(engine);
        }
        let value = result.map_err(|e| e.to_string())?;
        if value == regorus::Value::Undefined {
            return Err("the policy gave no decision".into());
        }
        let json = serde_json::to_value(&value).map_err(|e| e.to_string())?;
        serde_json::from_value(json).map_err(|e| format!("the policy's decision is not a verdict: {e}"))
    }
}

impl Authorize for Rego {
    fn evaluate(&self, ctx: &Context<'_>, scope: &ScopeRequest<'_>) -> Verdict {
        let input = json!({ "context": ctx, "scope": scope });
        self.run(input)
            .unwrap_or_else(|e| Verdict::deny(format!("rego: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizer::Conditions;
    use crate::policy::authorizers::testing::{Fixture, static_scope};
    use projections::event::ClientKind;

    fn of_kind(kind: ClientKind) -> Fixture {
        let mut f = Fixture::default();
        f.client.spec.kind = kind;
        f
    }

    const POLICY: &str = r#"
package consent_ledger
import rego.v1

default decision := {"verdict": "deny", "reason": "not a first-party client"}

decision := {"verdict": "allow"} if {
    input.context.client.kind == "first_party"
    not startswith(input.scope.scope, "admin")
}

decision := {"verdict": "conditional", "conditions": {"consent": true, "ttl_seconds": 60}} if {
    input.context.client.kind == "first_party"
    startswith(input.scope.scope, "admin")
}
"#;

    fn rego(source: &str) -> Result<Rego, String> {
        Rego::build(&RegoConfig {
            source: Some(source.into()),
            file: None,
            rule: default_rule(),
        })
    }

    #[test]
    fn the_policy_decides_from_the_context_and_the_scope() {
        let r = rego(POLICY).unwrap();
        let (first, third) = (of_kind(ClientKind::FirstParty), of_kind(ClientKind::ThirdParty));
        assert_eq!(r.evaluate(&first.ctx(), &static_scope("read")), Verdict::Allow);
        assert_eq!(
            r.evaluate(&first.ctx(), &static_scope("admin.users")),
            Verdict::Conditional {
                conditions: Conditions {
                    consent: true,
                    ttl_seconds: Some(60),
                    step_up: None
                }
            }
        );
        assert_eq!(
            r.evaluate(&third.ctx(), &static_scope("read")),
            Verdict::deny("not a first-party client")
        );
    }

    #[test]
    fn no_decision_or_a_malformed_one_denies() {
        let r = rego(
            "package consent_ledger\nimport rego.v1\ndecision := {\"verdict\": \"maybe\"} if { false }\n",
        )
        .unwrap();
        assert!(matches!(
            r.evaluate(&Fixture::default().ctx(), &static_scope("read")),
            Verdict::Deny { .. }
        ));
        let r =
            rego("package consent_ledger\nimport rego.v1\ndecision := {\"verdict\": \"maybe\"}\n").unwrap();
        assert!(
            matches!(r.evaluate(&Fixture::default().ctx(), &static_scope("read")), Verdict::Deny { reason } if reason.contains("not a verdict"))
        );
    }

    #[test]
    fn the_shipped_example_policies_compile_and_decide() {
        let load = |name: &str| {
            let file = format!("{}/examples/policies/{name}", env!("CARGO_MANIFEST_DIR"));
            Rego::build(&RegoConfig {
                source: None,
                file: Some(file),
                rule: default_rule(),
            })
            .unwrap()
        };
        let first = load("first_party_only.rego");
        assert_eq!(
            first.evaluate(&of_kind(ClientKind::FirstParty).ctx(), &static_scope("read")),
            Verdict::Allow
        );
        assert!(matches!(
            first.evaluate(&of_kind(ClientKind::ThirdParty).ctx(), &static_scope("read")),
            Verdict::Deny { .. }
        ));

        let admin = load("admin_scopes.rego");
        let human = Fixture::default();
        assert_eq!(
            admin.evaluate(&human.ctx(), &static_scope("read")),
            Verdict::Allow
        );
        let Verdict::Conditional { conditions } = admin.evaluate(&human.ctx(), &static_scope("admin.users"))
        else {
            panic!("admin scopes are conditional for people")
        };
        assert!(conditions.consent && conditions.ttl_seconds == Some(900) && conditions.step_up.is_some());
        let mut machine = Fixture::default();
        machine.client.spec.audience = projections::event::ClientAudience::Machine;
        assert!(matches!(
            admin.evaluate(&machine.ctx(), &static_scope("admin.users")),
            Verdict::Deny { .. }
        ));
    }

    #[test]
    fn a_policy_that_does_not_compile_is_refused_at_load() {
        assert!(rego("package consent_ledger\ndecision := {").is_err());
        assert!(
            Rego::build(&RegoConfig {
                source: None,
                file: None,
                rule: default_rule()
            })
            .is_err()
        );
    }
}
