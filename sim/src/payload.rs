//! Putting payloads into a node's store, as an application does before it
//! submits a bundle.

use ferry_chunk::{Chunker, ManifestBuilder, ManifestId};
use ferry_core::{Store, StoreError};

/// Chunks `data` into `store` and records its manifest, durably.
pub fn put_object(
    store: &mut impl Store,
    chunker: &Chunker,
    data: &[u8],
) -> Result<ManifestId, StoreError> {
    let mut builder = ManifestBuilder::new();
    for span in chunker.chunk_slice(data) {
        let bytes = &data[span.offset as usize..span.end() as usize];
        store.put_chunk(span.id, bytes)?;
        builder
            .push(span, bytes)
            .expect("the chunker yields spans in order");
    }
    let manifest = store.put_manifest(&builder.finish())?;
    store.sync()?;
    Ok(manifest)
}
