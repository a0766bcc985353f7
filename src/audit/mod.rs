//! What auditors run: chain verification, replay of the log into fresh state, and signed checkpoints
//! over a Merkle tree of the log.

pub mod as_of;
pub mod checkpoint;
pub mod checkpoint_verify;
pub mod checkpointer;
pub mod events;
pub mod explain;
pub mod export;
pub mod merkle;
pub mod progress;
pub mod replay;
pub mod verify;
