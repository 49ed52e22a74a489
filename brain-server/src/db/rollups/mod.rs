//! Rollup tables (docs/rollups.md): what each dashboard read is answered from, maintained by
//! the ingest write in the same transaction as the events they summarise.

pub(crate) mod latency;
