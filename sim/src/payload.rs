//! Putting payloads into a node's store, as an application does before it
//! submits a bundle.

use ferry_chunk::{ChunkSpan, Chunker, ManifestBuilder, ManifestId};
use ferry_core::{Store, StoreError};

/// Chunks `data` into `store` and records its manifest, durably.
pub fn put_object(
    store: &mut impl Store,
    chunker: &Chunker,
    data: &[u8],
) -> Result<ManifestId, StoreError> {
    put_spans(store, &chunker.chunk_slice(data), data)
}

/// Puts `data`, already cut into `spans`, into `store` with its manifest,
/// durably: one chunking serves many stores.
pub fn put_spans(
    store: &mut impl Store,
    spans: &[ChunkSpan],
    data: &[u8],
) -> Result<ManifestId, StoreError> {
    let mut builder = ManifestBuilder::new();
    for span in spans {
        let bytes = &data[span.offset as usize..span.end() as usize];
        store.put_chunk(span.id, bytes)?;
        builder
            .push(*span, bytes)
            .expect("the chunker yields spans in order");
    }
    let manifest = store.put_manifest(&builder.finish())?;
    store.sync()?;
    Ok(manifest)
}
