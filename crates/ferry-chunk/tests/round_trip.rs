//! Property tests: chunk → manifest → encode/decode → reassemble gives back
//! the input; streaming, parallel and serial chunking agree; manifest
//! decoding never panics.

mod common;

use std::collections::HashMap;

use common::{ShortReads, serial_fastcdc, test_data};
use ferry_chunk::{
    ChunkId, Chunker, ChunkerConfig, GitObjectType, Manifest, ManifestBuilder, NativeDigest,
    reassemble,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

fn config() -> impl Strategy<Value = ChunkerConfig> {
    prop_oneof![
        Just(ChunkerConfig::DEFAULT),
        Just(ChunkerConfig::new(64, 256, 1024).unwrap()),
        (32u32..=1024, 0u32..2048, 0u32..4096).prop_map(|(min, extra_avg, extra_max)| {
            let min_size = 2 * min;
            let avg_size = min_size.max(256) + 2 * extra_avg;
            let max_size = avg_size.max(1024) + 2 * extra_max;
            ChunkerConfig::new(min_size, avg_size, max_size).unwrap()
        }),
    ]
}

fn fixed(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x0066_6572_7279),
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(fixed(128))]

    #[test]
    fn chunk_encode_decode_reassemble_round_trips(
        config in config(),
        kind in 0u8..4,
        seed in any::<u64>(),
        len in 0usize..300_000,
        digest in 0u8..3,
    ) {
        let data = test_data(kind, seed, len);
        let chunker = Chunker::new(config).unwrap();
        let mut builder = match digest {
            0 => ManifestBuilder::new(),
            1 => ManifestBuilder::new().computing_sha256(),
            _ => ManifestBuilder::new().native_digest(NativeDigest::git_sha1_of(GitObjectType::Blob, &data)),
        }
        .media_type("application/octet-stream");
        let mut store = HashMap::new();
        let stats = chunker
            .chunk_reader(&data[..], |span, bytes| {
                store.insert(span.id, bytes.to_vec());
                builder.push(span, bytes)
            })
            .unwrap();
        prop_assert_eq!(stats.bytes, len as u64);
        let manifest = builder.finish();
        prop_assert_eq!(manifest.total_length(), len as u64);
        prop_assert_eq!(manifest.chunk_count() as u64, stats.chunks);

        let encoded = manifest.encode();
        let decoded = Manifest::decode(&encoded).unwrap();
        prop_assert_eq!(&decoded, &manifest);
        prop_assert_eq!(decoded.id(), manifest.id());

        let mut out = Vec::new();
        reassemble(&decoded, |id: ChunkId| store.get(&id).cloned().ok_or("missing chunk"), &mut out).unwrap();
        prop_assert!(out == data, "reassembled object differs (seed {})", seed);
    }

    #[test]
    fn short_reads_give_the_same_spans_as_chunk_slice_and_serial_fastcdc(
        config in config(),
        kind in 0u8..4,
        seed in any::<u64>(),
        len in 0usize..300_000,
        max_read in 1usize..100_000,
    ) {
        let data = test_data(kind, seed, len);
        let chunker = Chunker::new(config).unwrap();
        let sliced = chunker.chunk_slice(&data);
        let mut streamed = Vec::new();
        chunker
            .chunk_reader(ShortReads::new(&data, seed, max_read), |span, bytes| {
                assert_eq!(span.id, ChunkId::of(bytes), "seed {seed}");
                streamed.push(span);
                Ok::<_, ()>(())
            })
            .unwrap();
        prop_assert_eq!(&streamed, &sliced);
        let boundaries: Vec<(u64, u32)> = sliced.iter().map(|s| (s.offset, s.len)).collect();
        prop_assert_eq!(boundaries, serial_fastcdc(&data, config));
    }
}

proptest! {
    #![proptest_config(fixed(4096))]

    #[test]
    fn manifest_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(manifest) = Manifest::decode(&bytes) {
            // Whatever decodes is canonical and consistent.
            prop_assert_eq!(manifest.encode(), bytes);
            prop_assert_eq!(manifest.spans().map(|s| u64::from(s.len)).sum::<u64>(), manifest.total_length());
        }
    }

    #[test]
    fn mutated_manifests_never_panic(seed in any::<u64>(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let data = test_data(0, seed, 50_000);
        let chunker = Chunker::new(ChunkerConfig::new(256, 1024, 4096).unwrap()).unwrap();
        let mut builder = ManifestBuilder::new().computing_sha256();
        for span in chunker.chunk_slice(&data) {
            builder.push(span, &data[span.offset as usize..span.end() as usize]).unwrap();
        }
        let mut bytes = builder.finish().encode();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        let _ = Manifest::decode(&bytes);
    }
}
