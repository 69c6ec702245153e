//! Target `manifest`: ferry-chunk's `Manifest::decode` (manifests arrive
//! inline in offers, as pieces, and on volumes) and ferry-core's bundle
//! header and record decoding.

use ferry_chunk::{Manifest, ManifestId};
use ferry_core::{BundleHeader, BundleRecord};
use ferry_proto::{Validate, v1};
use prost::Message as _;

pub fn manifest(data: &[u8]) {
    if let Ok(m) = Manifest::decode(data) {
        // Only the canonical encoding is accepted, so the id is the hash of
        // the bytes that arrived.
        assert_eq!(m.encode(), data);
        assert_eq!(m.encoded_len(), data.len());
        assert_eq!(m.id(), ManifestId::of_encoding(data));
        let sum: u64 = m.entries().iter().map(|e| u64::from(e.len)).sum();
        assert_eq!(sum, m.total_length());
        assert!(m.entries().iter().all(|e| e.len > 0));
        let spans: Vec<_> = m.spans().collect();
        assert_eq!(spans.len(), m.chunk_count());
        if let Some(last) = spans.last() {
            assert_eq!(last.offset + u64::from(last.len), m.total_length());
        }
        assert_eq!(Manifest::from_proto(m.to_proto()).as_ref(), Ok(&m));
    }

    // A bundle header as a volume or an offer carries it.
    if let Ok(proto) = v1::BundleHeader::decode(data)
        && proto.validate().is_ok()
    {
        let header = BundleHeader::from_proto(&proto).expect("a valid header converts");
        assert!(header.release.len() <= ferry_proto::MAX_RELEASE_LEN);
        let _ = header.expires_at();
        crate::frame::header_round_trips(&header);
    }

    // A custody record read back from a store.
    if let Some(record) = BundleRecord::decode(data) {
        let again = BundleRecord::decode(&record.encode());
        assert_eq!(again.as_ref(), Some(&record));
    }
}
