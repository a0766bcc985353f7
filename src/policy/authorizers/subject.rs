//! `subject`: rules on the subject's attributes (`ctx.subject_attributes`): group membership, a role,
//! an attribute's presence.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::JsonPath;
use crate::policy::authorizer::{Authorize, Context, ScopeRequest, Verdict};

/// One rule on an attribute; exactly one of `contains`, `equals`, `exists` is given.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Dot path into the subject's attributes, e.g. `groups` or `org.role`.
    pub attribute: String,
    /// The attribute is an array with an element equal to this string, or is this string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// The attribute equals this string, number or boolean (numbers compare by value: `3` equals `3.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// `true`: the attribute is present (and not null); `false`: it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

/// Options of `subject`. At least one rule, in either list.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectConfig {
    /// Every one of these must hold.
    #[serde(default)]
    pub require: Vec<RuleConfig>,
    /// When non-empty, at least one of these must hold.
    #[serde(default)]
    pub any_of: Vec<RuleConfig>,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Contains(String),
    Equals(Value),
    Exists(bool),
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    path: JsonPath,
    test: Test,
}

impl Rule {
    fn compile(config: &RuleConfig) -> Result<Rule, String> {
        let path = JsonPath::parse("attribute", &config.attribute)?;
        let test = match (&config.contains, &config.equals, config.exists) {
            (Some(s), None, None) => Test::Contains(s.clone()),
            (None, Some(v), None) => match v {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => Test::Equals(v.clone()),
                _ => {
                    return Err(format!(
                        "rule on {path}: equals must be a string, number or boolean"
                    ));
                }
            },
            (None, None, Some(b)) => Test::Exists(b),
            _ => {
                return Err(format!(
                    "rule on {path} needs exactly one of contains, equals, exists"
                ));
            }
        };
        Ok(Rule { path, test })
    }

    fn holds(&self, attributes: &Value) -> bool {
        let found = self.path.lookup(attributes);
        match &self.test {
            Test::Contains(wanted) => match found {
                Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(wanted)),
                // A single-valued attribute (`group = "admins"`) is a one-element set.
                Some(Value::String(s)) => s == wanted,
                _ => false,
            },
            Test::Equals(wanted) => found.is_some_and(|v| same_value(v, wanted)),
            Test::Exists(wanted) => found.is_some() == *wanted,
        }
    }

    fn describe(&self) -> String {
        match &self.test {
            Test::Contains(s) => format!("{} contains {s:?}", self.path),
            Test::Equals(v) => format!("{} equals {v}", self.path),
            Test::Exists(true) => format!("{} exists", self.path),
            Test::Exists(false) => format!("{} is absent", self.path),
        }
    }
}

/// JSON equality, except that numbers compare by value: attributes come from many sources, and one
/// writing `3.0` where the policy says `3` should not change the decision.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| x == y)
        }
        _ => a == b,
    }
}

/// Allows subjects whose attributes meet every `require` rule and, if any are given, one `any_of` rule.
#[derive(Debug, Clone)]
pub struct SubjectAuthorizer {
    require: Vec<Rule>,
    any_of: Vec<Rule>,
}

impl SubjectAuthorizer {
    /// Builds from `config`; a subject authorizer without rules would allow everyone, which is what
    /// `allow` is for, so it is refused as a likely mistake.
    pub fn new(config: &SubjectConfig) -> Result<Self, String> {
        if config.require.is_empty() && config.any_of.is_empty() {
            return Err("subject needs at least one rule in require or any_of".into());
        }
        let compile = |rules: &[RuleConfig]| rules.iter().map(Rule::compile).collect::<Result<Vec<_>, _>>();
        Ok(SubjectAuthorizer {
            require: compile(&config.require)?,
            any_of: compile(&config.any_of)?,
        })
    }
}

impl Authorize for SubjectAuthorizer {
    fn evaluate(&self, ctx: &Context<'_>, _scope: &ScopeRequest<'_>) -> Verdict {
        let attributes = ctx.subject_attributes;
        if let Some(broken) = self.require.iter().find(|r| !r.holds(attributes)) {
            return Verdict::deny(format!("subject does not satisfy {}", broken.describe()));
        }
        if !self.any_of.is_empty() && !self.any_of.iter().any(|r| r.holds(attributes)) {
            let rules: Vec<String> = self.any_of.iter().map(Rule::describe).collect();
            return Verdict::deny(format!("subject satisfies none of any_of: {}", rules.join("; ")));
        }
        Verdict::Allow
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::authorizers::testing::Fixture;

    fn rules(toml_text: &str) -> SubjectAuthorizer {
        SubjectAuthorizer::new(&toml::from_str(toml_text).unwrap()).unwrap()
    }

    fn reason(verdict: Verdict) -> String {
        match verdict {
            Verdict::Deny { reason } => reason,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn contains_matches_an_array_element_or_an_equal_string() {
        // Given a rule that the subject be in the admins group
        let admins = rules(r#"require = [{ attribute = "groups", contains = "admins" }]"#);

        // Then membership by array or by single string allows
        assert_eq!(
            Fixture::with_attributes(json!({"groups": ["staff", "admins"]})).evaluate(&admins),
            Verdict::Allow
        );
        assert_eq!(
            Fixture::with_attributes(json!({"groups": "admins"})).evaluate(&admins),
            Verdict::Allow
        );

        // And a near miss does not: other groups, a substring, a nested array, no attributes at all
        for attributes in [
            json!({"groups": ["staff"]}),
            json!({"groups": "sysadmins"}),
            json!({"groups": [["admins"]]}),
            json!({"groups": null}),
            json!({}),
            Value::Null,
        ] {
            let verdict = Fixture::with_attributes(attributes.clone()).evaluate(&admins);
            assert_eq!(
                reason(verdict),
                "subject does not satisfy groups contains \"admins\"",
                "{attributes}"
            );
        }
    }

    #[test]
    fn equals_compares_strings_numbers_and_booleans() {
        // Given rules on a nested role, a level and a flag
        let owner = rules(
            r#"require = [
                { attribute = "org.role", equals = "owner" },
                { attribute = "level", equals = 3 },
                { attribute = "verified", equals = true },
            ]"#,
        );
        let meets = json!({"org": {"role": "owner"}, "level": 3.0, "verified": true});

        // Then the subject meeting all of them is allowed
        assert_eq!(
            Fixture::with_attributes(meets.clone()).evaluate(&owner),
            Verdict::Allow
        );

        // And changing any one denies, naming it
        let mut wrong_role = meets.clone();
        wrong_role["org"]["role"] = json!("member");
        assert_eq!(
            reason(Fixture::with_attributes(wrong_role).evaluate(&owner)),
            "subject does not satisfy org.role equals \"owner\""
        );
        let mut as_string = meets.clone();
        as_string["level"] = json!("3");
        assert_eq!(
            reason(Fixture::with_attributes(as_string).evaluate(&owner)),
            "subject does not satisfy level equals 3"
        );
        let mut unverified = meets;
        unverified["verified"] = json!(false);
        assert_eq!(
            reason(Fixture::with_attributes(unverified).evaluate(&owner)),
            "subject does not satisfy verified equals true"
        );
    }

    #[test]
    fn exists_checks_presence_and_absence() {
        // Given an email required and a suspension forbidden
        let a = rules(
            r#"require = [{ attribute = "email", exists = true }, { attribute = "suspended", exists = false }]"#,
        );

        // Then presence of the one and absence (or null) of the other allows
        assert_eq!(
            Fixture::with_attributes(json!({"email": "a@x"})).evaluate(&a),
            Verdict::Allow
        );
        assert_eq!(
            Fixture::with_attributes(json!({"email": "", "suspended": null})).evaluate(&a),
            Verdict::Allow
        );

        // And otherwise the broken rule is named
        assert_eq!(
            reason(Fixture::with_attributes(json!({"email": null})).evaluate(&a)),
            "subject does not satisfy email exists"
        );
        assert_eq!(
            reason(Fixture::with_attributes(json!({"email": "a@x", "suspended": true})).evaluate(&a)),
            "subject does not satisfy suspended is absent"
        );
    }

    #[test]
    fn any_of_needs_one_rule_to_hold() {
        // Given staff required, and either the owner role or the admins group
        let a = rules(
            r#"
            require = [{ attribute = "groups", contains = "staff" }]
            any_of = [{ attribute = "role", equals = "owner" }, { attribute = "groups", contains = "admins" }]
            "#,
        );

        // Then either alternative allows
        assert_eq!(
            Fixture::with_attributes(json!({"groups": ["staff"], "role": "owner"})).evaluate(&a),
            Verdict::Allow
        );
        assert_eq!(
            Fixture::with_attributes(json!({"groups": ["staff", "admins"]})).evaluate(&a),
            Verdict::Allow
        );

        // And neither denies, listing the alternatives
        assert_eq!(
            reason(Fixture::with_attributes(json!({"groups": ["staff"], "role": "member"})).evaluate(&a)),
            "subject satisfies none of any_of: role equals \"owner\"; groups contains \"admins\""
        );

        // And an alternative does not excuse a broken requirement
        assert_eq!(
            reason(Fixture::with_attributes(json!({"groups": ["admins"]})).evaluate(&a)),
            "subject does not satisfy groups contains \"staff\""
        );
    }

    #[test]
    fn malformed_rules_are_refused() {
        let cases = [
            ("", "at least one rule"),
            (r#"require = [{ attribute = "groups" }]"#, "exactly one of"),
            (
                r#"require = [{ attribute = "groups", contains = "a", exists = true }]"#,
                "exactly one of",
            ),
            (
                r#"any_of = [{ attribute = "", exists = true }]"#,
                "attribute must not be empty",
            ),
            (
                r#"require = [{ attribute = "a..b", exists = true }]"#,
                "empty segment",
            ),
            (
                r#"require = [{ attribute = "role", equals = ["owner"] }]"#,
                "equals must be a string",
            ),
        ];
        for (text, expected) in cases {
            let config: SubjectConfig = toml::from_str(text).unwrap();
            let err = SubjectAuthorizer::new(&config).unwrap_err();
            assert!(
                err.contains(expected),
                "{text}: {err:?} should contain {expected:?}"
            );
        }
        assert!(
            toml::from_str::<SubjectConfig>(r#"require = [{ attribute = "a", matches = "x" }]"#).is_err()
        );
    }
}
