//! `consent-ledger audit export`: the lines of `GET /audit/events`, written to a file or standard output
//! page by page, so memory holds one page whatever the ledger's length. It stops at the head it found
//! when it began.

use std::io::Write;

use crate::audit::events::{self, Filter, PAGE_LIMIT_MAX};
use crate::audit::progress::Progress;
use crate::store::{EventStore, StoreError};

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes every event after `after` that `filter` admits to `out`, one JSON object per line; returns how
/// many were written.
pub async fn export(
    store: &dyn EventStore,
    filter: &Filter,
    after: u64,
    out: &mut dyn Write,
    progress: &mut Progress,
) -> Result<u64, ExportError> {
    let head = store.head().await?.position;
    let filter = Filter {
        through: Some(filter.through.map_or(head, |t| t.min(head))),
        ..filter.clone()
    };
    progress.set_total(head);
    let mut cursor = Some(after);
    let mut written = 0;
    while let Some(after) = cursor {
        let page = events::page(store, &filter, after, PAGE_LIMIT_MAX).await?;
        for line in &page.lines {
            serde_json::to_writer(&mut *out, line).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        written += page.lines.len() as u64;
        progress.set(page.next.unwrap_or(head));
        cursor = page.next;
    }
    progress.finish();
    Ok(written)
}
