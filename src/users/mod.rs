//! Local users: the events their changes become, and their credentials (kept off the ledger).
