//! What auditors run: chain verification and replay of the log into fresh state.

pub mod as_of;
pub mod events;
pub mod explain;
pub mod export;
pub mod progress;
pub mod replay;
pub mod verify;
