//! Boundary stability under edits, and refusal of corrupted chunks and wrong
//! native digests by the reassembler.

mod common;

use std::collections::HashSet;

use common::random_bytes;
use ferry_chunk::{
    ChunkId, Chunker, GitHash, GitObjectType, Manifest, ManifestBuilder, ManifestEntry,
    NativeDigest, Reassembler, ReassemblyError, reassemble,
};

fn chunk_object(data: &[u8], builder: ManifestBuilder) -> Manifest {
    let mut builder = builder;
    for span in Chunker::default().chunk_slice(data) {
        builder
            .push(span, &data[span.offset as usize..span.end() as usize])
            .unwrap();
    }
    builder.finish()
}

fn chunk_bytes<'a>(manifest: &Manifest, data: &'a [u8]) -> Vec<&'a [u8]> {
    manifest
        .spans()
        .map(|span| &data[span.offset as usize..span.end() as usize])
        .collect()
}

#[test]
fn an_insertion_near_the_start_keeps_most_chunk_ids() {
    let seed = 0x5ab1e;
    let original = random_bytes(seed, 8 << 20);
    let chunker = Chunker::default();
    let before: HashSet<ChunkId> = chunker
        .chunk_slice(&original)
        .iter()
        .map(|span| span.id)
        .collect();
    for (at, inserted) in [
        (1000usize, &b"ferry"[..]),
        (100_000, &b"x"[..]),
        (5, &[0u8; 17][..]),
    ] {
        let mut edited = original.clone();
        edited.splice(at..at, inserted.iter().copied());
        let after: Vec<ChunkId> = chunker
            .chunk_slice(&edited)
            .iter()
            .map(|span| span.id)
            .collect();
        let shared = after.iter().filter(|id| before.contains(id)).count();
        let percent = 100.0 * shared as f64 / after.len() as f64;
        println!(
            "inserting {} bytes at {at}: {shared} of {} chunk ids shared ({percent:.2} %)",
            inserted.len(),
            after.len()
        );
        assert!(
            percent >= 90.0,
            "only {percent:.2} % of chunk ids shared (seed {seed:#x}, insertion at {at})"
        );
    }
}

#[test]
fn a_corrupted_chunk_is_refused_with_its_index() {
    let seed = 0xbad;
    let data = random_bytes(seed, 300_000);
    let manifest = chunk_object(&data, ManifestBuilder::new().computing_sha256());
    assert!(manifest.chunk_count() >= 4, "seed {seed:#x}");
    let chunks = chunk_bytes(&manifest, &data);
    let bad = 2;

    let mut out = Vec::new();
    let mut reassembler = Reassembler::new(&manifest, &mut out);
    for chunk in &chunks[..bad] {
        reassembler.push(chunk).unwrap();
    }
    let mut corrupted = chunks[bad].to_vec();
    corrupted[17] ^= 1;
    match reassembler.push(&corrupted) {
        Err(ReassemblyError::IdMismatch {
            index,
            expected,
            found,
        }) => {
            assert_eq!(index, bad);
            assert_eq!(expected, manifest.entries()[bad].id);
            assert_eq!(found, ChunkId::of(&corrupted));
        }
        other => panic!("corrupted chunk accepted or wrong error: {other:?} (seed {seed:#x})"),
    }
    // A truncated chunk is refused on its length.
    let err = reassembler.push(&chunks[bad][1..]).unwrap_err();
    assert!(
        matches!(err, ReassemblyError::LengthMismatch { index: 2, .. }),
        "{err}"
    );
    assert_eq!(err.chunk_index(), Some(bad));
    // Nothing of the refused chunks was written, and the right chunk is still accepted.
    assert_eq!(
        reassembler.bytes_written(),
        chunks[..bad].iter().map(|c| c.len() as u64).sum::<u64>()
    );
    for chunk in &chunks[bad..] {
        reassembler.push(chunk).unwrap();
    }
    reassembler.finish().unwrap();
    assert!(out == data, "seed {seed:#x}");

    // The same through `reassemble`, with a store that returns a corrupted chunk.
    let err = reassemble(
        &manifest,
        |id| {
            let index = manifest.entries().iter().position(|e| e.id == id).unwrap();
            let mut chunk = chunks[index].to_vec();
            if index == 3 {
                chunk[0] ^= 0x80;
            }
            Ok::<_, std::io::Error>(chunk)
        },
        std::io::sink(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ReassemblyError::IdMismatch { index: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().starts_with("chunk 3 hashes to "), "{err}");
}

#[test]
fn a_fetch_failure_names_the_chunk() {
    let data = random_bytes(7, 100_000);
    let manifest = chunk_object(&data, ManifestBuilder::new());
    let err = reassemble(&manifest, |_| Err("store offline"), std::io::sink()).unwrap_err();
    assert!(
        matches!(
            err,
            ReassemblyError::Fetch {
                index: 0,
                source: "store offline",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_wrong_native_digest_is_refused_at_finish() {
    let seed = 0xd16e57;
    let data = random_bytes(seed, 200_000);
    let right = chunk_object(&data, ManifestBuilder::new().computing_sha256());
    let mut wrong_value = [0u8; 32];
    wrong_value.copy_from_slice(right.native_digest().unwrap().value());
    wrong_value[0] ^= 1;
    let git_id = NativeDigest::git_sha1_of(GitObjectType::Blob, &data);
    let NativeDigest::Git {
        algorithm: GitHash::Sha1(git_value),
        ..
    } = git_id
    else {
        unreachable!()
    };

    let wrong_digests = [
        NativeDigest::Sha256(wrong_value),
        // The right hash, but as the wrong Git object type.
        NativeDigest::Git {
            algorithm: GitHash::Sha1(git_value),
            object_type: GitObjectType::Tree,
        },
    ];
    for wrong in wrong_digests {
        let manifest = right.clone().with_native_digest(wrong);
        let mut reassembler = Reassembler::new(&manifest, Vec::new());
        for chunk in chunk_bytes(&manifest, &data) {
            reassembler.push(chunk).unwrap();
        }
        match reassembler.finish() {
            Err(ReassemblyError::DigestMismatch { expected, found }) => {
                assert_eq!(expected, wrong);
                assert_ne!(found, wrong);
            }
            other => {
                panic!("wrong digest {wrong} accepted or wrong error: {other:?} (seed {seed:#x})")
            }
        }
    }
    // The right Git object id is accepted.
    let manifest = right.clone().with_native_digest(git_id);
    let mut out = Vec::new();
    reassemble(
        &manifest,
        |id| Ok::<_, ()>(data[offset_of(&manifest, id)].to_vec()),
        &mut out,
    )
    .unwrap();
    assert!(out == data);
}

fn offset_of(manifest: &Manifest, id: ChunkId) -> std::ops::Range<usize> {
    let span = manifest.spans().find(|span| span.id == id).unwrap();
    span.offset as usize..span.end() as usize
}

#[test]
fn missing_and_extra_chunks_are_refused() {
    let chunks: [&[u8]; 2] = [b"first chunk", b"second"];
    let entries = chunks
        .iter()
        .map(|c| ManifestEntry {
            id: ChunkId::of(c),
            len: c.len() as u32,
        })
        .collect();
    let manifest = Manifest::new(entries).unwrap();

    let mut reassembler = Reassembler::new(&manifest, Vec::new());
    reassembler.push(chunks[0]).unwrap();
    assert!(matches!(
        reassembler.finish(),
        Err(ReassemblyError::MissingChunks {
            pushed: 1,
            count: 2
        })
    ));

    let mut reassembler = Reassembler::new(&manifest, Vec::new());
    reassembler.push(chunks[0]).unwrap();
    reassembler.push(chunks[1]).unwrap();
    assert!(matches!(
        reassembler.push(chunks[1]),
        Err(ReassemblyError::TooManyChunks { count: 2 })
    ));
    assert_eq!(reassembler.finish().unwrap(), b"first chunksecond");
}

#[test]
fn a_failed_write_poisons_the_reassembler() {
    struct Full;
    impl std::io::Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let chunk = b"some bytes";
    let manifest = Manifest::new(vec![ManifestEntry {
        id: ChunkId::of(chunk),
        len: chunk.len() as u32,
    }])
    .unwrap();
    let mut reassembler = Reassembler::new(&manifest, Full);
    assert!(matches!(
        reassembler.push(chunk),
        Err(ReassemblyError::Write(_))
    ));
    assert!(matches!(
        reassembler.push(chunk),
        Err(ReassemblyError::Poisoned)
    ));
    assert!(matches!(
        reassembler.finish(),
        Err(ReassemblyError::Poisoned)
    ));
}
