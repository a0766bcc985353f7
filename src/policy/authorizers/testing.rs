//! Test fixtures: an owned context with sensible defaults that tests override field by field
//! (`Fixture { user_present: false, ..Fixture::default() }`), and scope requests.

use std::collections::BTreeMap;

use projections::clients::Client;
use projections::delegations::Delegation;
use projections::event::{AuthContext, ClientAudience, ClientKind, ClientSpec, UnixSeconds};
use projections::users::User;
use serde_json::Value;

use crate::policy::authorizer::{Authorize, Context, ScopeRequest, Verdict};

/// The fixed "now" of every fixture.
pub const NOW: UnixSeconds = 1_700_000_000;

/// The policy a configuration file `toml` compiles to.
pub fn policy(toml: &str) -> crate::issuance::Policy {
    let config = crate::config::Config::parse("policy.toml", toml).unwrap();
    crate::issuance::Policy::from_config(&config).unwrap()
}

/// Ann, an enabled local user with a password and no second factor, subject `sub-ann`.
pub fn ann() -> User {
    User {
        username: "ann".into(),
        subject: "sub-ann".into(),
        attributes: Value::Null,
        has_password: true,
        totp_enabled: false,
        created_at: 0,
        disabled: None,
    }
}

/// A client with `client_id`: third-party, for humans, registered by an administrator, using the
/// authorization code grant.
pub fn client(client_id: &str) -> Client {
    Client {
        spec: ClientSpec {
            client_id: client_id.into(),
            name: format!("{client_id} app"),
            kind: ClientKind::ThirdParty,
            audience: ClientAudience::Human,
            dynamically_registered: false,
            redirect_uris: vec!["https://app.example/cb".into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            scopes: vec![],
            token_endpoint_auth_method: "client_secret_basic".into(),
            secret_hash: None,
            jwks: None,
            jwks_uri: None,
            resources: vec![],
            metadata: Value::Null,
            ..Default::default()
        },
        disabled: None,
        registered_at: NOW - 86_400,
        updated_at: NOW - 86_400,
    }
}

/// Everything a [`Context`] borrows, owned, so a test can build one in a line and change what it is about.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub client: Client,
    pub subject: String,
    pub subject_attributes: Value,
    pub grant_type: String,
    pub user_present: bool,
    pub auth: AuthContext,
    pub delegation: Option<Delegation>,
    pub authorization_details: Value,
    pub now: UnixSeconds,
    pub external: BTreeMap<(String, String), Verdict>,
}

impl Default for Fixture {
    /// `alice`, present, signed in with a password a minute ago, through the authorization code grant of
    /// the third-party `client-1`; no attributes and no authorization details.
    fn default() -> Self {
        Fixture {
            client: client("client-1"),
            subject: "alice".into(),
            subject_attributes: Value::Null,
            grant_type: "authorization_code".into(),
            user_present: true,
            auth: AuthContext {
                acr: Some("pwd".into()),
                amr: vec!["pwd".into()],
                auth_time: Some(NOW - 60),
            },
            delegation: None,
            authorization_details: Value::Null,
            now: NOW,
            external: BTreeMap::new(),
        }
    }
}

impl Fixture {
    /// The default fixture with these subject attributes.
    pub fn with_attributes(attributes: Value) -> Self {
        Fixture {
            subject_attributes: attributes,
            ..Fixture::default()
        }
    }

    /// The default fixture with these authorization details.
    pub fn with_details(details: Value) -> Self {
        Fixture {
            authorization_details: details,
            ..Fixture::default()
        }
    }

    /// The default fixture, authenticated `age` seconds ago.
    pub fn authenticated_ago(age: i64) -> Self {
        let mut f = Fixture::default();
        f.auth.auth_time = Some(f.now - age);
        f
    }

    /// The context borrowing this fixture.
    pub fn ctx(&self) -> Context<'_> {
        Context {
            client: &self.client,
            subject: &self.subject,
            subject_attributes: &self.subject_attributes,
            grant_type: &self.grant_type,
            user_present: self.user_present,
            auth: &self.auth,
            delegation: self.delegation.as_ref(),
            authorization_details: &self.authorization_details,
            now: self.now,
            external: &self.external,
        }
    }

    /// `authorizer`'s verdict for the static scope `profile.read`.
    pub fn evaluate(&self, authorizer: &dyn Authorize) -> Verdict {
        authorizer.evaluate(&self.ctx(), &static_scope("profile.read"))
    }

    /// `authorizer`'s verdict for `scope`.
    pub fn evaluate_scope(&self, authorizer: &dyn Authorize, scope: &ScopeRequest<'_>) -> Verdict {
        authorizer.evaluate(&self.ctx(), scope)
    }
}

/// A request for a static scope: its own template, no value.
pub fn static_scope(scope: &str) -> ScopeRequest<'_> {
    ScopeRequest {
        scope,
        template: scope,
        value: None,
    }
}

/// A request for `scope` matched by a template with one placeholder, `*` or `{name}` (`account.list.*`,
/// `account.{id}.read`): the value is what the placeholder stands for.
pub fn dynamic_scope<'a>(template: &'a str, scope: &'a str) -> ScopeRequest<'a> {
    let (prefix, suffix) = match (template.find('*'), template.find('{'), template.find('}')) {
        (Some(star), _, _) => (&template[..star], &template[star + 1..]),
        (None, Some(open), Some(close)) => (&template[..open], &template[close + 1..]),
        _ => panic!("{template} has no placeholder"),
    };
    let value = scope
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(suffix));
    assert!(value.is_some(), "{scope} does not match {template}");
    ScopeRequest {
        scope,
        template,
        value,
    }
}
