//! The export of stored events (SPEC §4 `GET /admin/export`, §5 `brain-server export`): one
//! code path for both. [`check`] turns the request into a [`Format`] and an [`ExportFilter`]
//! (a bad one is the operator's error), [`start`] writes the `export` audit entry (the
//! filters, never data) and spawns the task that streams the rows from the database
//! (`Store::export_events`, a database cursor in `(ts, customer_id, event_id)` order),
//! encodes them and hands them on in chunks of about [`CHUNK_BYTES`] over a channel of
//! [`CHANNEL_CHUNKS`]: memory stays constant whatever the export's size, and a slow reader
//! slows the read down instead of filling memory. The HTTP handler streams the chunks as the
//! response body; the command writes them to a file or stdout.
//!
//! Formats:
//! - `csv` (the `csv` crate): a header line, then one row per event with the columns of
//!   [`EXPORT_CSV_COLUMNS`] (event_id, ts, ingested_at, customer_id, agent_id, run_id,
//!   event_type, payload as JSON text); times RFC 3339 UTC with milliseconds; an absent
//!   `run_id` is an empty field.
//! - `jsonl`: one wire-format envelope (SPEC §2: event_id, ts, event_type, agent_id, run_id,
//!   payload) per line, so that the lines of one customer, posted back to `POST /v1/events`
//!   under that customer's key, store the same rows.

use std::io;

use axum::body::Bytes;
use chrono::SecondsFormat;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use shared_proto::EventType;
use shared_proto::admin::{CustomerId, EXPORT_CSV_COLUMNS};
use tokio::sync::mpsc;

use crate::db::export::RowSink;
use crate::db::{DbError, ExportFilter, ExportRow, Store};
use crate::task;

/// Bytes of encoded rows handed on at once (a chunk of the HTTP body, a file write).
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// Chunks waiting for the reader at most (the rest waits in the database).
pub(crate) const CHANNEL_CHUNKS: usize = 4;

/// The export's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON envelope per line.
    Jsonl,
}

impl Format {
    /// `csv` or `jsonl`.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Format::Csv),
            "jsonl" => Some(Format::Jsonl),
            _ => None,
        }
    }

    /// Its name, as `parse` takes it (also the file extension).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }

    /// The HTTP `Content-Type` of the body.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Jsonl => "application/x-ndjson",
        }
    }
}

/// Checks an export request (the HTTP query or the command's flags); the message says what
/// is wrong.
pub(crate) fn check(
    format: Option<&str>,
    filter: ExportFilter,
) -> Result<(Format, ExportFilter), String> {
    let format = match format {
        None | Some("") => return Err("format is required: csv or jsonl".to_owned()),
        Some(f) => {
            Format::parse(f).ok_or_else(|| format!("format `{f}`: expected csv or jsonl"))?
        }
    };
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && since >= until
    {
        return Err("since must be before until".to_owned());
    }
    if let Some(c) = &filter.customer_id {
        CustomerId::parse(c).map_err(|e| format!("customer_id: {e}"))?;
    }
    if let Some(t) = &filter.event_type
        && !EventType::ALL.iter().any(|e| e.as_str() == t)
    {
        let known: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
        return Err(format!(
            "event_type `{t}`: expected one of {}",
            known.join(", ")
        ));
    }
    Ok((format, filter))
}

/// The parameters the audit entry of an export records: the format and the filters.
fn audit_params(format: Format, filter: &ExportFilter) -> Value {
    json!({
        "format": format.as_str(),
        "since": filter.since,
        "until": filter.until,
        "customer_id": filter.customer_id,
        "event_type": filter.event_type,
    })
}

/// Writes the `export` audit entry as `actor`, then starts streaming the export; the
/// receiver yields its chunks, an `Err` (after which nothing follows) when the read failed
/// midway, and ends with the export. Dropping the receiver stops the read.
///
/// # Errors
/// [`DbError`] when the audit entry cannot be written (nothing was exported then).
pub(crate) async fn start(
    store: &Store,
    format: Format,
    filter: ExportFilter,
    actor: &str,
) -> Result<mpsc::Receiver<io::Result<Bytes>>, DbError> {
    store
        .record_audit(actor, "export", &audit_params(format, &filter))
        .await?;
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let store = store.clone();
    task::spawn("export", async move {
        let mut sink = ChunkSink {
            enc: Encoder::new(format),
            tx,
            failed: None,
        };
        let read = store.export_events(&filter, &mut sink).await;
        let ChunkSink {
            mut enc,
            tx,
            failed,
        } = sink;
        let failed = match (read, failed) {
            (_, Some(e)) => Some(e),
            (Err(e), None) => Some(io::Error::other(e)),
            (Ok(rows), None) => match enc.take() {
                Ok(last) => {
                    if !last.is_empty() {
                        let _ = tx.send(Ok(last)).await;
                    }
                    tracing::info!(rows, format = format.as_str(), "export done");
                    None
                }
                Err(e) => Some(e),
            },
        };
        if let Some(e) = failed {
            tracing::error!(error = %e, "export failed midway");
            let _ = tx.send(Err(e)).await;
        }
    });
    Ok(rx)
}

/// Encodes the rows and sends them on in chunks.
struct ChunkSink {
    enc: Encoder,
    tx: mpsc::Sender<io::Result<Bytes>>,
    /// Why encoding failed, when it did (the read stops then).
    failed: Option<io::Error>,
}

impl RowSink for ChunkSink {
    async fn push(&mut self, row: ExportRow) -> bool {
        if let Err(e) = self.enc.push(&row) {
            self.failed = Some(e);
            return false;
        }
        if self.enc.len() < CHUNK_BYTES {
            return true;
        }
        match self.enc.take() {
            Ok(chunk) => self.tx.send(Ok(chunk)).await.is_ok(),
            Err(e) => {
                self.failed = Some(e);
                false
            }
        }
    }
}

/// Encodes rows into the bytes of one format.
enum Encoder {
    Csv(Box<csv::Writer<Vec<u8>>>),
    Jsonl(Vec<u8>),
}

/// One JSONL line: the wire-format envelope (SPEC §2).
#[derive(Serialize)]
struct Envelope<'a> {
    event_id: &'a str,
    ts: String,
    event_type: &'a str,
    agent_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<&'a str>,
    payload: &'a RawValue,
}

/// A time as the export writes it: RFC 3339, UTC, milliseconds.
fn time_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Encoder {
    /// An encoder with the header of `format` written (CSV: the column names).
    fn new(format: Format) -> Self {
        let buf = Vec::with_capacity(CHUNK_BYTES + 16 * 1024);
        match format {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(buf);
                // Writing into a Vec cannot fail; an error would surface at the first take.
                let _ = w.write_record(EXPORT_CSV_COLUMNS);
                Encoder::Csv(Box::new(w))
            }
            Format::Jsonl => Encoder::Jsonl(buf),
        }
    }

    /// Appends one row.
    fn push(&mut self, r: &ExportRow) -> io::Result<()> {
        match self {
            Encoder::Csv(w) => w
                .write_record([
                    r.event_id.as_str(),
                    &time_text(r.ts),
                    &time_text(r.ingested_at),
                    &r.customer_id,
                    &r.agent_id,
                    r.run_id.as_deref().unwrap_or(""),
                    &r.event_type,
                    &r.payload,
                ])
                .map_err(io::Error::other),
            Encoder::Jsonl(buf) => {
                let payload: &RawValue =
                    serde_json::from_str(&r.payload).map_err(io::Error::other)?;
                serde_json::to_writer(
                    &mut *buf,
                    &Envelope {
                        event_id: &r.event_id,
                        ts: time_text(r.ts),
                        event_type: &r.event_type,
                        agent_id: &r.agent_id,
                        run_id: r.run_id.as_deref(),
                        payload,
                    },
                )
                .map_err(io::Error::other)?;
                buf.push(b'\n');
                Ok(())
            }
        }
    }

    /// Bytes encoded and not yet taken (the CSV writer's own buffer of a few KiB aside).
    fn len(&self) -> usize {
        match self {
            Encoder::Csv(w) => w.get_ref().len(),
            Encoder::Jsonl(buf) => buf.len(),
        }
    }

    /// Takes what is encoded so far.
    fn take(&mut self) -> io::Result<Bytes> {
        let fresh = Vec::with_capacity(CHUNK_BYTES + 16 * 1024);
        let chunk = match self {
            Encoder::Csv(w) => {
                let full = std::mem::replace(&mut **w, csv::Writer::from_writer(fresh));
                full.into_inner().map_err(|e| e.into_error())?
            }
            Encoder::Jsonl(buf) => std::mem::replace(buf, fresh),
        };
        Ok(Bytes::from(chunk))
    }
}
