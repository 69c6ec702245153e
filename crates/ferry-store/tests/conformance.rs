//! RocksStore passes the engine's store conformance suite; its "crash" is a
//! close and reopen (real SIGKILL is covered by crash.rs).

use ferry_core::store::conformance::{self, Harness};
use ferry_store::{RocksStore, StoreConfig};

#[derive(Default)]
struct Rocks {
    dirs: Vec<tempfile::TempDir>,
}

impl Harness for Rocks {
    type S = RocksStore;
    fn create(&mut self, quota: Option<u64>) -> RocksStore {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(
            dir.path(),
            StoreConfig {
                quota_bytes: quota,
                ..StoreConfig::default()
            },
        )
        .unwrap();
        self.dirs.push(dir);
        store
    }
    fn crash(&mut self, store: RocksStore) -> RocksStore {
        let path = store.path().to_path_buf();
        let quota = store.usage().quota;
        drop(store);
        RocksStore::open(
            path,
            StoreConfig {
                quota_bytes: quota,
                ..StoreConfig::default()
            },
        )
        .unwrap()
    }
}

#[test]
fn rocks_store_passes_the_conformance_suite() {
    conformance::run_all(&mut Rocks::default());
}
