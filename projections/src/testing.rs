//! Random but plausible event sequences for property tests.
//!
//! Ids come from small pools so that events collide on the same rows: revocations hit existing
//! delegations, rotations hit issued refresh tokens, and so on, as they do in a real log.

use proptest::prelude::*;
use serde_json::json;

use crate::event::*;

fn id(prefix: &'static str, n: u8) -> String {
    format!("{prefix}{n}")
}

fn scopes() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(str::to_owned),
        0..3,
    )
}

fn granted() -> impl Strategy<Value = Vec<GrantedScope>> {
    proptest::collection::vec(
        (
            prop::sample::select(vec!["a", "b", "c"]),
            proptest::option::of(0i64..2_000),
        )
            .prop_map(|(s, e)| GrantedScope {
                scope: s.to_owned(),
                expires_at: e,
            }),
        0..3,
    )
}

fn client(n: u8, name: String, third: bool) -> ClientSpec {
    ClientSpec {
        client_id: id("client", n),
        name,
        kind: if third {
            ClientKind::ThirdParty
        } else {
            ClientKind::FirstParty
        },
        audience: ClientAudience::Machine,
        dynamically_registered: false,
        redirect_uris: vec![],
        grant_types: vec!["client_credentials".into()],
        scopes: vec!["a".into(), "b".into()],
        token_endpoint_auth_method: "client_secret_basic".into(),
        secret_hash: Some(format!("{n:064}")),
        jwks: None,
        jwks_uri: None,
        resources: vec![],
        metadata: json!({"n": n}),
        require_pushed_authorization_requests: false,
        delegation_lifetime_seconds: None,
        consent_lifetime_seconds: (n % 2 == 1).then_some(180 * 86_400),
        refresh_reuse_grace_seconds: u32::from(n) * 10,
        ..ClientSpec::default()
    }
}

/// One random event over the small id pools, at a time in `0..2000`.
pub fn event() -> impl Strategy<Value = Event> {
    let n = 0u8..4;
    let at = 0i64..2_000;
    prop_oneof![
        (n.clone(), "[a-z]{1,6}", any::<bool>(), at.clone()).prop_map(|(n, name, t, at)| {
            Event::ClientRegistered(ClientRegistered {
                v: V1,
                client: client(n, name, t),
                at,
            })
        }),
        (n.clone(), "[a-z]{1,6}", any::<bool>(), at.clone()).prop_map(|(n, name, t, at)| {
            Event::ClientUpdated(ClientUpdated {
                v: V1,
                client: client(n, name, t),
                at,
            })
        }),
        (n.clone(), at.clone()).prop_map(|(n, at)| Event::ClientDisabled(ClientDisabled {
            v: V1,
            client_id: id("client", n),
            reason: "test".into(),
            at
        })),
        (n.clone(), at.clone()).prop_map(|(n, at)| Event::SigningKeyAdded(SigningKeyAdded {
            v: V1,
            kid: id("key", n),
            alg: "ES256".into(),
            public_jwk: json!({"kty": "EC", "kid": id("key", n)}),
            at
        })),
        (n.clone(), at.clone()).prop_map(|(n, at)| Event::SigningKeyActivated(SigningKeyActivated {
            v: V1,
            kid: id("key", n),
            at
        })),
        (n.clone(), at.clone()).prop_map(|(n, at)| Event::SigningKeyRetired(SigningKeyRetired {
            v: V1,
            kid: id("key", n),
            at,
            publish_until: at + 300
        })),
        (n.clone(), n.clone(), n.clone(), granted(), at.clone()).prop_map(|(d, s, c, scopes, at)| {
            Event::DelegationCreated(DelegationCreated {
                v: V1,
                delegation_id: id("del", d),
                subject: id("user", s),
                client_id: id("client", c),
                scopes,
                authorization_details: json!([]),
                claims: json!({}),
                auth: AuthContext {
                    acr: Some("pwd".into()),
                    amr: vec!["pwd".into()],
                    auth_time: Some(at),
                },
                grant_type: "authorization_code".into(),
                at,
                audience: vec!["https://api.example".into()],
            })
        }),
        (n.clone(), granted(), at.clone()).prop_map(|(d, scopes, at)| {
            Event::DelegationScopesChanged(DelegationScopesChanged {
                v: V1,
                delegation_id: id("del", d),
                scopes,
                at,
            })
        }),
        (n.clone(), at.clone()).prop_map(|(d, at)| Event::DelegationRevoked(DelegationRevoked {
            v: V1,
            delegation_id: id("del", d),
            reason: RevocationReason::RevokedByUser,
            at
        })),
        (
            n.clone(),
            n.clone(),
            n.clone(),
            scopes(),
            proptest::option::of(0i64..2_000),
            at.clone()
        )
            .prop_map(
                |(k, s, c, scopes, exp, at)| Event::ConsentGranted(ConsentGranted {
                    v: V1,
                    consent_id: id("consent", k),
                    subject: id("user", s),
                    client_id: id("client", c),
                    scopes,
                    authorization_details: json!(null),
                    expires_at: exp,
                    at,
                    shown: serde_json::Value::Null,
                })
            ),
        (n.clone(), n.clone(), n.clone(), scopes(), at.clone()).prop_map(|(k, s, c, scopes, at)| {
            Event::ConsentDenied(ConsentDenied {
                v: V1,
                consent_id: id("consent", k),
                subject: id("user", s),
                client_id: id("client", c),
                scopes,
                at,
            })
        }),
        (n.clone(), at.clone()).prop_map(|(k, at)| Event::ConsentRevoked(ConsentRevoked {
            v: V1,
            consent_id: id("consent", k),
            at
        })),
        (
            0u8..8,
            n.clone(),
            proptest::option::of(n.clone()),
            scopes(),
            at.clone()
        )
            .prop_map(|(t, c, d, scopes, at)| Event::TokenIssued(TokenIssued {
                v: V1,
                jti: id("jti", t),
                kind: TokenKind::Access,
                client_id: id("client", c),
                subject: id("user", c),
                delegation_id: d.map(|d| id("del", d)),
                scopes,
                audience: vec!["api".into()],
                kid: id("key", c),
                grant_type: "client_credentials".into(),
                issued_at: at,
                expires_at: at + 300,
                decision_trail: json!({"scopes": []}),
                policy_version: Some("p1".into()),
                act: None,
                may_act: None,
                dpop_jkt: (t % 3 == 0).then(|| id("jkt", c)),
            })),
        (0u8..8, at.clone()).prop_map(|(t, at)| Event::TokenRevoked(TokenRevoked {
            v: V1,
            jti: id("jti", t),
            reason: RevocationReason::ClientRequest,
            at
        })),
        (
            0u8..8,
            n.clone(),
            proptest::option::of(0u8..8),
            scopes(),
            at.clone()
        )
            .prop_map(
                |(r, d, p, scopes, at)| Event::RefreshTokenIssued(RefreshTokenIssued {
                    v: V1,
                    token_hash: id("rt", r),
                    delegation_id: id("del", d),
                    client_id: id("client", d),
                    subject: id("user", d),
                    scopes,
                    issued_at: at,
                    expires_at: Some(at + 3_600),
                    parent_hash: p.map(|p| id("rt", p)),
                    dpop_jkt: (r % 3 == 0).then(|| id("jkt", d)),
                })
            ),
        (0u8..8, 0u8..8, at.clone()).prop_map(|(r, s, at)| Event::RefreshTokenRotated(RefreshTokenRotated {
            v: V1,
            token_hash: id("rt", r),
            successor_hash: id("rt", s),
            at
        })),
        (n.clone(), at.clone()).prop_map(|(n, at)| Event::PolicyPublished(PolicyPublished {
            v: V1,
            version: format!("{n:064}"),
            policy: json!({"scopes": [{"name": "a"}]}),
            at
        })),
        (0u8..8, at.clone()).prop_map(|(r, at)| Event::RefreshTokenRevoked(RefreshTokenRevoked {
            v: V1,
            token_hash: id("rt", r),
            reason: RevocationReason::RevokedByClient,
            at
        })),
        user_and_code_event(n.clone(), at.clone()),
        device_event(n.clone(), at.clone()),
        backchannel_event(n, at),
    ]
}

/// Device authorization requests, their answers and redemptions, over the same pools.
fn device_event(n: std::ops::Range<u8>, at: std::ops::Range<i64>) -> impl Strategy<Value = Event> {
    prop_oneof![
        (0u8..6, n.clone(), any::<bool>(), at.clone()).prop_map(|(c, d, named, at)| {
            Event::DeviceAuthorizationRequested(DeviceAuthorizationRequested {
                v: V1,
                device_code_hash: id("device", c),
                user_code_hash: id("usercode", c),
                client_id: id("client", d),
                scopes: named.then(|| vec!["read".into()]),
                resource: None,
                requested_at: at,
                expires_at: at + 600,
                interval: 5,
            })
        }),
        (0u8..6, n.clone(), granted(), at.clone()).prop_map(|(c, d, scopes, at)| {
            Event::DeviceAuthorizationApproved(DeviceAuthorizationApproved {
                v: V1,
                device_code_hash: id("device", c),
                subject: id("user", d),
                auth: AuthContext::default(),
                scopes,
                audience: vec![],
                shown: serde_json::Value::Null,
                approved: vec![],
                refused: vec![],
                decision_trail: serde_json::Value::Null,
                policy_version: None,
                at,
            })
        }),
        (0u8..6, n.clone(), at.clone()).prop_map(|(c, d, at)| {
            Event::DeviceAuthorizationDenied(DeviceAuthorizationDenied {
                v: V1,
                device_code_hash: id("device", c),
                subject: id("user", d),
                shown: serde_json::Value::Null,
                refused: vec!["read".into()],
                reason: "the user refused".into(),
                at,
            })
        }),
        (0u8..6, n, at).prop_map(|(c, d, at)| Event::DeviceCodeRedeemed(DeviceCodeRedeemed {
            v: V1,
            device_code_hash: id("device", c),
            delegation_id: id("del", d),
            at
        })),
    ]
}

/// Backchannel authentication requests, their answers (by the named user or another) and redemptions,
/// over the same pools.
fn backchannel_event(n: std::ops::Range<u8>, at: std::ops::Range<i64>) -> impl Strategy<Value = Event> {
    prop_oneof![
        (0u8..6, n.clone(), any::<bool>(), at.clone()).prop_map(|(c, d, ping, at)| {
            Event::BackchannelAuthenticationRequested(BackchannelAuthenticationRequested {
                v: V1,
                auth_req_id_hash: id("ciba", c),
                client_id: id("client", d),
                subject: id("user", c % 3),
                scopes: vec!["openid".into(), "read".into()],
                binding_message: ping.then(|| format!("msg {c}")),
                mode: if ping {
                    BackchannelDeliveryMode::Ping
                } else {
                    BackchannelDeliveryMode::Poll
                },
                requested_at: at,
                expires_at: at + 300,
                interval: 5,
            })
        }),
        (0u8..6, 0u8..3, granted(), at.clone()).prop_map(|(c, u, scopes, at)| {
            Event::BackchannelAuthenticationApproved(BackchannelAuthenticationApproved {
                v: V1,
                auth_req_id_hash: id("ciba", c),
                subject: id("user", u),
                auth: AuthContext::default(),
                scopes,
                audience: vec![],
                shown: serde_json::Value::Null,
                approved: vec![],
                refused: vec![],
                decision_trail: serde_json::Value::Null,
                policy_version: None,
                at,
            })
        }),
        (0u8..6, 0u8..3, at.clone()).prop_map(|(c, u, at)| {
            Event::BackchannelAuthenticationDenied(BackchannelAuthenticationDenied {
                v: V1,
                auth_req_id_hash: id("ciba", c),
                subject: id("user", u),
                shown: serde_json::Value::Null,
                refused: vec!["read".into()],
                reason: "the user refused".into(),
                at,
            })
        }),
        (0u8..6, n, at).prop_map(|(c, d, at)| {
            Event::BackchannelAuthenticationRedeemed(BackchannelAuthenticationRedeemed {
                v: V1,
                auth_req_id_hash: id("ciba", c),
                delegation_id: id("del", d),
                at,
            })
        }),
    ]
}

/// Users, authorization codes and refresh-token reuse, over the same pools.
fn user_and_code_event(n: std::ops::Range<u8>, at: std::ops::Range<i64>) -> impl Strategy<Value = Event> {
    prop_oneof![
        (n.clone(), at.clone()).prop_map(|(n, at)| Event::UserRegistered(UserRegistered {
            v: V1,
            username: id("name", n),
            subject: id("user", n),
            attributes: json!({"n": n}),
            at
        })),
        (n.clone(), at.clone()).prop_map(|(n, at)| Event::UserAttributesSet(UserAttributesSet {
            v: V1,
            username: id("name", n),
            attributes: json!({"n": n, "at": at}),
            at
        })),
        (n.clone(), at.clone()).prop_map(|(n, at)| Event::UserPasswordSet(UserPasswordSet {
            v: V1,
            username: id("name", n),
            at
        })),
        (n.clone(), at.clone()).prop_map(|(n, at)| Event::UserTotpEnrolled(UserTotpEnrolled {
            v: V1,
            username: id("name", n),
            at
        })),
        (n.clone(), at.clone()).prop_map(|(n, at)| Event::UserTotpRemoved(UserTotpRemoved {
            v: V1,
            username: id("name", n),
            at
        })),
        (n.clone(), at.clone()).prop_map(|(n, at)| Event::UserDisabled(UserDisabled {
            v: V1,
            username: id("name", n),
            reason: "left".into(),
            at
        })),
        (0u8..8, n.clone(), granted(), at.clone()).prop_map(|(c, d, scopes, at)| {
            Event::AuthorizationCodeIssued(AuthorizationCodeIssued {
                v: V1,
                code_hash: id("code", c),
                client_id: id("client", d),
                subject: id("user", d),
                redirect_uri: "https://app.example/cb".into(),
                code_challenge: Some("challenge".into()),
                nonce: None,
                scopes,
                audience: vec![],
                authorization_details: serde_json::Value::Null,
                auth: AuthContext::default(),
                decision_trail: serde_json::Value::Null,
                policy_version: None,
                issued_at: at,
                expires_at: at + 60,
                requested_at: Some(at - 5),
                redirect_uri_in_request: c % 2 == 0,
            })
        }),
        (0u8..8, n.clone(), at.clone()).prop_map(|(c, d, at)| Event::AuthorizationCodeRedeemed(
            AuthorizationCodeRedeemed {
                v: V1,
                code_hash: id("code", c),
                delegation_id: id("del", d),
                at
            }
        )),
        trust_event(n.clone(), at.clone()),
        (0u8..8, n, any::<bool>(), at).prop_map(|(r, d, grace, at)| Event::RefreshTokenReuseDetected(
            RefreshTokenReuseDetected {
                v: V1,
                token_hash: id("rt", r),
                delegation_id: id("del", d),
                client_id: id("client", d),
                action: if grace {
                    ReuseAction::GraceReissued
                } else {
                    ReuseAction::DelegationRevoked
                },
                at
            }
        )),
    ]
}

/// Trusted issuers configured, reconfigured and removed, over a small pool of issuers.
fn trust_event(n: std::ops::Range<u8>, at: std::ops::Range<i64>) -> impl Strategy<Value = Event> {
    prop_oneof![
        (0u8..4, n, at.clone()).prop_map(|(i, s, at)| Event::TrustedIssuerConfigured(
            TrustedIssuerConfigured {
                v: V1,
                trust: TrustedIssuerSettings {
                    issuer: id("https://iss", i),
                    keys: TrustedKeys::JwksUri {
                        uri: format!("https://iss{i}/jwks"),
                    },
                    subjects: TrustedSubjects::All,
                    subject_mapping: SubjectMapping::Username,
                    scopes: vec![id("scope", s)],
                    max_assertion_lifetime_seconds: 300,
                    algorithms: vec!["ES256".into()],
                },
                at
            }
        )),
        (0u8..4, at).prop_map(|(i, at)| Event::TrustedIssuerRemoved(TrustedIssuerRemoved {
            v: V1,
            issuer: id("https://iss", i),
            at
        })),
    ]
}

/// A random sequence of up to `max` events.
pub fn events(max: usize) -> impl Strategy<Value = Vec<Event>> {
    proptest::collection::vec(event(), 0..max)
}

/// The stream an event belongs to (see [`Event::stream_id`]).
pub fn stream_of(event: &Event) -> String {
    event.stream_id()
}

/// Wraps events as if recorded one after another from position `first`.
pub fn recorded(events: &[Event], first: u64) -> Vec<RecordedEvent> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| RecordedEvent {
            position: first + i as u64,
            stream_id: stream_of(e),
            version: 1,
            event: e.clone(),
            metadata: Metadata::default(),
            recorded_at: 0,
            hash: String::new(),
        })
        .collect()
}
