//! Store configuration and the RocksDB tuning behind it.

use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Options};

use crate::Cf;

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Refuse chunk and manifest writes that would take the store's size on
    /// disk past this many bytes. `None`: no quota.
    pub quota_bytes: Option<u64>,
    /// Memtable size for the chunk index. Up to three are held in memory.
    pub chunk_write_buffer: usize,
    /// Block cache shared by all column families.
    pub block_cache: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            quota_bytes: None,
            chunk_write_buffer: 8 << 20,
            block_cache: 8 << 20,
        }
    }
}

impl StoreConfig {
    pub(crate) fn db_options(&self) -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_compression_type(DBCompressionType::None);
        // Column families other than chunks flush rarely; bound the WAL they pin.
        opts.set_max_total_wal_size(64 << 20);
        opts.set_keep_log_file_num(4);
        opts.set_max_log_file_size(4 << 20);
        // Writes are durable only after `RocksStore::sync`, which flushes and
        // syncs the WAL: until then its records stay in RocksDB's buffer
        // rather than costing a write(2) each (one per chunk received).
        opts.set_manual_wal_flush(true);
        opts
    }

    /// Options of RocksDB's `default` column family, which ferry leaves
    /// empty. RocksDB preallocates each new WAL at 1.1 times the largest
    /// memtable of any family; left at RocksDB's 64 MiB, this one would make
    /// that a 64 MiB fallocate on the first write after every open (tens of
    /// milliseconds on tmpfs, and memory there that the WAL never fills).
    pub(crate) fn unused_cf_options(&self) -> Options {
        let mut opts = Options::default();
        opts.set_write_buffer_size(1 << 20);
        opts
    }

    pub(crate) fn cf_options(&self, cf: Cf, cache: &Cache) -> Options {
        let mut opts = Options::default();
        opts.set_compression_type(DBCompressionType::None);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(cache);
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
        match cf {
            Cf::Chunks => {
                // Chunk index: 32-byte ids to 16-byte pack locations.
                opts.set_write_buffer_size(self.chunk_write_buffer);
                opts.set_max_write_buffer_number(3);
                opts.set_memtable_whole_key_filtering(true);
                opts.set_memtable_prefix_bloom_ratio(0.1);
            }
            _ => {
                opts.set_write_buffer_size(4 << 20);
                opts.set_max_write_buffer_number(2);
            }
        }
        opts
    }
}
