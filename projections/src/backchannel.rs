//! Backchannel authentication requests (OpenID CIBA Core), by the SHA-256 of their `auth_req_id`.

use serde::{Deserialize, Serialize};

use crate::event::{AuthContext, BackchannelDeliveryMode, Event, GrantedScope, RecordedEvent, UnixSeconds};
use crate::projection::{Projection, RowIndex};

/// Where a backchannel request stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum BackchannelStatus {
    /// Waiting for the user on `/approvals`.
    Pending,
    /// The user approved: what the decision issues, and how they signed in.
    Approved {
        auth: AuthContext,
        scopes: Vec<GrantedScope>,
        audience: Vec<String>,
        /// Position of the approval, whose decision trail the tokens cite.
        position: u64,
    },
    /// The user (or the policy while they were there) refused.
    Denied,
    /// The `auth_req_id` was exchanged and became `delegation_id`.
    Redeemed { delegation_id: String },
}

/// A backchannel authentication request as it stands now. Its user is known from the start (the hint
/// named them), so the row is found by subject while it waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackchannelRequest {
    pub auth_req_id_hash: String,
    pub client_id: String,
    pub subject: String,
    pub scopes: Vec<String>,
    pub binding_message: Option<String>,
    pub mode: BackchannelDeliveryMode,
    pub requested_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    pub interval: i64,
    pub status: BackchannelStatus,
}

impl Projection for BackchannelRequest {
    const TABLE: &'static str = "backchannel_requests";

    fn touched(event: &Event) -> Vec<&str> {
        match event {
            Event::BackchannelAuthenticationRequested(e) => vec![&e.auth_req_id_hash],
            Event::BackchannelAuthenticationApproved(e) => vec![&e.auth_req_id_hash],
            Event::BackchannelAuthenticationDenied(e) => vec![&e.auth_req_id_hash],
            Event::BackchannelAuthenticationRedeemed(e) => vec![&e.auth_req_id_hash],
            _ => vec![],
        }
    }

    fn apply(row: Option<Self>, _id: &str, event: &RecordedEvent) -> Option<Self> {
        match (&event.event, row) {
            (Event::BackchannelAuthenticationRequested(e), None) => Some(BackchannelRequest {
                auth_req_id_hash: e.auth_req_id_hash.clone(),
                client_id: e.client_id.clone(),
                subject: e.subject.clone(),
                scopes: e.scopes.clone(),
                binding_message: e.binding_message.clone(),
                mode: e.mode,
                requested_at: e.requested_at,
                expires_at: e.expires_at,
                interval: e.interval,
                status: BackchannelStatus::Pending,
            }),
            // Only the user the request names answers it.
            (Event::BackchannelAuthenticationApproved(e), Some(r))
                if r.status == BackchannelStatus::Pending && r.subject == e.subject =>
            {
                Some(BackchannelRequest {
                    status: BackchannelStatus::Approved {
                        auth: e.auth.clone(),
                        scopes: e.scopes.clone(),
                        audience: e.audience.clone(),
                        position: event.position,
                    },
                    ..r
                })
            }
            (Event::BackchannelAuthenticationDenied(e), Some(r))
                if r.status == BackchannelStatus::Pending && r.subject == e.subject =>
            {
                Some(BackchannelRequest {
                    status: BackchannelStatus::Denied,
                    ..r
                })
            }
            (Event::BackchannelAuthenticationRedeemed(e), Some(r))
                if matches!(r.status, BackchannelStatus::Approved { .. }) =>
            {
                Some(BackchannelRequest {
                    status: BackchannelStatus::Redeemed {
                        delegation_id: e.delegation_id.clone(),
                    },
                    ..r
                })
            }
            (_, row) => row,
        }
    }

    /// Found by subject only while it waits: the approvals page reads a user's waiting requests, and the
    /// answered ones (kept as history in the row) drop out of that lookup, so it does not grow with them.
    fn index(&self) -> RowIndex {
        let (subject, delegation_id) = match &self.status {
            BackchannelStatus::Pending => (Some(self.subject.clone()), None),
            BackchannelStatus::Redeemed { delegation_id } => (None, Some(delegation_id.clone())),
            BackchannelStatus::Approved { .. } | BackchannelStatus::Denied => (None, None),
        };
        RowIndex {
            subject,
            client_id: Some(self.client_id.clone()),
            delegation_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_reads_back_as_written_in_every_status() {
        let pending = BackchannelRequest {
            auth_req_id_hash: "ah".into(),
            client_id: "bank".into(),
            subject: "s".into(),
            scopes: vec!["openid".into()],
            binding_message: Some("W4SCT".into()),
            mode: BackchannelDeliveryMode::Ping,
            requested_at: 1,
            expires_at: 301,
            interval: 5,
            status: BackchannelStatus::Pending,
        };
        let approved = BackchannelRequest {
            status: BackchannelStatus::Approved {
                auth: AuthContext::default(),
                scopes: vec![GrantedScope {
                    scope: "openid".into(),
                    expires_at: Some(9),
                }],
                audience: vec!["a".into()],
                position: 7,
            },
            ..pending.clone()
        };
        let redeemed = BackchannelRequest {
            status: BackchannelStatus::Redeemed {
                delegation_id: "d".into(),
            },
            ..pending.clone()
        };
        assert_eq!(pending.index().subject.as_deref(), Some("s"));
        assert_eq!(
            approved.index().subject,
            None,
            "answered: no longer found by subject"
        );
        assert_eq!(redeemed.index().delegation_id.as_deref(), Some("d"));
        for row in [pending, approved, redeemed] {
            let json = serde_json::to_value(&row).unwrap();
            let back: BackchannelRequest = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(back, row, "{json}");
        }
    }
}
