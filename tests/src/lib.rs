//! Cross-crate and real-process tests for ferry.
