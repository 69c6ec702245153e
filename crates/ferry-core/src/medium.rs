//! Removable media as a link: a USB drive, a DVD or a file through a data
//! diode is a link with a very long round trip. Owns the volume format,
//! export (what a target lacks, split into volumes), import (every record
//! verified before use, custody taken exactly as from a link) and receipts
//! (custody signals and an inventory carried back).
//!
//! Never opens a file or reads a clock: bytes come in through a
//! [`std::io::Read`] and go out through a [`std::io::Write`] the driver
//! hands in, and every entry point takes `now`.
//!
//! A volume is `FERRYVOL`, a big-endian `u16` format version, then records:
//! `kind: u8 | len: u32 BE | payload | BLAKE3(payload)`. The first record is
//! the volume header, the last the trailer; between them bundle headers,
//! manifests (their id is the BLAKE3 of the encoding) and chunks (their id is
//! the BLAKE3 of the bytes). Every record verifies alone, so a damaged one
//! is reported and skipped and the rest is kept. docs/PROTOCOL.md has the
//! full layout.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use ferry_chunk::{ChunkId, Manifest, ManifestId};
use ferry_proto::Validate;
use ferry_proto::v1;
use prost::Message;

use super::{Engine, MAX_CHUNK_LEN, MAX_MANIFEST_LEN, sequence_ranges};
use crate::bundle::{BundleHeader, BundleRecord};
use crate::event::{Event, Reason};
use crate::store::{Batch, Cf, Store, StoreError};
use crate::types::{BundleId, Endpoint, Instant, NodeId};

/// First bytes of every volume.
pub const MAGIC: &[u8; 8] = b"FERRYVOL";
/// The volume format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of a record besides its payload: kind, length, BLAKE3.
pub const RECORD_OVERHEAD: u64 = 1 + 4 + 32;
/// Bytes a volume spends besides its records' payloads, at most: magic,
/// version, the volume header and the trailer records.
pub const VOLUME_OVERHEAD: u64 = 8 + 2 + 2 * RECORD_OVERHEAD + 256;
/// Smallest `max_volume_bytes` an export accepts.
pub const MIN_VOLUME_BYTES: u64 = 64 << 10;
/// Largest volume header, receipts or trailer record a reader accepts.
const MAX_CONTROL_LEN: u32 = 64 << 20;

/// The target receipts name: any node that exported to their writer.
pub const RECEIPTS_TARGET: &str = "*";
/// `Cf::Peers` key prefix: a target's inventory from its last receipts.
const INVENTORY_PREFIX: &[u8] = b"medium/inventory/";
/// `Cf::Peers` key prefix: bundles partly imported from media.
const PENDING_PREFIX: &[u8] = b"medium/pending/";

/// What a record holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum RecordKind {
    Volume = 1,
    Bundle = 2,
    Manifest = 3,
    Chunk = 4,
    Trailer = 5,
    Receipts = 6,
    /// A manifest as edits of one the target holds.
    ManifestDelta = 7,
    /// Bundles repeating one the target holds but for their id.
    BundlesLike = 8,
}

impl RecordKind {
    fn from_u8(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => RecordKind::Volume,
            2 => RecordKind::Bundle,
            3 => RecordKind::Manifest,
            4 => RecordKind::Chunk,
            5 => RecordKind::Trailer,
            6 => RecordKind::Receipts,
            7 => RecordKind::ManifestDelta,
            8 => RecordKind::BundlesLike,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Volume => "volume header",
            RecordKind::Bundle => "bundle header",
            RecordKind::Manifest => "manifest",
            RecordKind::Chunk => "chunk",
            RecordKind::Trailer => "trailer",
            RecordKind::Receipts => "receipts",
            RecordKind::ManifestDelta => "manifest delta",
            RecordKind::BundlesLike => "bundle references",
        }
    }

    fn max_len(self) -> u32 {
        match self {
            RecordKind::Chunk => MAX_CHUNK_LEN,
            RecordKind::Manifest | RecordKind::ManifestDelta => MAX_MANIFEST_LEN,
            _ => MAX_CONTROL_LEN,
        }
    }
}

/// What a volume carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Contents {
    /// Bundles for the target (an export).
    Bundles,
    /// Custody signals and an inventory for the node that exported to the
    /// writer (receipts).
    Receipts,
}

/// Volume header record (kind 1).
#[derive(Clone, PartialEq, prost::Message)]
struct VolumeHeaderProto {
    #[prost(bytes = "vec", tag = "1")]
    source: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    target: Option<v1::Endpoint>,
    #[prost(bytes = "vec", tag = "3")]
    export_id: Vec<u8>,
    /// 0-based.
    #[prost(uint32, tag = "4")]
    index: u32,
    #[prost(uint32, tag = "5")]
    count: u32,
    #[prost(uint64, tag = "6")]
    created_ms: u64,
    /// 1: bundles, 2: receipts.
    #[prost(uint32, tag = "7")]
    contents: u32,
}

/// Trailer record (kind 5).
#[derive(Clone, PartialEq, prost::Message)]
struct TrailerProto {
    /// Records before the trailer, the volume header included.
    #[prost(uint64, tag = "1")]
    records: u64,
    /// BLAKE3 over the BLAKE3s of those records, in order.
    #[prost(bytes = "vec", tag = "2")]
    digest: Vec<u8>,
}

/// Receipts record (kind 6).
#[derive(Clone, PartialEq, prost::Message)]
struct ReceiptsProto {
    #[prost(bytes = "vec", tag = "1")]
    node: Vec<u8>,
    #[prost(string, repeated, tag = "2")]
    member_of: Vec<String>,
    #[prost(uint64, tag = "3")]
    created_ms: u64,
    /// Bundles the node holds custody of or delivered: custody signals.
    #[prost(message, repeated, tag = "4")]
    held: Vec<v1::SequenceRange>,
    /// Manifests the node holds whole (every chunk).
    #[prost(bytes = "vec", repeated, tag = "5")]
    manifests: Vec<Vec<u8>>,
    /// Further chunks it holds (of bundles partly imported), 32 bytes each.
    #[prost(bytes = "vec", tag = "6")]
    chunks: Vec<u8>,
}

/// Manifest delta record (kind 7): a manifest rebuilt from one the target
/// holds. Entries are taken in turn: `segments` holds triples (literal
/// count, base start, copy length): that many entries from `rest`'s
/// chunk list, then that many entries of `base` from that index; the
/// literals left over come last. `rest` carries the total length, the
/// native digest and the media type.
#[derive(Clone, PartialEq, prost::Message)]
struct ManifestDeltaProto {
    #[prost(bytes = "vec", tag = "1")]
    id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    base: Vec<u8>,
    #[prost(message, optional, tag = "3")]
    rest: Option<v1::Manifest>,
    #[prost(uint32, repeated, tag = "4")]
    segments: Vec<u32>,
}

/// Bundles-like record (kind 8): bundles of one source whose headers equal,
/// but for id and hop count, that of a bundle of the same source the target
/// holds (a release sent again with most files unchanged).
#[derive(Clone, PartialEq, prost::Message)]
struct BundlesLikeProto {
    #[prost(bytes = "vec", tag = "1")]
    source: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    entries: Vec<LikeEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LikeEntry {
    #[prost(uint64, tag = "1")]
    created_ms: u64,
    #[prost(uint64, tag = "2")]
    sequence: u64,
    /// Sequence number of the held bundle whose header it repeats.
    #[prost(uint64, tag = "3")]
    like: u64,
    #[prost(uint32, tag = "4")]
    hop_count: u32,
}

/// A header's fields but id and hop count, to find a bundle it repeats.
fn likeness(header: &BundleHeader) -> Vec<u8> {
    let mut proto = header.to_proto();
    proto.id = None;
    proto.hop_count = 0;
    proto.encode_to_vec()
}

/// Most entries a rebuilt manifest may have (what `MAX_MANIFEST_LEN` holds).
const MAX_DELTA_ENTRIES: usize = (MAX_MANIFEST_LEN as usize) / 33;

/// `manifest` as edits of `base`, or `None` if that is not smaller.
fn delta(
    manifest: &Manifest,
    id: ManifestId,
    base_id: ManifestId,
    base: &Manifest,
) -> Option<Vec<u8>> {
    let mut at: BTreeMap<ChunkId, u32> = BTreeMap::new();
    for (i, e) in base.entries().iter().enumerate().rev() {
        at.insert(e.id, i as u32);
    }
    let entries = manifest.entries();
    let base_entries = base.entries();
    let mut rest = manifest.to_proto();
    rest.chunk_ids.clear();
    rest.chunk_lengths.clear();
    let mut segments = Vec::new();
    let mut literals = 0u32;
    let mut i = 0;
    while i < entries.len() {
        match at.get(&entries[i].id) {
            Some(&start) if base_entries[start as usize] == entries[i] => {
                let mut len = 0usize;
                while i + len < entries.len()
                    && (start as usize + len) < base_entries.len()
                    && base_entries[start as usize + len] == entries[i + len]
                {
                    len += 1;
                }
                segments.extend([literals, start, len as u32]);
                literals = 0;
                i += len;
            }
            _ => {
                rest.chunk_ids.extend_from_slice(entries[i].id.as_bytes());
                rest.chunk_lengths.push(entries[i].len);
                literals += 1;
                i += 1;
            }
        }
    }
    let encoded = ManifestDeltaProto {
        id: id.as_bytes().to_vec(),
        base: base_id.as_bytes().to_vec(),
        rest: Some(rest),
        segments,
    }
    .encode_to_vec();
    (encoded.len() < manifest.encoded_len()).then_some(encoded)
}

/// Rebuilds a manifest from a delta record; `base` finds the manifest it
/// names. Checks the result against the id the delta names.
fn undelta(
    payload: &[u8],
    base: impl FnOnce(ManifestId) -> Option<Manifest>,
) -> Result<(ManifestId, Manifest), String> {
    let delta = ManifestDeltaProto::decode(payload).map_err(|e| e.to_string())?;
    let id = ManifestId::from_slice(&delta.id).ok_or("the id is not 32 bytes")?;
    let base_id = ManifestId::from_slice(&delta.base).ok_or("the base id is not 32 bytes")?;
    let base = base(base_id).ok_or_else(|| {
        format!("manifest {id} is an edit of manifest {base_id}, which this node does not hold")
    })?;
    let rest = delta.rest.ok_or("no rest")?;
    if rest.chunk_ids.len() != rest.chunk_lengths.len() * 32 {
        return Err("literal ids and lengths disagree".into());
    }
    let mut ids = Vec::new();
    let mut lens = Vec::new();
    let mut literal = 0usize;
    let take_literals = |n: usize, literal: &mut usize, ids: &mut Vec<u8>, lens: &mut Vec<u32>| {
        let end = literal
            .checked_add(n)
            .filter(|&e| e <= rest.chunk_lengths.len())?;
        ids.extend_from_slice(&rest.chunk_ids[*literal * 32..end * 32]);
        lens.extend_from_slice(&rest.chunk_lengths[*literal..end]);
        *literal = end;
        Some(())
    };
    for triple in delta.segments.chunks(3) {
        let [n, start, len] = triple else {
            return Err("segments are not triples".into());
        };
        take_literals(*n as usize, &mut literal, &mut ids, &mut lens)
            .ok_or("more literals named than carried")?;
        let (start, len) = (*start as usize, *len as usize);
        let copied = base
            .entries()
            .get(start..start.checked_add(len).ok_or("copy overflows")?)
            .ok_or("copy past the base manifest")?;
        if lens.len() + copied.len() > MAX_DELTA_ENTRIES {
            return Err("rebuilds an oversized manifest".into());
        }
        for e in copied {
            ids.extend_from_slice(e.id.as_bytes());
            lens.push(e.len);
        }
    }
    let left = rest.chunk_lengths.len() - literal;
    take_literals(left, &mut literal, &mut ids, &mut lens).ok_or("literals")?;
    let proto = v1::Manifest {
        chunk_ids: ids,
        chunk_lengths: lens,
        ..rest
    };
    let encoded = proto.encode_to_vec();
    if ManifestId::of_encoding(&encoded) != id {
        return Err(format!(
            "the rebuilt manifest is not {id} (damaged, tampered, or a different base)"
        ));
    }
    let manifest = Manifest::decode(&encoded).map_err(|e| e.to_string())?;
    Ok((id, manifest))
}

/// A bundle partly imported from media (`Cf::Peers`).
#[derive(Clone, PartialEq, prost::Message)]
struct PendingProto {
    #[prost(message, optional, tag = "1")]
    header: Option<v1::BundleHeader>,
    #[prost(bytes = "vec", tag = "2")]
    from: Vec<u8>,
}

/// A volume's identity, from its header record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    pub source: NodeId,
    pub target: Endpoint,
    pub export_id: [u8; 16],
    /// 0-based.
    pub index: u32,
    pub count: u32,
    pub created_ms: u64,
    pub contents: Contents,
}

/// Errors that stop an export or an import before it changed anything.
#[derive(Debug, thiserror::Error)]
pub enum MediumError {
    #[error("not a ferry volume (it does not start with FERRYVOL)")]
    NotAVolume,
    #[error(
        "volume format {found} is not supported (this build reads format {FORMAT_VERSION}); upgrade ferry"
    )]
    UnsupportedVersion { found: u16 },
    #[error("the volume header is unreadable: {0}; the volume cannot be trusted, export it again")]
    BadVolumeHeader(String),
    #[error("this volume is for {target}, not this node ({node}); import it at its target")]
    WrongTarget { target: Endpoint, node: NodeId },
    #[error("this volume was exported by this node; import it at its target")]
    OwnVolume,
    #[error("a volume of {max} bytes cannot hold a record of {needed} bytes; raise --max-size")]
    VolumeTooSmall { max: u64, needed: u64 },
    #[error("chunk {chunk} of bundle {bundle} is not in the store; the export cannot be written")]
    MissingChunk { bundle: BundleId, chunk: ChunkId },
    #[error("manifest {0} is not in the store")]
    MissingManifest(ManifestId),
    #[error("volume {index} does not exist (the export has {count})")]
    NoSuchVolume { index: usize, count: usize },
    #[error("expected receipts, found a volume of bundles (import it with the volumes)")]
    NotReceipts,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How to export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// Everything the bundles need, whatever the target is believed to hold.
    pub full: bool,
    /// Split into volumes of at most this many bytes.
    pub max_volume_bytes: Option<u64>,
}

/// What an export holds and what it saved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub bundles: u64,
    /// Payload bytes of those bundles.
    pub payload_bytes: u64,
    pub manifests: u64,
    /// Of those, sent as edits of a manifest the target holds.
    pub manifest_deltas: u64,
    pub chunks: u64,
    pub chunk_bytes: u64,
    /// Chunks (and bytes) left out because the target holds them.
    pub skipped_chunks: u64,
    pub skipped_bytes: u64,
    /// Bytes of every volume.
    pub volume_bytes: Vec<u64>,
    /// Bytes a full export of the same bundles would take (one volume).
    pub full_bytes: u64,
}

impl ExportSummary {
    pub fn total_bytes(&self) -> u64 {
        self.volume_bytes.iter().sum()
    }
}

#[derive(Clone, Debug, Default)]
struct VolumePlan {
    bundles: Vec<BundleId>,
    manifests: Vec<ManifestId>,
    /// The same, to look up.
    manifest_set: BTreeSet<ManifestId>,
    /// (chunk, its length, the bundle it is written for).
    chunks: Vec<(ChunkId, u32, BundleId)>,
    bytes: u64,
}

/// An export worked out: which records go in which volume. Writing a volume
/// only reads the store, so a driver may do it away from the engine.
#[derive(Clone, Debug)]
pub struct ExportPlan {
    source: NodeId,
    target: Endpoint,
    export_id: [u8; 16],
    created_ms: u64,
    headers: BTreeMap<BundleId, v1::BundleHeader>,
    /// Bundles sent as a reference to one the target holds: id → its sequence.
    likes: BTreeMap<BundleId, u64>,
    /// Manifest records: whole, or as a delta of one the target holds.
    manifests: BTreeMap<ManifestId, (RecordKind, Vec<u8>)>,
    volumes: Vec<VolumePlan>,
    summary: ExportSummary,
}

fn record_len(payload: u64) -> u64 {
    RECORD_OVERHEAD + payload
}

/// Writes records, keeping the running digest the trailer carries.
struct RecordWriter<W: Write> {
    out: W,
    records: u64,
    checks: Vec<u8>,
    written: u64,
}

impl<W: Write> RecordWriter<W> {
    fn record(&mut self, kind: RecordKind, payload: &[u8]) -> std::io::Result<()> {
        let check = ChunkId::of(payload);
        self.checks.extend_from_slice(check.as_bytes());
        self.records += 1;
        self.out.write_all(&[kind as u8])?;
        self.out.write_all(&(payload.len() as u32).to_be_bytes())?;
        self.out.write_all(payload)?;
        self.out.write_all(check.as_bytes())?;
        self.written += record_len(payload.len() as u64);
        Ok(())
    }

    fn start(mut out: W, header: &VolumeHeaderProto) -> std::io::Result<Self> {
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_be_bytes())?;
        let mut writer = RecordWriter {
            out,
            records: 0,
            checks: Vec::new(),
            written: 10,
        };
        writer.record(RecordKind::Volume, &header.encode_to_vec())?;
        Ok(writer)
    }

    fn finish(mut self) -> std::io::Result<(W, u64)> {
        let trailer = TrailerProto {
            records: self.records,
            digest: ChunkId::of(&self.checks).as_bytes().to_vec(),
        };
        self.record(RecordKind::Trailer, &trailer.encode_to_vec())?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

impl ExportPlan {
    /// The records naming volume `index`'s bundles: whole headers, and one
    /// record of references per source.
    fn bundle_records(&self, index: usize) -> Vec<(RecordKind, Vec<u8>)> {
        let mut out = Vec::new();
        let mut likes: BTreeMap<NodeId, Vec<LikeEntry>> = BTreeMap::new();
        for id in &self.volumes[index].bundles {
            match self.likes.get(id) {
                Some(&like) => likes.entry(id.source).or_default().push(LikeEntry {
                    created_ms: id.created_ms,
                    sequence: id.sequence,
                    like,
                    hop_count: self.headers[id].hop_count,
                }),
                None => out.push((RecordKind::Bundle, self.headers[id].encode_to_vec())),
            }
        }
        for (source, entries) in likes {
            let batch = BundlesLikeProto {
                source: source.0.to_vec(),
                entries,
            };
            out.push((RecordKind::BundlesLike, batch.encode_to_vec()));
        }
        out
    }

    /// Bytes of volume `index` besides its bundle, manifest and chunk
    /// records: magic, version, volume header and trailer.
    fn framing_size(&self, index: usize) -> u64 {
        let volume = &self.volumes[index];
        let header = VolumeHeaderProto {
            source: self.source.0.to_vec(),
            target: Some(self.target.to_proto()),
            export_id: self.export_id.to_vec(),
            index: index as u32,
            count: self.volumes.len() as u32,
            created_ms: self.created_ms,
            contents: 1,
        };
        let records =
            1 + self.bundle_records(index).len() + volume.manifests.len() + volume.chunks.len();
        let trailer = TrailerProto {
            records: records as u64,
            digest: vec![0; 32],
        };
        10 + record_len(header.encoded_len() as u64) + record_len(trailer.encoded_len() as u64)
    }

    /// The exact size of volume `index`: framing, records and trailer.
    fn exact_size(&self, index: usize) -> u64 {
        let volume = &self.volumes[index];
        self.framing_size(index)
            + self
                .bundle_records(index)
                .iter()
                .map(|(_, bytes)| record_len(bytes.len() as u64))
                .sum::<u64>()
            + volume
                .manifests
                .iter()
                .map(|id| record_len(self.manifests[id].1.len() as u64))
                .sum::<u64>()
            + volume
                .chunks
                .iter()
                .map(|(_, len, _)| record_len(u64::from(*len)))
                .sum::<u64>()
    }

    pub fn summary(&self) -> &ExportSummary {
        &self.summary
    }

    pub fn volume_count(&self) -> usize {
        self.volumes.len()
    }

    pub fn target(&self) -> &Endpoint {
        &self.target
    }

    /// Hex of the export's id, shared by its volumes.
    pub fn export_id_hex(&self) -> String {
        hex::encode(self.export_id)
    }

    /// Writes volume `index` (0-based) to `out`, reading chunks from
    /// `store`; `progress` is told the bytes of each chunk written. Returns
    /// the volume's size.
    pub fn write_volume<S: Store, W: Write>(
        &self,
        index: usize,
        store: &S,
        out: W,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, MediumError> {
        let volume = self.volumes.get(index).ok_or(MediumError::NoSuchVolume {
            index,
            count: self.volumes.len(),
        })?;
        let header = VolumeHeaderProto {
            source: self.source.0.to_vec(),
            target: Some(self.target.to_proto()),
            export_id: self.export_id.to_vec(),
            index: index as u32,
            count: self.volumes.len() as u32,
            created_ms: self.created_ms,
            contents: 1,
        };
        let mut writer = RecordWriter::start(out, &header)?;
        for (kind, bytes) in self.bundle_records(index) {
            writer.record(kind, &bytes)?;
        }
        for id in &volume.manifests {
            let (kind, bytes) = &self.manifests[id];
            writer.record(*kind, bytes)?;
        }
        for &(chunk, len, bundle) in &volume.chunks {
            let bytes = store
                .get_chunk(chunk)?
                .ok_or(MediumError::MissingChunk { bundle, chunk })?;
            writer.record(RecordKind::Chunk, &bytes)?;
            progress(u64::from(len));
        }
        let (_, written) = writer.finish()?;
        Ok(written)
    }
}

/// One record that could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 0-based position of the record in the volume (the volume header is 0).
    pub record: u64,
    /// Byte offset of the record in the volume.
    pub offset: u64,
    /// What the record claimed to be (`"?"` when unknown).
    pub kind: &'static str,
    pub reason: String,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub volume: Option<VolumeInfo>,
    /// Records read whole, the volume header and trailer included.
    pub records: u64,
    /// Chunks new to this node, and their bytes.
    pub chunks_stored: u64,
    pub bytes_stored: u64,
    /// Chunks this node held already.
    pub chunks_present: u64,
    /// Bundles taken into custody.
    pub accepted: Vec<BundleId>,
    /// Of those, the ones delivered here.
    pub delivered: Vec<(BundleId, ManifestId)>,
    /// Bundles this node held already.
    pub already_held: Vec<BundleId>,
    /// Bundles still missing chunks (another volume completes them):
    /// (bundle, chunks missing).
    pub incomplete: Vec<(BundleId, u64)>,
    /// Bundles not taken, and why.
    pub refused: Vec<(BundleId, String)>,
    /// Bundles whose manifest neither this volume nor the store holds.
    pub no_manifest: Vec<BundleId>,
    /// Receipts: bundles whose custody the receipts released here.
    pub released: Vec<BundleId>,
    /// Records rejected, one by one; the rest was kept.
    pub problems: Vec<Problem>,
    /// The volume ended before its trailer.
    pub truncated: bool,
}

/// What receipts hold, as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiptsSummary {
    pub bundles: u64,
    pub manifests: u64,
    pub chunks: u64,
    pub bytes: u64,
}

/// A target's inventory, from its last receipts.
#[derive(Clone, Debug, Default)]
struct Inventory {
    manifests: BTreeSet<ManifestId>,
    chunks: BTreeSet<ChunkId>,
    /// Bundles it holds: (source, first, last) sequence ranges.
    held: Vec<(NodeId, u64, u64)>,
}

impl Inventory {
    fn holds(&self, id: BundleId) -> bool {
        self.held.iter().any(|&(source, first, last)| {
            source == id.source && (first..=last).contains(&id.sequence)
        })
    }
}

enum Read1 {
    Record {
        kind: Option<RecordKind>,
        kind_byte: u8,
        payload: Vec<u8>,
        check_ok: bool,
        check: [u8; 32],
    },
    End,
    /// The volume stopped inside a record.
    Truncated(String),
    /// The length field cannot be right: the rest cannot be framed.
    Lost(String),
}

/// Reads up to `buf.len()` bytes; fewer only at the end of the input.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn read_record(input: &mut impl Read) -> Read1 {
    let mut head = [0u8; 5];
    let got = match read_full(input, &mut head) {
        Ok(n) => n,
        Err(e) => return Read1::Truncated(format!("read failed: {e}")),
    };
    if got == 0 {
        return Read1::End;
    }
    if got < head.len() {
        return Read1::Truncated(format!("{got} of 5 record header bytes"));
    }
    let kind = RecordKind::from_u8(head[0]);
    let len = u32::from_be_bytes(head[1..5].try_into().expect("4 bytes"));
    let max = kind.map_or(MAX_CHUNK_LEN.max(MAX_MANIFEST_LEN), RecordKind::max_len);
    if len > max {
        return Read1::Lost(format!(
            "length {len} exceeds {max} for a {}",
            kind.map_or("record of unknown kind", RecordKind::name)
        ));
    }
    // Grown as bytes arrive, so a false length on a short input does not
    // allocate its full size up front.
    let mut payload = Vec::new();
    match input
        .by_ref()
        .take(u64::from(len))
        .read_to_end(&mut payload)
    {
        Ok(_) => {}
        Err(e) => return Read1::Truncated(format!("read failed: {e}")),
    }
    if payload.len() < len as usize {
        return Read1::Truncated(format!("{} of {len} payload bytes", payload.len()));
    }
    let mut check = [0u8; 32];
    match read_full(input, &mut check) {
        Ok(32) => {}
        Ok(n) => return Read1::Truncated(format!("{n} of 32 hash bytes")),
        Err(e) => return Read1::Truncated(format!("read failed: {e}")),
    }
    let check_ok = ChunkId(check).matches(&payload);
    Read1::Record {
        kind,
        kind_byte: head[0],
        payload,
        check_ok,
        check,
    }
}

fn decode_volume_header(payload: &[u8]) -> Result<VolumeInfo, String> {
    let proto = VolumeHeaderProto::decode(payload).map_err(|e| e.to_string())?;
    let source = NodeId::from_slice(&proto.source).ok_or("source is not a node id")?;
    let target = proto.target.as_ref().ok_or("no target")?;
    target.validate().map_err(|e| e.to_string())?;
    let target = Endpoint::from_proto(target).ok_or("target is not an endpoint")?;
    let export_id: [u8; 16] = proto
        .export_id
        .as_slice()
        .try_into()
        .map_err(|_| "export id is not 16 bytes")?;
    if proto.count == 0 || proto.index >= proto.count {
        return Err(format!("volume {} of {}", proto.index, proto.count));
    }
    let contents = match proto.contents {
        1 => Contents::Bundles,
        2 => Contents::Receipts,
        other => return Err(format!("unknown contents {other}")),
    };
    Ok(VolumeInfo {
        source,
        target,
        export_id,
        index: proto.index,
        count: proto.count,
        created_ms: proto.created_ms,
        contents,
    })
}

/// Reads the magic, the version and the volume header record: the volume,
/// the header record's BLAKE3 and the bytes read.
fn open_volume(input: &mut impl Read) -> Result<(VolumeInfo, [u8; 32], u64), MediumError> {
    let mut start = [0u8; 10];
    let got = read_full(input, &mut start)?;
    if got < 8 || &start[..8] != MAGIC {
        return Err(MediumError::NotAVolume);
    }
    if got < 10 {
        return Err(MediumError::BadVolumeHeader(
            "truncated before the version".into(),
        ));
    }
    let version = u16::from_be_bytes([start[8], start[9]]);
    if version != FORMAT_VERSION {
        return Err(MediumError::UnsupportedVersion { found: version });
    }
    match read_record(input) {
        Read1::Record {
            kind: Some(RecordKind::Volume),
            payload,
            check_ok: true,
            check,
            ..
        } => decode_volume_header(&payload)
            .map(|info| (info, check, 10 + record_len(payload.len() as u64)))
            .map_err(MediumError::BadVolumeHeader),
        Read1::Record {
            check_ok: false, ..
        } => Err(MediumError::BadVolumeHeader(
            "its hash does not match (damaged or tampered)".into(),
        )),
        Read1::Record { .. } => Err(MediumError::BadVolumeHeader(
            "the first record is not a volume header".into(),
        )),
        Read1::End | Read1::Truncated(_) | Read1::Lost(_) => Err(MediumError::BadVolumeHeader(
            "the volume ends inside its header".into(),
        )),
    }
}

fn pending_key(id: BundleId) -> Vec<u8> {
    [PENDING_PREFIX, &id.to_key()[..]].concat()
}

fn inventory_key(node: NodeId) -> Vec<u8> {
    [INVENTORY_PREFIX, &node.0[..]].concat()
}

impl<S: Store> Engine<S> {
    /// Works out an export of the bundles held for `target`: every bundle
    /// still waiting for `target` (or, for a group, every bundle for that
    /// group still waiting for a next hop), with only the manifests and
    /// chunks `target` is not known to hold from its last receipts (all of
    /// them with `full`).
    ///
    /// A bundle for `target` itself with no next hop (no route: the target
    /// is reached only by media) gets `target` as its next hop, so custody
    /// is held until receipts come back.
    pub fn plan_export(
        &mut self,
        now: Instant,
        target: Endpoint,
        options: ExportOptions,
    ) -> Result<ExportPlan, MediumError> {
        let max = options.max_volume_bytes.unwrap_or(u64::MAX);
        if max < MIN_VOLUME_BYTES {
            return Err(MediumError::VolumeTooSmall {
                max,
                needed: MIN_VOLUME_BYTES,
            });
        }
        let me = self.config.node;
        // Receipts name what the target holds; with `full` its bundles are
        // still left out (it took custody of them), but not its chunks.
        let known = self.inventory_of(&target)?;
        let mut selected = Vec::new();
        let mut hop_added = Vec::new();
        for record in self.bundles.values() {
            let header = &record.header;
            if header.expires_at() <= now
                || record
                    .custody_from
                    .is_some_and(|from| Endpoint::Node(from) == target)
                || known.holds(header.id)
            {
                continue;
            }
            let chosen = match &target {
                Endpoint::Node(node) => {
                    if record.pending_hops.contains(node) {
                        true
                    } else if header.destination == target
                        && record.pending_hops.is_empty()
                        && *node != me
                    {
                        hop_added.push(header.id);
                        true
                    } else {
                        false
                    }
                }
                Endpoint::Group(_) => {
                    header.destination == target && !record.pending_hops.is_empty()
                }
            };
            if chosen {
                selected.push(header.id);
            }
        }
        if let Endpoint::Node(node) = target {
            let mut batch = Batch::new();
            for id in &hop_added {
                let record = self.bundles.get_mut(id).expect("selected above");
                record.pending_hops.insert(node);
                batch.put(Cf::Bundles, id.to_key().to_vec(), record.encode());
            }
            if !batch.is_empty() {
                self.store.write_synced(&batch)?;
            }
        }
        // Highest priority first, then oldest.
        selected.sort_by_key(|id| (std::cmp::Reverse(self.bundles[id].header.priority), *id));
        let inventory = if options.full {
            Inventory::default()
        } else {
            known
        };
        let mut held_chunks: BTreeSet<ChunkId> = inventory.chunks.clone();
        // The target's manifests, and for each chunk the first that names
        // it: a new manifest is sent as edits of the one it shares most with.
        let mut held_manifests: BTreeMap<ManifestId, Manifest> = BTreeMap::new();
        let mut named_by: BTreeMap<ChunkId, ManifestId> = BTreeMap::new();
        for manifest in &inventory.manifests {
            if let Some(m) = self.store.get_manifest(*manifest)? {
                for e in m.entries() {
                    held_chunks.insert(e.id);
                    named_by.entry(e.id).or_insert(*manifest);
                }
                held_manifests.insert(*manifest, m);
            }
        }

        let mut export_seed = Vec::new();
        export_seed.extend_from_slice(&me.0);
        export_seed.extend_from_slice(&target.to_proto().encode_to_vec());
        export_seed.extend_from_slice(&now.0.to_be_bytes());
        let mut headers = BTreeMap::new();
        let mut likes = BTreeMap::new();
        // Bundles the target holds, by everything but their id: a bundle
        // repeating one of them travels as a reference to it.
        let mut held_like: BTreeMap<(NodeId, Vec<u8>), u64> = BTreeMap::new();
        if !options.full {
            for record in self.bundles.values() {
                if inventory.holds(record.header.id) {
                    held_like
                        .entry((record.header.id.source, likeness(&record.header)))
                        .or_insert(record.header.id.sequence);
                }
            }
        }
        let mut like_sources: Vec<BTreeSet<NodeId>> = vec![BTreeSet::new()];
        let mut manifests = BTreeMap::new();
        let mut summary = ExportSummary::default();
        let mut volumes: Vec<VolumePlan> = vec![VolumePlan {
            bytes: VOLUME_OVERHEAD,
            ..Default::default()
        }];
        let mut sent_chunks: BTreeSet<ChunkId> = BTreeSet::new();
        let mut full_chunks: BTreeSet<ChunkId> = BTreeSet::new();
        summary.full_bytes = VOLUME_OVERHEAD;
        for id in selected {
            let record = &self.bundles[&id];
            let header_proto = record.header.to_proto();
            let like = held_like
                .get(&(id.source, likeness(&record.header)))
                .copied();
            let header_len = match like {
                // An entry of the source's reference record (length-prefixed).
                Some(like) => {
                    LikeEntry {
                        created_ms: id.created_ms,
                        sequence: id.sequence,
                        like,
                        hop_count: record.header.hop_count,
                    }
                    .encoded_len() as u64
                        + 2
                }
                None => record_len(header_proto.encoded_len() as u64),
            };
            export_seed.extend_from_slice(&id.to_key());
            let manifest = self
                .store
                .get_manifest(record.header.manifest)?
                .ok_or(MediumError::MissingManifest(record.header.manifest))?;
            let encoded = manifest.encode();
            let send_manifest = !inventory.manifests.contains(&record.header.manifest);
            let first_time = send_manifest && !manifests.contains_key(&record.header.manifest);
            let mut votes: BTreeMap<ManifestId, usize> = BTreeMap::new();
            if first_time {
                for e in manifest.entries() {
                    if let Some(m) = named_by.get(&e.id) {
                        *votes.entry(*m).or_default() += 1;
                    }
                }
            }
            let base = votes
                .iter()
                .max_by_key(|(m, n)| (**n, std::cmp::Reverse(**m)))
                .map(|(m, _)| *m);
            let manifest_record = first_time.then(|| {
                base.and_then(|b| {
                    delta(&manifest, record.header.manifest, b, &held_manifests[&b])
                        .map(|d| (RecordKind::ManifestDelta, d))
                })
                .unwrap_or((RecordKind::Manifest, encoded.clone()))
            });
            let manifest_len = manifest_record
                .as_ref()
                .or(manifests.get(&record.header.manifest))
                .filter(|_| send_manifest)
                .map_or(0, |(_, bytes)| record_len(bytes.len() as u64));
            summary.bundles += 1;
            summary.payload_bytes += record.header.payload_len;
            summary.full_bytes += header_len + record_len(encoded.len() as u64);
            for entry in manifest.entries() {
                if full_chunks.insert(entry.id) {
                    summary.full_bytes += record_len(u64::from(entry.len));
                }
            }
            let needed = VOLUME_OVERHEAD
                + header_len
                + manifest_len
                + manifest
                    .entries()
                    .iter()
                    .map(|e| record_len(u64::from(e.len)))
                    .max()
                    .unwrap_or(0);
            if needed > max {
                return Err(MediumError::VolumeTooSmall { max, needed });
            }
            // The first reference of a source in a volume opens its record.
            let like_record = record_len(34 + 8);
            let open = |volumes: &mut Vec<VolumePlan>, like_sources: &mut Vec<BTreeSet<NodeId>>| {
                let volume = volumes.last_mut().expect("one volume at least");
                volume.bundles.push(id);
                volume.bytes += header_len;
                if like.is_some() && like_sources.last_mut().expect("one").insert(id.source) {
                    volume.bytes += like_record;
                }
                if manifest_len > 0 && volume.manifest_set.insert(record.header.manifest) {
                    volume.manifests.push(record.header.manifest);
                    volume.bytes += manifest_len;
                }
            };
            if volumes.last().expect("one").bytes + header_len + manifest_len + like_record > max {
                volumes.push(VolumePlan {
                    bytes: VOLUME_OVERHEAD,
                    ..Default::default()
                });
                like_sources.push(BTreeSet::new());
            }
            open(&mut volumes, &mut like_sources);
            if let Some(manifest_record) = manifest_record {
                summary.manifests += 1;
                if manifest_record.0 == RecordKind::ManifestDelta {
                    summary.manifest_deltas += 1;
                }
                manifests.insert(record.header.manifest, manifest_record);
            }
            headers.insert(id, header_proto);
            if let Some(like) = like {
                likes.insert(id, like);
            }
            let mut in_this = BTreeSet::new();
            for entry in manifest.entries() {
                if held_chunks.contains(&entry.id) {
                    if !sent_chunks.contains(&entry.id) && in_this.insert(entry.id) {
                        summary.skipped_chunks += 1;
                        summary.skipped_bytes += u64::from(entry.len);
                    }
                    continue;
                }
                if !sent_chunks.insert(entry.id) {
                    continue;
                }
                let len = record_len(u64::from(entry.len));
                if volumes.last().expect("one").bytes + len > max {
                    volumes.push(VolumePlan {
                        bytes: VOLUME_OVERHEAD,
                        ..Default::default()
                    });
                    like_sources.push(BTreeSet::new());
                    open(&mut volumes, &mut like_sources);
                }
                let volume = volumes.last_mut().expect("one");
                volume.chunks.push((entry.id, entry.len, id));
                volume.bytes += len;
                summary.chunks += 1;
                summary.chunk_bytes += u64::from(entry.len);
            }
        }
        let digest = ChunkId::of(&export_seed);
        let mut export_id = [0u8; 16];
        export_id.copy_from_slice(&digest.as_bytes()[..16]);
        let plan = ExportPlan {
            source: me,
            target,
            export_id,
            created_ms: now.as_millis(),
            headers,
            likes,
            manifests,
            summary,
            volumes,
        };
        // Exact sizes: a dry run of each volume's framing (no chunk bytes read).
        let mut plan = plan;
        let sizes: Vec<u64> = (0..plan.volumes.len())
            .map(|i| plan.exact_size(i))
            .collect();
        for (volume, size) in plan.volumes.iter_mut().zip(&sizes) {
            volume.bytes = *size;
        }
        // The planning estimate leaves room for the volume header; a target
        // with a very long group name could still outgrow it.
        if let Some(&over) = sizes.iter().find(|&&size| size > max) {
            return Err(MediumError::VolumeTooSmall { max, needed: over });
        }
        // A full export is one volume: its framing, exactly.
        let framing = plan.framing_size(0);
        plan.summary.full_bytes = plan.summary.full_bytes - VOLUME_OVERHEAD + framing;
        plan.summary.volume_bytes = sizes;
        tracing::info!(
            target = %plan.target,
            bundles = plan.summary.bundles,
            chunks = plan.summary.chunks,
            skipped = plan.summary.skipped_chunks,
            volumes = plan.volumes.len(),
            "export planned"
        );
        Ok(plan)
    }

    /// What `target` is believed to hold, from the receipts last imported
    /// from it (for a group: what every node whose receipts named the group
    /// holds).
    fn inventory_of(&self, target: &Endpoint) -> Result<Inventory, StoreError> {
        let decode = |value: &[u8]| ReceiptsProto::decode(value).ok();
        let to_inventory = |proto: &ReceiptsProto| Inventory {
            manifests: proto
                .manifests
                .iter()
                .filter_map(|m| ManifestId::from_slice(m))
                .collect(),
            chunks: proto
                .chunks
                .chunks_exact(32)
                .filter_map(ChunkId::from_slice)
                .collect(),
            held: proto
                .held
                .iter()
                .filter_map(|r| Some((NodeId::from_slice(&r.source)?, r.first, r.last)))
                .collect(),
        };
        match target {
            Endpoint::Node(node) => Ok(self
                .store
                .get(Cf::Peers, &inventory_key(*node))?
                .and_then(|v| decode(&v))
                .map(|p| to_inventory(&p))
                .unwrap_or_default()),
            Endpoint::Group(name) => {
                let mut out: Option<Inventory> = None;
                for (_, value) in self.store.scan_prefix(Cf::Peers, INVENTORY_PREFIX)? {
                    let Some(proto) = decode(&value) else {
                        continue;
                    };
                    if !proto.member_of.contains(name) {
                        continue;
                    }
                    let next = to_inventory(&proto);
                    out = Some(match out {
                        None => next,
                        Some(prev) => Inventory {
                            manifests: prev
                                .manifests
                                .intersection(&next.manifests)
                                .copied()
                                .collect(),
                            chunks: prev.chunks.intersection(&next.chunks).copied().collect(),
                            // A group bundle may still be wanted by another member.
                            held: Vec::new(),
                        },
                    });
                }
                Ok(out
                    .map(|mut inventory| {
                        inventory.held.clear();
                        inventory
                    })
                    .unwrap_or_default())
            }
        }
    }

    /// Imports a volume (or receipts) read from `input`: [`read_volume`]
    /// then [`Engine::accept_volume`]. Every record is verified before use;
    /// a damaged one is reported in [`ImportReport::problems`] and the valid
    /// rest is kept. A bundle whose content is complete is taken into
    /// custody as from a link (its record synced first), then delivered or
    /// routed on. Importing the same volume again changes nothing.
    pub fn import_volume(
        &mut self,
        now: Instant,
        input: impl Read,
    ) -> Result<ImportReport, MediumError> {
        let read = read_volume(&mut self.store, self.config.node, input)?;
        self.accept_volume(now, read)
    }

    /// Takes custody of what a volume [`read_volume`] read made complete,
    /// and applies its receipts. Quick: the volume's bytes were read,
    /// verified and stored already, so a driver may read it away from the
    /// engine and hand only this step to it.
    pub fn accept_volume(
        &mut self,
        now: Instant,
        read: ReadVolume,
    ) -> Result<ImportReport, MediumError> {
        let ReadVolume {
            info,
            headers,
            manifests,
            receipts,
            mut report,
        } = read;
        let span = tracing::info_span!("import", source = %info.source, volume = info.index + 1, of = info.count);
        let _enter = span.enter();
        if let Some(receipts) = receipts {
            self.apply_receipts(info.source, receipts, &mut report)?;
        }
        for header in headers.into_values() {
            self.take_from_medium(now, info.source, header, &manifests, &mut report)?;
        }
        // Chunks of incomplete bundles and their pending records are
        // durable too: the next volume completes what this one began.
        self.store.sync()?;
        Ok(report)
    }
}

impl<S: Store> Engine<S> {
    /// Takes a bundle read from a volume: into custody when every chunk is
    /// here, else remembered as pending (its manifest stored) for the next
    /// volume or trip.
    fn take_from_medium(
        &mut self,
        now: Instant,
        from: NodeId,
        header: BundleHeader,
        manifests: &BTreeMap<ManifestId, Manifest>,
        report: &mut ImportReport,
    ) -> Result<(), MediumError> {
        let id = header.id;
        let pending = pending_key(id);
        if self.bundles.contains_key(&id) {
            report.already_held.push(id);
            if self.store.get(Cf::Peers, &pending)?.is_some() {
                let mut batch = Batch::new();
                batch.delete(Cf::Peers, pending);
                self.store.write(&batch)?;
            }
            return Ok(());
        }
        let refuse = |engine: &mut Self, report: &mut ImportReport, reason: Reason, why: String| {
            tracing::warn!(bundle = %id, %why, "bundle from medium refused");
            engine
                .events
                .push_back(Event::CustodyRefused { bundle: id, reason });
            report.refused.push((id, why));
        };
        if header.expires_at() <= now {
            refuse(
                self,
                report,
                Reason::Expired,
                "its lifetime has ended".into(),
            );
            return Ok(());
        }
        if header.hop_count >= self.config.max_hops {
            refuse(
                self,
                report,
                Reason::HopLimit,
                format!("it crossed {} hops", header.hop_count),
            );
            return Ok(());
        }
        let Some(manifest) = manifests.get(&header.manifest) else {
            report.no_manifest.push(id);
            return Ok(());
        };
        if manifest.total_length() != header.payload_len
            || manifest.encoded_len() as u64 != u64::from(header.manifest_len)
        {
            refuse(
                self,
                report,
                Reason::Unauthorised,
                "its manifest disagrees with its header".into(),
            );
            return Ok(());
        }
        let mut missing = 0u64;
        for entry in manifest.entries() {
            match self.store.chunk_len(entry.id)? {
                Some(len) if len == entry.len => {}
                Some(len) => {
                    let detail = format!(
                        "its manifest gives chunk {} {} bytes; that chunk has {len}",
                        entry.id, entry.len
                    );
                    refuse(self, report, Reason::Unauthorised, detail);
                    return Ok(());
                }
                None => missing += 1,
            }
        }
        if self.store.get_manifest(header.manifest)?.is_none() {
            self.store.put_manifest(manifest)?;
        }
        if missing > 0 {
            let value = PendingProto {
                header: Some(header.to_proto()),
                from: from.0.to_vec(),
            }
            .encode_to_vec();
            if self.store.get(Cf::Peers, &pending)?.as_deref() != Some(&value[..]) {
                let mut batch = Batch::new();
                batch.put(Cf::Peers, pending, value);
                self.store.write(&batch)?;
            }
            report.incomplete.push((id, missing));
            return Ok(());
        }
        let mut header = header;
        header.hop_count += 1;
        let (mut hops, local) = self.config.plan(
            &header.destination,
            now,
            header.payload_len,
            header.expires_at(),
        );
        hops.remove(&from);
        let record = BundleRecord {
            header,
            custody_from: Some(from),
            pending_hops: hops,
            delivered: local,
        };
        let mut batch = Batch::new();
        batch.put(Cf::Bundles, id.to_key().to_vec(), record.encode());
        batch.delete(Cf::Peers, pending);
        match self.store.write_synced(&batch) {
            Ok(()) => {}
            Err(e @ StoreError::Full { .. }) => {
                refuse(self, report, Reason::DepletedStorage, e.to_string());
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(bundle = %id, %from, delivered = local, "custody taken from medium");
        self.events.push_back(Event::CustodyAccepted {
            bundle: id,
            from: Some(from),
        });
        if local {
            self.events.push_back(Event::Delivered {
                bundle: id,
                manifest: record.header.manifest,
            });
            report.delivered.push((id, record.header.manifest));
        }
        // A transfer of it begun on a link is moot now.
        self.inbound.remove(&id);
        report.accepted.push(id);
        self.index(record);
        self.offer_to_all(now, id);
        Ok(())
    }

    /// Receipts from `site`: release custody of the bundles it holds, and
    /// remember what it holds for the next export.
    fn apply_receipts(
        &mut self,
        site: NodeId,
        receipts: ReceiptsProto,
        report: &mut ImportReport,
    ) -> Result<(), MediumError> {
        let mut ids = Vec::new();
        for range in &receipts.held {
            let Some(source) = NodeId::from_slice(&range.source) else {
                continue;
            };
            if range.first > range.last {
                continue;
            }
            ids.extend(
                self.by_sequence
                    .range((source, range.first)..=(source, range.last))
                    .map(|(_, id)| *id),
            );
        }
        for id in ids {
            if self
                .bundles
                .get(&id)
                .is_some_and(|r| r.pending_hops.contains(&site))
            {
                self.hop_accepted(id, site, None);
                report.released.push(id);
            }
        }
        let key = inventory_key(site);
        let newer = match self.store.get(Cf::Peers, &key)? {
            Some(old) => ReceiptsProto::decode(old.as_slice())
                .map_or(true, |old| old.created_ms <= receipts.created_ms),
            None => true,
        };
        if newer {
            let value = receipts.encode_to_vec();
            if self.store.get(Cf::Peers, &key)?.as_deref() != Some(&value[..]) {
                let mut batch = Batch::new();
                batch.put(Cf::Peers, key, value);
                self.store.write_synced(&batch)?;
            }
        }
        tracing::info!(%site, released = report.released.len(), "receipts imported");
        Ok(())
    }

    /// Writes receipts to `out`: a custody signal for every bundle this node
    /// holds (so a lost medium loses nothing: the next receipts repeat it),
    /// and what it holds (whole manifests, and the chunks of bundles partly
    /// imported), so the next export leaves that out.
    pub fn export_receipts<W: Write>(
        &self,
        now: Instant,
        out: W,
    ) -> Result<ReceiptsSummary, MediumError> {
        let me = self.config.node;
        let mut by_source: BTreeMap<NodeId, BTreeSet<u64>> = BTreeMap::new();
        let mut manifests = BTreeSet::new();
        for record in self.bundles.values() {
            let id = record.header.id;
            if id.source != me {
                by_source.entry(id.source).or_default().insert(id.sequence);
            }
            manifests.insert(record.header.manifest);
        }
        let mut chunks = BTreeSet::new();
        for (_, value) in self.store.scan_prefix(Cf::Peers, PENDING_PREFIX)? {
            let Some(header) = PendingProto::decode(value.as_slice())
                .ok()
                .and_then(|p| p.header)
                .and_then(|h| BundleHeader::from_proto(&h))
            else {
                continue;
            };
            if let Some(manifest) = self.store.get_manifest(header.manifest)? {
                for entry in manifest.entries() {
                    if self.store.has_chunk(entry.id)? {
                        chunks.insert(entry.id);
                    }
                }
            }
        }
        let held: Vec<v1::SequenceRange> = by_source
            .iter()
            .flat_map(|(source, seqs)| sequence_ranges(*source, seqs, None))
            .collect();
        let receipts = ReceiptsProto {
            node: me.0.to_vec(),
            member_of: self.config.member_of.iter().cloned().collect(),
            created_ms: now.as_millis(),
            held,
            manifests: manifests.iter().map(|m| m.as_bytes().to_vec()).collect(),
            chunks: chunks.iter().flat_map(|c| c.as_bytes().to_vec()).collect(),
        };
        let mut seed = me.0.to_vec();
        seed.extend_from_slice(&now.0.to_be_bytes());
        let mut export_id = [0u8; 16];
        export_id.copy_from_slice(&ChunkId::of(&seed).as_bytes()[..16]);
        let header = VolumeHeaderProto {
            source: me.0.to_vec(),
            target: Some(Endpoint::Group(RECEIPTS_TARGET.into()).to_proto()),
            export_id: export_id.to_vec(),
            index: 0,
            count: 1,
            created_ms: now.as_millis(),
            contents: 2,
        };
        let mut writer = RecordWriter::start(out, &header)?;
        writer.record(RecordKind::Receipts, &receipts.encode_to_vec())?;
        let (_, bytes) = writer.finish()?;
        Ok(ReceiptsSummary {
            bundles: by_source.values().map(|s| s.len() as u64).sum(),
            manifests: manifests.len() as u64,
            chunks: chunks.len() as u64,
            bytes,
        })
    }
}

/// A bundle header record, validated.
fn decode_header(payload: &[u8]) -> Result<BundleHeader, String> {
    let proto = v1::BundleHeader::decode(payload).map_err(|e| format!("unreadable: {e}"))?;
    proto.validate().map_err(|e| format!("invalid: {e}"))?;
    let header = BundleHeader::from_proto(&proto).ok_or("invalid header")?;
    if !super::manifest_len_ok(header.manifest_len.into()) {
        return Err(format!("a manifest of {} bytes", header.manifest_len));
    }
    Ok(header)
}

/// The headers a bundles-like record names, each from the record of the
/// held bundle it repeats.
fn resolve_likes<S: Store>(store: &S, payload: &[u8]) -> Vec<Result<BundleHeader, String>> {
    let batch = match BundlesLikeProto::decode(payload) {
        Ok(batch) => batch,
        Err(e) => return vec![Err(format!("unreadable: {e}"))],
    };
    let Some(source) = NodeId::from_slice(&batch.source) else {
        return vec![Err("the source is not a node id".into())];
    };
    batch
            .entries
            .iter()
            .map(|entry| {
                let prefix = [&source.0[..], &entry.like.to_be_bytes()[..]].concat();
                let like = store
                    .scan_prefix(Cf::Bundles, &prefix)
                    .ok()
                    .and_then(|records| records.into_iter().next())
                    .and_then(|(_, value)| BundleRecord::decode(&value))
                    .ok_or_else(|| {
                        format!(
                            "bundle {source}/{} repeats bundle {source}/{}, which this node does not hold",
                            entry.sequence, entry.like
                        )
                    })?;
                let mut header = like.header.clone();
                header.id = BundleId {
                    source,
                    created_ms: entry.created_ms,
                    sequence: entry.sequence,
                };
                header.hop_count = entry.hop_count;
                Ok(header)
            })
            .collect()
}
/// A volume read, every record verified and its chunks stored (not yet
/// synced): what remains is [`Engine::accept_volume`].
#[derive(Debug)]
pub struct ReadVolume {
    info: VolumeInfo,
    headers: BTreeMap<BundleId, BundleHeader>,
    manifests: BTreeMap<ManifestId, Manifest>,
    receipts: Option<ReceiptsProto>,
    report: ImportReport,
}

impl ReadVolume {
    pub fn info(&self) -> &VolumeInfo {
        &self.info
    }
}

/// Reads the volume in `input` for node `me`: checks its header (refusing a
/// volume for another node, from `me`, or of another format before
/// anything is stored), verifies every record, stores the chunks its
/// bundles need into `store`, and reports each record it rejects. Only
/// reads and writes `store`, so a driver may run it away from the engine.
pub fn read_volume<S: Store>(
    store: &mut S,
    me: NodeId,
    mut input: impl Read,
) -> Result<ReadVolume, MediumError> {
    let (info, header_check, header_bytes) = open_volume(&mut input)?;
    if info.source == me {
        return Err(MediumError::OwnVolume);
    }
    if info.contents == Contents::Bundles
        && let Endpoint::Node(node) = info.target
        && node != me
    {
        return Err(MediumError::WrongTarget {
            target: info.target.clone(),
            node: me,
        });
    }
    let span = tracing::info_span!("read_volume", source = %info.source, volume = info.index + 1, of = info.count);
    let _enter = span.enter();
    let mut report = ImportReport {
        volume: Some(info.clone()),
        records: 1,
        ..Default::default()
    };
    let mut offset = header_bytes;
    // The trailer's digest covers every record before it, the header first.
    let mut checks: Vec<u8> = header_check.to_vec();
    let mut headers: BTreeMap<BundleId, BundleHeader> = BTreeMap::new();
    // Manifests the volume's bundles name.
    let mut named: BTreeSet<ManifestId> = BTreeSet::new();
    let mut manifests: BTreeMap<ManifestId, Manifest> = BTreeMap::new();
    // Chunks the volume's bundles need: id → length.
    let mut wanted: BTreeMap<ChunkId, u32> = BTreeMap::new();
    let mut receipts: Option<ReceiptsProto> = None;
    let mut trailer_seen = false;
    let mut index: u64 = 1;
    loop {
        let at = offset;
        let read = read_record(&mut input);
        let (kind, kind_byte, payload, check_ok, check) = match read {
            Read1::End => {
                if !trailer_seen {
                    report.truncated = true;
                    report.problems.push(Problem {
                            record: index,
                            offset: at,
                            kind: "trailer",
                            reason: "the volume ends without its trailer: truncated; the whole records before were kept".into(),
                        });
                }
                break;
            }
            Read1::Truncated(detail) => {
                report.truncated = true;
                report.problems.push(Problem {
                    record: index,
                    offset: at,
                    kind: "?",
                    reason: format!("truncated ({detail}); the whole records before were kept"),
                });
                break;
            }
            Read1::Lost(detail) => {
                report.problems.push(Problem {
                        record: index,
                        offset: at,
                        kind: "?",
                        reason: format!("framing lost ({detail}); the rest of the volume is unreadable, the records before were kept"),
                    });
                break;
            }
            Read1::Record {
                kind,
                kind_byte,
                payload,
                check_ok,
                check,
            } => (kind, kind_byte, payload, check_ok, check),
        };
        offset += record_len(payload.len() as u64);
        let this = index;
        index += 1;
        if trailer_seen {
            report.problems.push(Problem {
                record: this,
                offset: at,
                kind: kind.map_or("?", RecordKind::name),
                reason: "record after the trailer: ignored".into(),
            });
            continue;
        }
        if kind != Some(RecordKind::Trailer) {
            checks.extend_from_slice(&check);
        }
        let problem = |reason: String| Problem {
            record: this,
            offset: at,
            kind: kind.map_or("?", RecordKind::name),
            reason,
        };
        let Some(kind) = kind else {
            report.problems.push(problem(format!(
                "unknown record kind {kind_byte} (written by a newer ferry?): skipped"
            )));
            continue;
        };
        if !check_ok {
            report.problems.push(problem(
                "BLAKE3 does not match the bytes (damaged or tampered): rejected".into(),
            ));
            continue;
        }
        report.records += 1;
        match kind {
            RecordKind::Volume => {
                report
                    .problems
                    .push(problem("a second volume header: ignored".into()));
            }
            RecordKind::Bundle | RecordKind::BundlesLike => {
                let found: Vec<Result<BundleHeader, String>> = if kind == RecordKind::Bundle {
                    vec![decode_header(&payload)]
                } else {
                    resolve_likes(&*store, &payload)
                };
                for header in found {
                    match header {
                        Ok(header) => {
                            // The manifest may already be here (an earlier
                            // trip, or the target held it).
                            if !manifests.contains_key(&header.manifest)
                                && let Ok(Some(m)) = store.get_manifest(header.manifest)
                            {
                                for e in m.entries() {
                                    wanted.insert(e.id, e.len);
                                }
                                manifests.insert(header.manifest, m);
                            }
                            named.insert(header.manifest);
                            headers.insert(header.id, header);
                        }
                        Err(e) => report.problems.push(problem(format!("{e}; rejected"))),
                    }
                }
            }
            RecordKind::Manifest | RecordKind::ManifestDelta => {
                let decoded = if kind == RecordKind::Manifest {
                    let id = ManifestId(check);
                    Manifest::decode(&payload)
                        .map(|m| (id, m))
                        .map_err(|e| format!("manifest {id} is unreadable: {e}; rejected"))
                } else {
                    let store = &*store;
                    undelta(&payload, |base| {
                        manifests
                            .get(&base)
                            .cloned()
                            .or_else(|| store.get_manifest(base).ok().flatten())
                    })
                    .map_err(|e| format!("{e}; rejected"))
                };
                let (id, decoded) = match decoded {
                    Ok(found) => found,
                    Err(e) => {
                        report.problems.push(problem(e));
                        continue;
                    }
                };
                if !named.contains(&id) {
                    report.problems.push(problem(format!(
                        "manifest {id} is named by no bundle in this volume: skipped"
                    )));
                    continue;
                }
                match Ok::<_, String>(decoded) {
                    Ok(m) if m.entries().iter().all(|e| e.len <= MAX_CHUNK_LEN) => {
                        for e in m.entries() {
                            wanted.insert(e.id, e.len);
                        }
                        manifests.insert(id, m);
                    }
                    Ok(_) => report.problems.push(problem(format!(
                        "manifest {id} names an oversized chunk: rejected"
                    ))),
                    Err(e) => report.problems.push(problem(e)),
                }
            }
            RecordKind::Chunk => {
                let id = ChunkId(check);
                match wanted.get(&id) {
                    None => report.problems.push(problem(format!(
                        "chunk {id} is named by no manifest in this volume: skipped"
                    ))),
                    Some(&len) if len as usize != payload.len() => {
                        report.problems.push(problem(format!(
                            "chunk {id} is {} bytes, its manifest says {len}: rejected",
                            payload.len()
                        )))
                    }
                    Some(_) => match store.put_chunk(id, &payload) {
                        Ok(crate::store::PutOutcome::Stored) => {
                            report.chunks_stored += 1;
                            report.bytes_stored += payload.len() as u64;
                        }
                        Ok(crate::store::PutOutcome::AlreadyPresent) => report.chunks_present += 1,
                        Err(e) => report
                            .problems
                            .push(problem(format!("chunk {id} not stored: {e}"))),
                    },
                }
            }
            RecordKind::Trailer => {
                trailer_seen = true;
                let expected = ChunkId::of(&checks);
                match TrailerProto::decode(payload.as_slice()) {
                        Ok(t) if t.records == this && t.digest == expected.as_bytes() => {}
                        Ok(t) => report.problems.push(problem(format!(
                            "the trailer counts {} records and a digest that the records read do not match: records were lost, added or changed",
                            t.records
                        ))),
                        Err(e) => report.problems.push(problem(format!("unreadable: {e}"))),
                    }
            }
            RecordKind::Receipts => {
                if info.contents != Contents::Receipts {
                    report.problems.push(problem(
                        "receipts inside a volume of bundles: ignored".into(),
                    ));
                    continue;
                }
                match ReceiptsProto::decode(payload.as_slice()) {
                    Ok(r) if r.node == info.source.0 => receipts = Some(r),
                    Ok(_) => report.problems.push(problem(
                        "receipts of another node than the volume's source: rejected".into(),
                    )),
                    Err(e) => report
                        .problems
                        .push(problem(format!("unreadable: {e}; rejected"))),
                }
            }
        }
    }
    for problem in &report.problems {
        tracing::warn!(record = problem.record, offset = problem.offset, kind = problem.kind, reason = %problem.reason, "volume record rejected");
    }
    Ok(ReadVolume {
        info,
        headers,
        manifests,
        receipts,
        report,
    })
}
