//! `brain-server export`: the stored events as CSV or JSONL, through the same code as
//! `GET /admin/export` ([`crate::export`]), to a file or stdout.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::Context as _;

use super::{UserError, actor};
use crate::config::DbConfig;
use crate::db::ExportFilter;
use crate::export;

/// Exports the events matching `filter` in `format` to `out` (written next to it as
/// `<out>.partial`, renamed when complete) or stdout; the audit entry names the operator.
///
/// # Errors
/// [`UserError`] for a bad format or filter; any other error when the database cannot be
/// read or the output written (a file is then left as `<out>.partial`).
pub(super) async fn run(
    db: &DbConfig,
    format: &str,
    filter: ExportFilter,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let (format, filter) = export::check(Some(format), filter).map_err(UserError)?;
    let store = crate::open_store(db).await?;
    let result = write(&store, format, filter, out).await;
    store.close().await;
    result
}

async fn write(
    store: &crate::db::Store,
    format: export::Format,
    filter: ExportFilter,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let partial = out.map(|p| {
        let mut name = p.as_os_str().to_owned();
        name.push(".partial");
        std::path::PathBuf::from(name)
    });
    let mut sink: Box<dyn Write> = match &partial {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(io::stdout().lock()),
    };
    let mut rx = export::start(store, format, filter, &actor())
        .await
        .context("writing the export's audit entry")?;
    let mut bytes = 0usize;
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.context("reading the events")?;
        bytes += chunk.len();
        match sink.write_all(&chunk) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe && partial.is_none() => return Ok(()),
            r => r.context("writing the export")?,
        }
    }
    match sink.flush() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe && partial.is_none() => return Ok(()),
        r => r.context("writing the export")?,
    }
    drop(sink);
    if let (Some(partial), Some(out)) = (partial, out) {
        std::fs::rename(&partial, out)
            .with_context(|| format!("renaming {} to {}", partial.display(), out.display()))?;
        tracing::info!(bytes, path = %out.display(), "export written");
    }
    Ok(())
}
