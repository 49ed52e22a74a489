//! Ingest benchmark (placeholder until the measured version lands).

fn main() {}
