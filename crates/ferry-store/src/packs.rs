//! Pack files: chunk bodies appended to plain files, written once.
//!
//! Content-addressed data needs no write-ahead log — a reader re-verifies it
//! against its id — so a chunk body goes straight into the current pack with
//! one `write`, and RocksDB keeps only a 16-byte [`Location`] for it. `sync`
//! is one `fdatasync` of the current pack. A pack is never rewritten in
//! place: garbage collection copies the live chunks of a mostly-dead pack
//! into the current one and deletes the old file. Each open starts a new pack,
//! so a pack torn by a crash is only ever read where the index points.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// No chunk body is larger than the engine accepts from a peer.
const MAX_BODY: u32 = ferry_core::engine::MAX_CHUNK_LEN;
/// A pack is closed (synced, then read-only) once it reaches this size.
const PACK_MAX: u64 = 1 << 30;
/// Writeback of appended bytes is started in the background every this many
/// bytes, so a sync finds little left to write (like RocksDB's bytes_per_sync).
const WRITEBACK_EVERY: u64 = 4 << 20;

/// Where a chunk body lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub pack: u32,
    pub offset: u64,
    pub len: u32,
}

impl Location {
    pub const ENCODED_LEN: usize = 16;

    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0; Self::ENCODED_LEN];
        out[..4].copy_from_slice(&self.pack.to_be_bytes());
        out[4..12].copy_from_slice(&self.offset.to_be_bytes());
        out[12..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; Self::ENCODED_LEN] = bytes.try_into().ok()?;
        Some(Location {
            pack: u32::from_be_bytes(bytes[..4].try_into().ok()?),
            offset: u64::from_be_bytes(bytes[4..12].try_into().ok()?),
            len: u32::from_be_bytes(bytes[12..].try_into().ok()?),
        })
    }
}

struct Writer {
    pack: u32,
    file: File,
    len: u64,
    dirty: bool,
    /// Bytes before this offset have had writeback started.
    writeback_from: u64,
}

pub(crate) struct Packs {
    dir: PathBuf,
    writer: Mutex<Writer>,
    readers: RwLock<BTreeMap<u32, Arc<File>>>,
}

impl Packs {
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let existing = Self::list_in(dir)?;
        let next = existing.keys().next_back().map_or(1, |last| last + 1);
        // An empty pack holds nothing any index entry can point at.
        for (&pack, _) in existing.iter().filter(|(_, size)| **size == 0) {
            std::fs::remove_file(Self::path(dir, pack))?;
        }
        let writer = Self::create(dir, next)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            writer: Mutex::new(writer),
            readers: RwLock::new(BTreeMap::new()),
        })
    }

    fn path(dir: &Path, pack: u32) -> PathBuf {
        dir.join(format!("{pack:08}.pack"))
    }

    fn create(dir: &Path, pack: u32) -> io::Result<Writer> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .read(true)
            .open(Self::path(dir, pack))?;
        // The new file's directory entry must survive a crash too.
        File::open(dir)?.sync_all()?;
        Ok(Writer {
            pack,
            file,
            len: 0,
            dirty: false,
            writeback_from: 0,
        })
    }

    /// Pack ids and sizes on disk.
    pub fn list(&self) -> io::Result<BTreeMap<u32, u64>> {
        Self::list_in(&self.dir)
    }

    fn list_in(dir: &Path) -> io::Result<BTreeMap<u32, u64>> {
        let mut packs = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(|n| n.parse().ok())
            else {
                continue;
            };
            packs.insert(id, entry.metadata()?.len());
        }
        Ok(packs)
    }

    pub fn current(&self) -> u32 {
        self.lock().pack
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends a chunk body; durable after the next [`Packs::sync`].
    pub fn append(&self, bytes: &[u8]) -> io::Result<Location> {
        let mut writer = self.lock();
        if writer.len > 0 && writer.len + bytes.len() as u64 > PACK_MAX {
            writer.file.sync_data()?;
            let next = Self::create(&self.dir, writer.pack + 1)?;
            *writer = next;
        }
        if let Err(e) = writer.file.write_all(bytes) {
            // Part of the body may be in the file: later offsets must count it.
            writer.len = writer.file.metadata()?.len();
            return Err(e);
        }
        let location = Location {
            pack: writer.pack,
            offset: writer.len,
            len: bytes.len() as u32,
        };
        writer.len += bytes.len() as u64;
        writer.dirty = true;
        if writer.len - writer.writeback_from >= WRITEBACK_EVERY {
            start_writeback(
                &writer.file,
                writer.writeback_from,
                writer.len - writer.writeback_from,
            );
            writer.writeback_from = writer.len;
        }
        Ok(location)
    }

    /// Seals the current pack (synced) and starts a new one, so the sealed
    /// one can be compacted.
    pub fn roll(&self) -> io::Result<()> {
        let mut writer = self.lock();
        if writer.len == 0 {
            return Ok(());
        }
        writer.file.sync_data()?;
        let next = Self::create(&self.dir, writer.pack + 1)?;
        *writer = next;
        Ok(())
    }

    /// Makes every appended body durable.
    pub fn sync(&self) -> io::Result<()> {
        let mut writer = self.lock();
        if writer.dirty {
            writer.file.sync_data()?;
            writer.dirty = false;
        }
        Ok(())
    }

    pub fn read(&self, location: Location) -> io::Result<Vec<u8>> {
        // The location came from disk: bound it before allocating for it.
        if location.len > MAX_BODY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("location claims a {} byte body", location.len),
            ));
        }
        let file = self.reader(location.pack)?;
        let mut bytes = vec![0; location.len as usize];
        file.read_exact_at(&mut bytes, location.offset)?;
        Ok(bytes)
    }

    fn reader(&self, pack: u32) -> io::Result<Arc<File>> {
        if let Some(file) = self
            .readers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&pack)
        {
            return Ok(file.clone());
        }
        let file = Arc::new(File::open(Self::path(&self.dir, pack))?);
        self.readers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pack, file.clone());
        Ok(file)
    }

    /// Deletes a pack that no index entry points into any more.
    pub fn remove(&self, pack: u32) -> io::Result<()> {
        assert_ne!(pack, self.current(), "the current pack is never removed");
        self.readers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pack);
        std::fs::remove_file(Self::path(&self.dir, pack))?;
        File::open(&self.dir)?.sync_all()
    }
}

/// Asks the kernel to start writing a range to disk without waiting for it.
/// Only a hint: durability still comes from `sync_data`.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; the fd is
    // owned by `file`, which outlives the call.
    let _ = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as i64,
            len as i64,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_round_trips() {
        let loc = Location {
            pack: 7,
            offset: 1 << 33,
            len: 65_536,
        };
        assert_eq!(Location::decode(&loc.encode()), Some(loc));
        assert_eq!(Location::decode(&[0; 3]), None);
    }

    #[test]
    fn appended_bodies_read_back_and_reopen_starts_a_new_pack() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::open(dir.path()).unwrap();
        let a = packs.append(b"first body").unwrap();
        let b = packs.append(b"second").unwrap();
        packs.sync().unwrap();
        assert_eq!(packs.read(a).unwrap(), b"first body");
        assert_eq!(packs.read(b).unwrap(), b"second");
        assert_eq!(b.offset, 10);
        drop(packs);
        let packs = Packs::open(dir.path()).unwrap();
        assert_eq!(packs.current(), a.pack + 1);
        assert_eq!(packs.read(a).unwrap(), b"first body");
        // Opening again without writing leaves no empty pack behind.
        drop(packs);
        let packs = Packs::open(dir.path()).unwrap();
        assert_eq!(
            packs.list().unwrap().len(),
            2,
            "{:?}",
            packs.list().unwrap()
        );
    }
}
