//! What auditors run: chain verification, replay of the log into fresh state, and signed checkpoints
//! over a Merkle tree of the log.

pub mod checkpoint;
pub mod checkpoint_verify;
pub mod checkpointer;
pub mod explain;
pub mod merkle;
pub mod progress;
pub mod replay;
pub mod verify;
