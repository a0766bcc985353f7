//! `resource-owner`: a dynamic scope naming a resource (`account.list.05542`) is allowed only to the
//! subject who owns that resource.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::JsonPath;
use crate::policy::authorizer::{Authorize, Context, ScopeRequest, Verdict};

fn default_attribute() -> String {
    "resources".into()
}

/// Options of `resource-owner`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceOwnerConfig {
    /// Dot path into the subject's attributes to the array of ids the subject owns.
    #[serde(default = "default_attribute")]
    pub attribute: String,
}

impl Default for ResourceOwnerConfig {
    fn default() -> Self {
        ResourceOwnerConfig {
            attribute: default_attribute(),
        }
    }
}

/// Allows a dynamic scope when its value is among the subject's owned ids.
#[derive(Debug, Clone)]
pub struct ResourceOwnerAuthorizer {
    attribute: JsonPath,
}

impl ResourceOwnerAuthorizer {
    /// Builds from `config`; the attribute path must be well formed.
    pub fn new(config: &ResourceOwnerConfig) -> Result<Self, String> {
        Ok(ResourceOwnerAuthorizer {
            attribute: JsonPath::parse("attribute", &config.attribute)?,
        })
    }
}

impl Authorize for ResourceOwnerAuthorizer {
    fn evaluate(&self, ctx: &Context<'_>, scope: &ScopeRequest<'_>) -> Verdict {
        // Assigned to a static scope there is no resource to check, and allowing would hand out the scope
        // with no ownership check at all: deny, so the misconfiguration shows.
        let Some(value) = scope.value else {
            return Verdict::deny("resource-owner needs a dynamic scope");
        };
        // Ids are compared as strings, exactly: `05542` and `5542` are different accounts.
        let owned = match self.attribute.lookup(ctx.subject_attributes) {
            Some(Value::Array(ids)) => ids.iter().any(|id| id.as_str() == Some(value)),
            _ => false,
        };
        if owned {
            Verdict::Allow
        } else {
            Verdict::deny(format!(
                "the subject does not own {value:?} (not in {})",
                self.attribute
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::authorizers::testing::{Fixture, dynamic_scope, static_scope};

    fn owner() -> ResourceOwnerAuthorizer {
        ResourceOwnerAuthorizer::new(&ResourceOwnerConfig::default()).unwrap()
    }

    #[test]
    fn an_owned_id_is_allowed() {
        // Given a subject owning two accounts
        let f = Fixture::with_attributes(json!({"resources": ["05542", "07781"]}));

        // When a dynamic scope names one of them
        let verdict = f.evaluate_scope(&owner(), &dynamic_scope("account.list.*", "account.list.07781"));

        // Then it is allowed
        assert_eq!(verdict, Verdict::Allow);
    }

    #[test]
    fn a_foreign_id_is_denied() {
        // Given a subject owning one account
        let f = Fixture::with_attributes(json!({"resources": ["05542"]}));

        // Then another account, a near miss and the same number without its leading zero are denied
        for scope in ["account.list.05543", "account.list.0554", "account.list.5542"] {
            let verdict = f.evaluate_scope(&owner(), &dynamic_scope("account.list.*", scope));
            let Verdict::Deny { reason } = verdict else {
                panic!("{scope}: expected a denial, got {verdict:?}")
            };
            assert!(reason.starts_with("the subject does not own"), "{reason}");
        }
    }

    #[test]
    fn a_subject_without_the_attribute_owns_nothing() {
        let scope = dynamic_scope("account.list.*", "account.list.05542");
        for attributes in [
            Value::Null,
            json!({}),
            json!({"resources": "05542"}),
            json!({"resources": [5542]}),
        ] {
            let verdict = Fixture::with_attributes(attributes.clone()).evaluate_scope(&owner(), &scope);
            assert!(
                matches!(verdict, Verdict::Deny { .. }),
                "{attributes}: {verdict:?}"
            );
        }
    }

    #[test]
    fn the_attribute_path_is_configurable() {
        // Given owned ids under a nested attribute
        let nested = ResourceOwnerAuthorizer::new(&ResourceOwnerConfig {
            attribute: "bank.accounts".into(),
        })
        .unwrap();
        let f = Fixture::with_attributes(json!({"bank": {"accounts": ["77"]}, "resources": ["88"]}));

        // Then only ids there count
        assert_eq!(
            f.evaluate_scope(&nested, &dynamic_scope("account.{id}.read", "account.77.read")),
            Verdict::Allow
        );
        let foreign = f.evaluate_scope(&nested, &dynamic_scope("account.{id}.read", "account.88.read"));
        assert_eq!(
            foreign,
            Verdict::deny("the subject does not own \"88\" (not in bank.accounts)")
        );
    }

    #[test]
    fn a_static_scope_fails_closed() {
        // Given the subject owns a resource literally named like the scope
        let f = Fixture::with_attributes(json!({"resources": ["profile.read"]}));

        // Then a static scope is still denied, as a misconfiguration
        assert_eq!(
            f.evaluate_scope(&owner(), &static_scope("profile.read")),
            Verdict::deny("resource-owner needs a dynamic scope")
        );
    }

    #[test]
    fn a_malformed_attribute_path_is_refused() {
        assert!(ResourceOwnerAuthorizer::new(&ResourceOwnerConfig { attribute: "".into() }).is_err());
        assert!(
            ResourceOwnerAuthorizer::new(&ResourceOwnerConfig {
                attribute: "a.".into()
            })
            .is_err()
        );
    }
}
