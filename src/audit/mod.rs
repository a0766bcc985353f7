//! What auditors run: chain verification and replay of the log into fresh state.

pub mod explain;
pub mod progress;
pub mod replay;
pub mod verify;
