//! Benchmarks for ferry that print ratios against a baseline run in the same process; see `ingest.rs`.
