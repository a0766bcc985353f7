//! `consent`: the user must approve the scope (now, or by a standing consent the engine finds).

use projections::event::ClientKind;
use serde::{Deserialize, Serialize};

use crate::policy::authorizer::{Authorize, Context, ScopeRequest, Verdict};

/// Options of `consent`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    /// Ask only for third-party clients: a first-party client is the server's own operator acting for
    /// the user, so asking would only train users to click through.
    #[serde(default)]
    pub third_party_only: bool,
}

/// Requires consent, unless configured to trust first-party clients.
#[derive(Debug, Clone)]
pub struct ConsentAuthorizer {
    third_party_only: bool,
}

impl ConsentAuthorizer {
    /// Builds from `config`; every combination of options is valid.
    pub fn new(config: &ConsentConfig) -> Result<Self, String> {
        Ok(ConsentAuthorizer {
            third_party_only: config.third_party_only,
        })
    }
}

impl Authorize for ConsentAuthorizer {
    fn evaluate(&self, ctx: &Context<'_>, _scope: &ScopeRequest<'_>) -> Verdict {
        if self.third_party_only && ctx.client.spec.kind == ClientKind::FirstParty {
            Verdict::Allow
        } else {
            Verdict::consent()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::Fixture;

    fn first_party() -> Fixture {
        let mut f = Fixture::default();
        f.client.spec.kind = ClientKind::FirstParty;
        f
    }

    #[test]
    fn consent_is_required_of_every_client_by_default() {
        // Given a consent authorizer with default options
        let consent = ConsentAuthorizer::new(&ConsentConfig::default()).unwrap();

        // Then both third- and first-party clients need consent
        assert_eq!(Fixture::default().evaluate(&consent), Verdict::consent());
        assert_eq!(first_party().evaluate(&consent), Verdict::consent());
    }

    #[test]
    fn third_party_only_lets_first_party_clients_through() {
        // Given consent for third parties only
        let consent = ConsentAuthorizer::new(&ConsentConfig {
            third_party_only: true,
        })
        .unwrap();

        // Then a first-party client is allowed and a third-party one still asks
        assert_eq!(first_party().evaluate(&consent), Verdict::Allow);
        assert_eq!(Fixture::default().evaluate(&consent), Verdict::consent());
    }
}
