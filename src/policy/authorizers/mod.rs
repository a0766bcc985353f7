//! The built-in authorizer types, configured as `[[authorizers]]` entries and built once at policy load.
//!
//! Each type is a pure function of the [`Context`](super::authorizer::Context) and the scope: options are
//! validated by [`build`], so a policy that loads cannot fail at issuance for a reason its author could
//! have been told about up front. Where an authorizer meets something it cannot judge (a missing
//! attribute, a malformed amount) it denies: a policy must fail closed.

pub mod acr;
pub mod allow;
pub mod authorization_details;
pub mod client;
pub mod consent;
pub mod freshness;
pub mod http;
pub mod rego;
pub mod resource_owner;
pub mod subject;

#[cfg(test)]
pub(crate) mod testing;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::authorizer::Authorize;

/// One `[[authorizers]]` entry of the policy configuration: a name the scopes refer to, a `type`, and that
/// type's options, all in the same table.
///
/// serde refuses `deny_unknown_fields` on a struct with a flattened field, so this struct accepts any key;
/// unknown keys are still refused, by the option struct of the chosen type (each one denies unknown
/// fields, and only the keys left over after `name` and `type` reach it).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct AuthorizerConfig {
    /// The name scopes use to assign this authorizer; also recorded in the decision trail.
    pub name: String,
    /// The type and its options.
    #[serde(flatten)]
    pub kind: AuthorizerKind,
}

/// The type of an authorizer, tagged by `type`, with that type's options.
///
/// `deny_unknown_fields` is left off here on purpose: an internally tagged enum hands each variant the
/// table without the tag, and it is the variant's option struct that refuses keys it does not know.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum AuthorizerKind {
    /// Always allows.
    Allow(allow::AllowConfig),
    /// Always denies, with a configured reason.
    Deny(allow::DenyConfig),
    /// Requires the user's consent.
    Consent(consent::ConsentConfig),
    /// Limits scopes by the age of the user's authentication.
    AuthenticationFreshness(freshness::FreshnessConfig),
    /// Rules on the client: kind, audience, registration, ids, grant type.
    Client(client::ClientConfig),
    /// Rules on the subject's attributes.
    Subject(subject::SubjectConfig),
    /// Requires an authentication context class at or above a level.
    Acr(acr::AcrConfig),
    /// Requires the subject to own the resource a dynamic scope names.
    ResourceOwner(resource_owner::ResourceOwnerConfig),
    /// Rules on RFC 9396 `authorization_details`: types, fields, amount bands.
    AuthorizationDetails(authorization_details::AuthorizationDetailsConfig),
    /// A Rego policy evaluated in-process.
    Rego(rego::RegoConfig),
    /// An external policy decision point (OpenID AuthZEN), asked before the decision.
    Http(http::HttpConfig),
}

impl AuthorizerKind {
    /// The `type` as written in the configuration (kebab-case).
    pub fn type_name(&self) -> &'static str {
        match self {
            AuthorizerKind::Allow(_) => "allow",
            AuthorizerKind::Deny(_) => "deny",
            AuthorizerKind::Consent(_) => "consent",
            AuthorizerKind::AuthenticationFreshness(_) => "authentication-freshness",
            AuthorizerKind::Client(_) => "client",
            AuthorizerKind::Subject(_) => "subject",
            AuthorizerKind::Acr(_) => "acr",
            AuthorizerKind::ResourceOwner(_) => "resource-owner",
            AuthorizerKind::AuthorizationDetails(_) => "authorization-details",
            AuthorizerKind::Rego(_) => "rego",
            AuthorizerKind::Http(_) => "http",
        }
    }
}

/// Validates options and builds the authorizer once, at policy load.
///
/// The error names the problem only (e.g. `deny_after_seconds must exceed step_up_after_seconds`); the
/// caller knows which entry it was building and adds its name.
pub fn build(config: &AuthorizerConfig) -> Result<Box<dyn Authorize>, String> {
    fn boxed<A: Authorize + 'static>(built: Result<A, String>) -> Result<Box<dyn Authorize>, String> {
        built.map(|a| Box::new(a) as Box<dyn Authorize>)
    }
    match &config.kind {
        AuthorizerKind::Allow(c) => boxed(allow::AllowAuthorizer::new(c)),
        AuthorizerKind::Deny(c) => boxed(allow::DenyAuthorizer::new(c)),
        AuthorizerKind::Consent(c) => boxed(consent::ConsentAuthorizer::new(c)),
        AuthorizerKind::AuthenticationFreshness(c) => boxed(freshness::FreshnessAuthorizer::new(c)),
        AuthorizerKind::Client(c) => boxed(client::ClientAuthorizer::new(c)),
        AuthorizerKind::Subject(c) => boxed(subject::SubjectAuthorizer::new(c)),
        AuthorizerKind::Acr(c) => boxed(acr::AcrAuthorizer::new(c)),
        AuthorizerKind::ResourceOwner(c) => boxed(resource_owner::ResourceOwnerAuthorizer::new(c)),
        AuthorizerKind::AuthorizationDetails(c) => {
            boxed(authorization_details::AuthorizationDetailsAuthorizer::new(c))
        }
        AuthorizerKind::Rego(c) => boxed(rego::Rego::build(c)),
        AuthorizerKind::Http(c) => boxed(http::HttpAuthorizer::new(&config.name, c)),
    }
}

/// A dot path into JSON (`instructedAmount.amount`, `groups`, `accounts.0.id`), parsed once at load.
///
/// A segment indexes an object by key, or an array by position when it is a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    raw: String,
    segments: Vec<String>,
}

impl JsonPath {
    /// Parses `raw`; `option` names the setting it came from, for the error.
    pub fn parse(option: &str, raw: &str) -> Result<JsonPath, String> {
        if raw.is_empty() {
            return Err(format!("{option} must not be empty"));
        }
        let segments: Vec<String> = raw.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!("{option} {raw:?} has an empty segment"));
        }
        Ok(JsonPath {
            raw: raw.to_owned(),
            segments,
        })
    }

    /// The value at this path in `root`. JSON `null` counts as absent: an attribute set to null says no
    /// more than one left out, and treating them alike keeps every rule from having to decide.
    pub fn lookup<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        self.segments
            .iter()
            .try_fold(root, |v, segment| match v {
                Value::Object(map) => map.get(segment),
                Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            })
            .filter(|v| !v.is_null())
    }

    /// The path as configured.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::testing::Fixture;
    use super::*;
    use crate::policy::authorizer::Verdict;

    #[derive(Debug, Deserialize)]
    struct Policy {
        authorizers: Vec<AuthorizerConfig>,
    }

    const ONE_OF_EACH: &str = r#"
        [[authorizers]]
        name = "open"
        type = "allow"

        [[authorizers]]
        name = "closed"
        type = "deny"
        reason = "retired scope"

        [[authorizers]]
        name = "ask"
        type = "consent"
        third_party_only = true

        [[authorizers]]
        name = "fresh"
        type = "authentication-freshness"
        full_ttl_seconds = 3600
        min_ttl_seconds = 120
        step_up_after_seconds = 1800
        deny_after_seconds = 86400

        [[authorizers]]
        name = "own-apps"
        type = "client"
        kinds = ["first_party"]
        audiences = ["human"]
        dynamically_registered = false
        allow_client_ids = ["client-1"]
        deny_client_ids = ["evil"]
        grant_types = ["authorization_code"]

        [[authorizers]]
        name = "admins"
        type = "subject"
        require = [{ attribute = "groups", contains = "admins" }, { attribute = "email", exists = true }]
        any_of = [{ attribute = "role", equals = "owner" }, { attribute = "level", equals = 3 }]

        [[authorizers]]
        name = "mfa"
        type = "acr"
        required = "mfa"
        order = ["pwd", "mfa", "hwk"]

        [[authorizers]]
        name = "owner"
        type = "resource-owner"
        attribute = "accounts"

        [[authorizers]]
        name = "payments"
        type = "authorization-details"
        types = ["payment_initiation"]
        required_fields = ["creditorAccount.iban"]
        amount_field = "instructedAmount.amount"
        allow_up_to = 10
        consent_up_to = 1000.5
        step_up_up_to = 10000
        step_up_acr = "hwk"

        [[authorizers]]
        name = "pdp"
        type = "http"
        url = "https://pdp.example/access/v1/evaluation"
        timeout_ms = 250
    
        [[authorizers]]
        name = "policy"
        type = "rego"
        file = "examples/policies/first_party_only.rego"
    "#;

    fn parse(toml_text: &str) -> Vec<AuthorizerConfig> {
        toml::from_str::<Policy>(toml_text).unwrap().authorizers
    }

    fn one(toml_text: &str) -> AuthorizerConfig {
        let mut all = parse(toml_text);
        assert_eq!(all.len(), 1);
        all.remove(0)
    }

    #[test]
    fn one_of_each_type_parses_and_builds() {
        // Given a policy with one authorizer of every type
        let configs = parse(ONE_OF_EACH);

        // When each is built
        let built: Vec<_> = configs.iter().map(build).collect::<Result<_, _>>().unwrap();

        // Then all of them load, in order, with their kebab-case type names
        let types: Vec<_> = configs.iter().map(|c| c.kind.type_name()).collect();
        assert_eq!(
            types,
            [
                "allow",
                "deny",
                "consent",
                "authentication-freshness",
                "client",
                "subject",
                "acr",
                "resource-owner",
                "authorization-details",
                "http",
                "rego",
            ]
        );
        assert_eq!(built.len(), 11);
        assert_eq!(configs[0].name, "open");
        assert_eq!(
            configs[1].kind,
            AuthorizerKind::Deny(allow::DenyConfig {
                reason: "retired scope".into()
            })
        );
    }

    #[test]
    fn type_name_is_the_serde_tag() {
        // Given every type, parsed
        for config in parse(ONE_OF_EACH) {
            // When it is serialized back
            let json = serde_json::to_value(&config).unwrap();

            // Then the `type` written is the one `type_name` reports, and it reads back the same
            assert_eq!(json["type"], config.kind.type_name());
            assert_eq!(json["name"], config.name.as_str());
            let again: AuthorizerConfig = serde_json::from_value(json).unwrap();
            assert_eq!(again, config);
        }
    }

    #[test]
    fn built_authorizers_decide() {
        // Given the deny and allow entries, built
        let configs = parse(ONE_OF_EACH);
        let open = build(&configs[0]).unwrap();
        let closed = build(&configs[1]).unwrap();
        let f = Fixture::default();

        // Then they decide as configured
        assert_eq!(f.evaluate(open.as_ref()), Verdict::Allow);
        assert_eq!(f.evaluate(closed.as_ref()), Verdict::deny("retired scope"));
    }

    #[test]
    fn unknown_options_are_refused_at_parse() {
        // Given options another type has, or that no type has
        let typo = r#"
            [[authorizers]]
            name = "fresh"
            type = "authentication-freshness"
            full_ttl_seconds = 3600
            deny_after = 60
        "#;
        let on_allow = r#"
            [[authorizers]]
            name = "open"
            type = "allow"
            reason = "x"
        "#;

        // Then parsing fails and names the key
        let err = toml::from_str::<Policy>(typo).unwrap_err().to_string();
        assert!(err.contains("deny_after"), "{err}");
        let err = toml::from_str::<Policy>(on_allow).unwrap_err().to_string();
        assert!(err.contains("reason"), "{err}");
    }

    #[test]
    fn unknown_types_and_missing_required_options_are_refused_at_parse() {
        let unknown = "[[authorizers]]\nname = \"x\"\ntype = \"opa-remote\"\n";
        let no_reason = "[[authorizers]]\nname = \"x\"\ntype = \"deny\"\n";
        let no_name = "[[authorizers]]\ntype = \"allow\"\n";
        for bad in [unknown, no_reason, no_name] {
            assert!(toml::from_str::<Policy>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_options_are_refused_by_build() {
        let cases = [
            (
                r#"
                [[authorizers]]
                name = "payments"
                type = "authorization-details"
                amount_field = "amount"
                allow_up_to = 100
                consent_up_to = 50
                "#,
                "consent_up_to must exceed allow_up_to",
            ),
            (
                r#"
                [[authorizers]]
                name = "mfa"
                type = "acr"
                required = "mfa"
                order = ["pwd", "hwk"]
                "#,
                "required acr \"mfa\" is not in order",
            ),
            (
                r#"
                [[authorizers]]
                name = "fresh"
                type = "authentication-freshness"
                full_ttl_seconds = 3600
                step_up_after_seconds = 600
                deny_after_seconds = 600
                "#,
                "deny_after_seconds must exceed step_up_after_seconds",
            ),
            (
                r#"
                [[authorizers]]
                name = "who"
                type = "subject"
                "#,
                "at least one rule",
            ),
        ];
        for (text, expected) in cases {
            // Given a configuration that parses
            let config = one(text);

            // When it is built
            let err = build(&config).unwrap_err();

            // Then the error names the problem
            assert!(err.contains(expected), "{err:?} should contain {expected:?}");
        }
    }

    #[test]
    fn every_example_in_the_documentation_builds() {
        // Given the TOML examples of docs/authorizers.md
        let doc = include_str!("../../../docs/authorizers.md");
        let examples: Vec<&str> = doc
            .split("```toml\n")
            .skip(1)
            .map(|block| block.split("```").next().unwrap())
            .collect();

        // When each is parsed and built
        let mut documented: Vec<&str> = Vec::new();
        for example in examples {
            for config in parse(example) {
                build(&config).unwrap_or_else(|e| panic!("{example}: {e}"));
                documented.push(config.kind.type_name());
            }
        }

        // Then they load, and every type has one
        documented.sort_unstable();
        documented.dedup();
        let mut all: Vec<&str> = parse(ONE_OF_EACH).iter().map(|c| c.kind.type_name()).collect();
        all.sort_unstable();
        assert_eq!(documented, all);
    }

    #[test]
    fn json_paths_walk_objects_and_arrays_and_treat_null_as_absent() {
        let doc = json!({"a": {"b": [10, {"c": "x"}]}, "n": null});
        let path = |p: &str| JsonPath::parse("attribute", p).unwrap();
        assert_eq!(path("a.b.0").lookup(&doc), Some(&json!(10)));
        assert_eq!(path("a.b.1.c").lookup(&doc), Some(&json!("x")));
        assert_eq!(path("a.b.2").lookup(&doc), None);
        assert_eq!(path("a.b.c").lookup(&doc), None);
        assert_eq!(path("n").lookup(&doc), None);
        assert_eq!(path("a.b.0.deeper").lookup(&doc), None);
        assert_eq!(path("a").lookup(&Value::Null), None);
        for bad in ["", ".a", "a.", "a..b"] {
            assert!(JsonPath::parse("attribute", bad).is_err(), "{bad:?}");
        }
    }
}
