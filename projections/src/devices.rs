//! Device authorization requests (RFC 8628), by the SHA-256 of their device code.

use serde::{Deserialize, Serialize};

use crate::event::{AuthContext, Event, GrantedScope, RecordedEvent, UnixSeconds};
use crate::projection::{Projection, RowIndex};

/// Where a device request stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Waiting for the user on the verification page.
    Pending,
    /// The user approved: what the decision issues, and how they signed in.
    Approved {
        subject: String,
        auth: AuthContext,
        scopes: Vec<GrantedScope>,
        audience: Vec<String>,
        /// Position of the approval, whose decision trail the tokens cite.
        position: u64,
    },
    /// The user (or the policy while they were there) refused.
    Denied { subject: String },
    /// The device code was exchanged and became `delegation_id`.
    Redeemed { subject: String, delegation_id: String },
}

/// A device authorization request as it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceAuthorization {
    pub device_code_hash: String,
    pub user_code_hash: String,
    pub client_id: String,
    pub scopes: Option<Vec<String>>,
    pub resource: Option<String>,
    pub requested_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    pub interval: i64,
    pub status: DeviceStatus,
}

impl Projection for DeviceAuthorization {
    const TABLE: &'static str = "device_authorizations";

    fn touched(event: &Event) -> Vec<&str> {
        match event {
            Event::DeviceAuthorizationRequested(e) => vec![&e.device_code_hash],
            Event::DeviceAuthorizationApproved(e) => vec![&e.device_code_hash],
            Event::DeviceAuthorizationDenied(e) => vec![&e.device_code_hash],
            Event::DeviceCodeRedeemed(e) => vec![&e.device_code_hash],
            _ => vec![],
        }
    }

    fn apply(row: Option<Self>, _id: &str, event: &RecordedEvent) -> Option<Self> {
        match (&event.event, row) {
            (Event::DeviceAuthorizationRequested(e), None) => Some(DeviceAuthorization {
                device_code_hash: e.device_code_hash.clone(),
                user_code_hash: e.user_code_hash.clone(),
                client_id: e.client_id.clone(),
                scopes: e.scopes.clone(),
                resource: e.resource.clone(),
                requested_at: e.requested_at,
                expires_at: e.expires_at,
                interval: e.interval,
                status: DeviceStatus::Pending,
            }),
            (Event::DeviceAuthorizationApproved(e), Some(d)) if d.status == DeviceStatus::Pending => {
                Some(DeviceAuthorization {
                    status: DeviceStatus::Approved {
                        subject: e.subject.clone(),
                        auth: e.auth.clone(),
                        scopes: e.scopes.clone(),
                        audience: e.audience.clone(),
                        position: event.position,
                    },
                    ..d
                })
            }
            (Event::DeviceAuthorizationDenied(e), Some(d)) if d.status == DeviceStatus::Pending => {
                Some(DeviceAuthorization {
                    status: DeviceStatus::Denied {
                        subject: e.subject.clone(),
                    },
                    ..d
                })
            }
            (Event::DeviceCodeRedeemed(e), Some(d)) => match d.status {
                DeviceStatus::Approved { subject, .. } => Some(DeviceAuthorization {
                    status: DeviceStatus::Redeemed {
                        subject,
                        delegation_id: e.delegation_id.clone(),
                    },
                    ..d
                }),
                status => Some(DeviceAuthorization { status, ..d }),
            },
            (_, row) => row,
        }
    }

    fn index(&self) -> RowIndex {
        let (subject, delegation_id) = match &self.status {
            DeviceStatus::Pending => (None, None),
            DeviceStatus::Approved { subject, .. } | DeviceStatus::Denied { subject } => {
                (Some(subject.clone()), None)
            }
            DeviceStatus::Redeemed {
                subject,
                delegation_id,
            } => (Some(subject.clone()), Some(delegation_id.clone())),
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
        let pending = DeviceAuthorization {
            device_code_hash: "dh".into(),
            user_code_hash: "uh".into(),
            client_id: "tv".into(),
            scopes: Some(vec!["read".into()]),
            resource: None,
            requested_at: 1,
            expires_at: 601,
            interval: 5,
            status: DeviceStatus::Pending,
        };
        let approved = DeviceAuthorization {
            status: DeviceStatus::Approved {
                subject: "s".into(),
                auth: AuthContext::default(),
                scopes: vec![GrantedScope {
                    scope: "read".into(),
                    expires_at: Some(9),
                }],
                audience: vec!["a".into()],
                position: 7,
            },
            ..pending.clone()
        };
        for row in [pending, approved] {
            let json = serde_json::to_value(&row).unwrap();
            let back: DeviceAuthorization = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(back, row, "{json}");
        }
    }
}
