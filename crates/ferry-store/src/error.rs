//! Errors of opening a store; every other operation fails with
//! [`ferry_core::StoreError`], the engine's storage error.

use std::path::PathBuf;

pub use ferry_core::StoreError;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create store directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open store at {path}: {source}")]
    Open {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("cannot measure store size under {path}: {source}")]
    Usage {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Wraps a RocksDB failure of `op` as a backend error.
pub(crate) fn db(op: &'static str) -> impl FnOnce(rocksdb::Error) -> StoreError {
    move |source| StoreError::Backend {
        op,
        source: Box::new(source),
    }
}

/// Wraps a pack-file failure of `op` as a backend error.
pub(crate) fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    move |source| StoreError::Backend {
        op,
        source: Box::new(source),
    }
}
