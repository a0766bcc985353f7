//! The relay's decisions, all pure: where to resume from what the JetStream stream holds, what to publish
//! for a page of the log, and what an acknowledgement means for the next step.
//!
//! The rule every decision keeps: **stream sequence N holds ledger position N.** Each message is
//! published with `Nats-Expected-Last-Sequence: position - 1`, so JetStream stores it only directly after
//! the position before it, whoever published that one; a second copy of a position, or a position out of
//! order, is refused by the server (or, inside the duplicate window, recognised by its `Nats-Msg-Id`, the
//! position, and acknowledged as a duplicate without being stored).

use super::message::LedgerMessage;
use crate::store::{StoreError, StoredEvent};

/// The header naming the ledger position a message carries (also the stream sequence it must sit at).
pub const POSITION_HEADER: &str = "Ledger-Position";

/// Why the relay cannot go on; nothing it does next would be right.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Inconsistency {
    /// The stream holds a message that is not the ledger position its sequence says.
    #[error(
        "stream sequence {sequence} holds ledger position {position}: the stream holds messages the relay did not publish"
    )]
    Mismatch { sequence: u64, position: u64 },
    /// The stream holds more positions than the ledger: it was filled from another ledger.
    #[error(
        "the stream holds {last_sequence} messages but the ledger ends at position {head}: it was filled from another ledger"
    )]
    AheadOfLedger { last_sequence: u64, head: u64 },
    /// The log read did not continue from the position asked for.
    #[error("the log read from position {expected} starts at {found}")]
    Gap { expected: u64, found: u64 },
}

/// The last position the stream holds, from its last sequence and the position its last message
/// carries (`None` when that message is gone, removed by the stream's limits).
pub fn resume_point(
    last_sequence: u64,
    last_position: Option<u64>,
    ledger_head: u64,
) -> Result<u64, Inconsistency> {
    if let Some(position) = last_position
        && position != last_sequence
    {
        return Err(Inconsistency::Mismatch {
            sequence: last_sequence,
            position,
        });
    }
    if last_sequence > ledger_head {
        return Err(Inconsistency::AheadOfLedger {
            last_sequence,
            head: ledger_head,
        });
    }
    Ok(last_sequence)
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    /// The ledger position: the message id, and the sequence it must be stored at.
    pub position: u64,
    /// `<prefix>.<EventType>`.
    pub subject: String,
    /// The stream's last sequence the server must see before storing it: the position before.
    pub expected_last_sequence: u64,
    /// The message body: the event as JSON ([`LedgerMessage`]).
    pub body: Vec<u8>,
}

/// The messages for `page`, the events read after position `resume`, in position order.
pub fn publications(
    resume: u64,
    page: &[StoredEvent],
    subject_prefix: &str,
) -> Result<Vec<Publication>, PlanError> {
    let mut out = Vec::with_capacity(page.len());
    for (expected, e) in (resume + 1..).zip(page) {
        if e.position != expected {
            return Err(PlanError::Inconsistent(Inconsistency::Gap {
                expected,
                found: e.position,
            }));
        }
        let body = serde_json::to_vec(&LedgerMessage::from_stored(e)?)
            .map_err(|err| StoreError::Corrupt(format!("position {}: {err}", e.position)))?;
        out.push(Publication {
            position: e.position,
            subject: subject(subject_prefix, &e.event_type),
            expected_last_sequence: e.position - 1,
            body,
        });
    }
    Ok(out)
}

/// Why a page could not be turned into messages.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Inconsistent(#[from] Inconsistency),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The subject an event type is published on.
pub fn subject(prefix: &str, event_type: &str) -> String {
    format!("{prefix}.{event_type}")
}

/// Checks a subject prefix: dot-separated tokens, none empty, no wildcard or white space.
pub fn check_subject_prefix(prefix: &str) -> Result<(), String> {
    let bad_token = prefix.split('.').find(|t| {
        t.is_empty() || t.contains(['*', '>']) || t.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    match bad_token {
        None => Ok(()),
        Some(_) => Err(format!(
            "subject prefix {prefix:?} must be dot-separated tokens without '*', '>' or spaces, e.g. ledger"
        )),
    }
}

/// What the server answered to one publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Stored at this sequence.
    Stored { sequence: u64 },
    /// Recognised by its message id within the duplicate window: already stored at this sequence.
    Duplicate { sequence: u64 },
    /// Refused: the stream's last sequence was not the position before (another relay got further).
    WrongLastSequence,
    /// No answer, or another failure: it may or may not be stored.
    Failed,
}

/// What the relay does after an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The stream holds everything up to and including this position; go on.
    Advance(u64),
    /// The stream is elsewhere than the relay believed: read the resume point again.
    Reread,
    /// The stream breaks the rule that sequence N holds position N.
    Stop(Inconsistency),
}

/// The next step after `ack` for the publication of `position`.
pub fn after_ack(position: u64, ack: Ack) -> Step {
    match ack {
        Ack::Stored { sequence } | Ack::Duplicate { sequence } if sequence == position => {
            Step::Advance(position)
        }
        Ack::Stored { sequence } | Ack::Duplicate { sequence } => {
            Step::Stop(Inconsistency::Mismatch { sequence, position })
        }
        Ack::WrongLastSequence | Ack::Failed => Step::Reread,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: u64, event_type: &str) -> StoredEvent {
        StoredEvent {
            position,
            stream_id: format!("s{position}"),
            version: 1,
            event_type: event_type.into(),
            payload: format!(r#"{{"type":"{event_type}"}}"#),
            metadata: "{}".into(),
            recorded_at: 10,
            hash: "00".repeat(32),
        }
    }

    #[test]
    fn an_empty_stream_resumes_from_the_start() {
        assert_eq!(resume_point(0, None, 0), Ok(0));
        assert_eq!(resume_point(0, None, 12), Ok(0));
    }

    #[test]
    fn the_stream_s_last_message_is_where_publishing_resumes() {
        assert_eq!(resume_point(7, Some(7), 12), Ok(7));
        // The last message was removed by the stream's limits: the sequence still counts.
        assert_eq!(resume_point(7, None, 12), Ok(7));
    }

    #[test]
    fn a_stream_with_foreign_messages_or_from_another_ledger_stops_the_relay() {
        assert_eq!(
            resume_point(8, Some(7), 12),
            Err(Inconsistency::Mismatch {
                sequence: 8,
                position: 7
            })
        );
        assert_eq!(
            resume_point(13, Some(13), 12),
            Err(Inconsistency::AheadOfLedger {
                last_sequence: 13,
                head: 12
            })
        );
    }

    #[test]
    fn each_event_is_published_on_its_type_s_subject_expecting_the_position_before() {
        let page = [event(4, "TokenIssued"), event(5, "ConsentGranted")];
        let out = publications(3, &page, "acme.ledger").unwrap();
        let summary: Vec<_> = out
            .iter()
            .map(|p| (p.position, p.subject.as_str(), p.expected_last_sequence))
            .collect();
        assert_eq!(
            summary,
            vec![
                (4, "acme.ledger.TokenIssued", 3),
                (5, "acme.ledger.ConsentGranted", 4)
            ]
        );
        let body: LedgerMessage = serde_json::from_slice(&out[0].body).unwrap();
        assert_eq!(body.to_stored(), page[0]);
    }

    #[test]
    fn a_page_that_does_not_continue_from_the_resume_point_is_refused() {
        let err = publications(3, &[event(5, "TokenIssued")], "ledger").unwrap_err();
        assert!(matches!(
            err,
            PlanError::Inconsistent(Inconsistency::Gap {
                expected: 4,
                found: 5
            })
        ));
        let err = publications(0, &[event(1, "A"), event(3, "A")], "ledger").unwrap_err();
        assert!(matches!(
            err,
            PlanError::Inconsistent(Inconsistency::Gap {
                expected: 2,
                found: 3
            })
        ));
        assert!(publications(9, &[], "ledger").unwrap().is_empty());
    }

    #[test]
    fn a_stored_or_duplicate_ack_at_the_position_s_sequence_advances() {
        assert_eq!(after_ack(5, Ack::Stored { sequence: 5 }), Step::Advance(5));
        assert_eq!(after_ack(5, Ack::Duplicate { sequence: 5 }), Step::Advance(5));
    }

    #[test]
    fn a_relay_that_fell_behind_or_lost_an_ack_reads_the_resume_point_again() {
        assert_eq!(after_ack(5, Ack::WrongLastSequence), Step::Reread);
        assert_eq!(after_ack(5, Ack::Failed), Step::Reread);
    }

    #[test]
    fn an_ack_at_another_sequence_stops_the_relay() {
        assert_eq!(
            after_ack(5, Ack::Stored { sequence: 6 }),
            Step::Stop(Inconsistency::Mismatch {
                sequence: 6,
                position: 5
            })
        );
    }

    #[test]
    fn subject_prefixes_are_literal_dot_separated_tokens() {
        assert!(check_subject_prefix("ledger").is_ok());
        assert!(check_subject_prefix("acme.prod.ledger").is_ok());
        for bad in [
            "", "ledger.", ".ledger", "a..b", "ledger.*", "ledger.>", "led ger",
        ] {
            assert!(check_subject_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
