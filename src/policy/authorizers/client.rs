//! `client`: rules on the client asking — its kind, audience, registration, id, and the grant it uses.

use projections::event::{ClientAudience, ClientKind};
use serde::{Deserialize, Serialize};

use crate::policy::authorizer::{Authorize, Context, ScopeRequest, Verdict};

/// Options of `client`. Each rule is off when left out (or empty); every rule set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client's kind must be one of these (`first_party`, `third_party`).
    #[serde(default)]
    pub kinds: Vec<ClientKind>,
    /// The client's audience must be one of these (`machine`, `human`).
    #[serde(default)]
    pub audiences: Vec<ClientAudience>,
    /// Whether the client registered itself (RFC 7591) must equal this.
    #[serde(default)]
    pub dynamically_registered: Option<bool>,
    /// The client id must be one of these.
    #[serde(default)]
    pub allow_client_ids: Vec<String>,
    /// The client id must be none of these.
    #[serde(default)]
    pub deny_client_ids: Vec<String>,
    /// The grant type of the request must be one of these.
    #[serde(default)]
    pub grant_types: Vec<String>,
}

/// Allows only clients meeting every configured rule.
#[derive(Debug, Clone)]
pub struct ClientAuthorizer {
    config: ClientConfig,
}

fn kind_name(kind: ClientKind) -> &'static str {
    match kind {
        ClientKind::FirstParty => "first_party",
        ClientKind::ThirdParty => "third_party",
    }
}

fn audience_name(audience: ClientAudience) -> &'static str {
    match audience {
        ClientAudience::Machine => "machine",
        ClientAudience::Human => "human",
    }
}

impl ClientAuthorizer {
    /// Builds from `config`; a client id both allowed and denied is refused, since whichever way it was
    /// meant, the configuration says both.
    pub fn new(config: &ClientConfig) -> Result<Self, String> {
        if let Some(id) = config
            .allow_client_ids
            .iter()
            .find(|id| config.deny_client_ids.contains(id))
        {
            return Err(format!(
                "client id {id:?} is in both allow_client_ids and deny_client_ids"
            ));
        }
        Ok(ClientAuthorizer {
            config: config.clone(),
        })
    }

    /// The first rule the client breaks, as a reason.
    fn broken_rule(&self, ctx: &Context<'_>) -> Option<String> {
        let c = &self.config;
        let spec = &ctx.client.spec;
        let id = &spec.client_id;
        if c.deny_client_ids.contains(id) {
            return Some(format!("client {id:?} is in deny_client_ids"));
        }
        if !c.allow_client_ids.is_empty() && !c.allow_client_ids.contains(id) {
            return Some(format!("client {id:?} is not in allow_client_ids"));
        }
        if !c.kinds.is_empty() && !c.kinds.contains(&spec.kind) {
            return Some(format!("client kind {} is not in kinds", kind_name(spec.kind)));
        }
        if !c.audiences.is_empty() && !c.audiences.contains(&spec.audience) {
            return Some(format!(
                "client audience {} is not in audiences",
                audience_name(spec.audience)
            ));
        }
        if let Some(wanted) = c.dynamically_registered
            && spec.dynamically_registered != wanted
        {
            return Some(format!(
                "client dynamically_registered is {}, {wanted} required",
                spec.dynamically_registered
            ));
        }
        if !c.grant_types.is_empty() && !c.grant_types.iter().any(|g| g == ctx.grant_type) {
            return Some(format!("grant type {:?} is not in grant_types", ctx.grant_type));
        }
        None
    }
}

impl Authorize for ClientAuthorizer {
    fn evaluate(&self, ctx: &Context<'_>, _scope: &ScopeRequest<'_>) -> Verdict {
        match self.broken_rule(ctx) {
            Some(reason) => Verdict::deny(reason),
            None => Verdict::Allow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::Fixture;

    /// Every rule set, all of them met by the default fixture.
    fn strict() -> ClientConfig {
        ClientConfig {
            kinds: vec![ClientKind::ThirdParty],
            audiences: vec![ClientAudience::Human],
            dynamically_registered: Some(false),
            allow_client_ids: vec!["client-1".into(), "client-2".into()],
            deny_client_ids: vec!["evil".into()],
            grant_types: vec!["authorization_code".into()],
        }
    }

    fn denial(f: &Fixture, config: &ClientConfig) -> String {
        match f.evaluate(&ClientAuthorizer::new(config).unwrap()) {
            Verdict::Deny { reason } => reason,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn a_client_meeting_every_rule_is_allowed() {
        let client = ClientAuthorizer::new(&strict()).unwrap();
        assert_eq!(Fixture::default().evaluate(&client), Verdict::Allow);
    }

    #[test]
    fn no_rules_allow_any_client() {
        let client = ClientAuthorizer::new(&ClientConfig::default()).unwrap();
        let mut f = Fixture {
            grant_type: "client_credentials".into(),
            ..Fixture::default()
        };
        f.client.spec.audience = ClientAudience::Machine;
        f.client.spec.dynamically_registered = true;
        assert_eq!(f.evaluate(&client), Verdict::Allow);
    }

    #[test]
    fn a_denied_client_id_fails_alone() {
        let config = ClientConfig {
            deny_client_ids: vec!["client-1".into()],
            ..ClientConfig::default()
        };
        assert_eq!(
            denial(&Fixture::default(), &config),
            "client \"client-1\" is in deny_client_ids"
        );
    }

    #[test]
    fn an_unlisted_client_id_fails_alone() {
        let mut config = strict();
        config.allow_client_ids = vec!["client-2".into()];
        assert_eq!(
            denial(&Fixture::default(), &config),
            "client \"client-1\" is not in allow_client_ids"
        );
    }

    #[test]
    fn a_wrong_kind_fails_alone() {
        let mut f = Fixture::default();
        f.client.spec.kind = ClientKind::FirstParty;
        assert_eq!(denial(&f, &strict()), "client kind first_party is not in kinds");
    }

    #[test]
    fn a_wrong_audience_fails_alone() {
        let mut f = Fixture::default();
        f.client.spec.audience = ClientAudience::Machine;
        assert_eq!(
            denial(&f, &strict()),
            "client audience machine is not in audiences"
        );
    }

    #[test]
    fn a_wrong_registration_fails_alone() {
        // Given a rule against self-registered clients, and one
        let mut f = Fixture::default();
        f.client.spec.dynamically_registered = true;
        assert_eq!(
            denial(&f, &strict()),
            "client dynamically_registered is true, false required"
        );

        // And the rule the other way round refuses an administrator-registered client
        let only_dynamic = ClientConfig {
            dynamically_registered: Some(true),
            ..ClientConfig::default()
        };
        assert_eq!(
            denial(&Fixture::default(), &only_dynamic),
            "client dynamically_registered is false, true required"
        );
    }

    #[test]
    fn a_wrong_grant_type_fails_alone() {
        let f = Fixture {
            grant_type: "client_credentials".into(),
            ..Fixture::default()
        };
        assert_eq!(
            denial(&f, &strict()),
            "grant type \"client_credentials\" is not in grant_types"
        );
    }

    #[test]
    fn a_client_id_both_allowed_and_denied_is_refused() {
        let config = ClientConfig {
            allow_client_ids: vec!["a".into(), "b".into()],
            deny_client_ids: vec!["b".into()],
            ..ClientConfig::default()
        };
        let err = ClientAuthorizer::new(&config).unwrap_err();
        assert!(err.contains("\"b\" is in both"), "{err}");
    }

    #[test]
    fn kinds_and_audiences_parse_in_snake_case() {
        let config: ClientConfig = toml::from_str(
            "kinds = [\"first_party\", \"third_party\"]\naudiences = [\"machine\"]\ndynamically_registered = true",
        )
        .unwrap();
        assert_eq!(config.kinds, [ClientKind::FirstParty, ClientKind::ThirdParty]);
        assert_eq!(config.audiences, [ClientAudience::Machine]);
        assert_eq!(config.dynamically_registered, Some(true));
        assert!(toml::from_str::<ClientConfig>("kinds = [\"firstParty\"]").is_err());
    }
}
