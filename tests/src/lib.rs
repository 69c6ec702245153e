//! Cross-crate and real-process tests for ferry; each file at this crate's
//! root is one test binary (see Cargo.toml).
