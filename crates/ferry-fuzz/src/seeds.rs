//! Seed inputs for every target, made with the real encoders (and, for the
//! engine and volumes, by real engines), so the fuzzer starts from bytes
//! that get past the first checks. `examples/seed_corpus.rs` writes them to
//! `fuzz/corpus/NAME/`.

use std::time::Duration;

use ferry_chunk::{ChunkId, GitObjectType, Manifest, ManifestEntry, NativeDigest};
use ferry_core::LinkId;
use ferry_core::mtu;
use ferry_git::{GitRelease, Oid, PackEncoding, RefUpdate, packcode};
use ferry_link::serial::{CrcKind, Encoder, SerialConfig};
use ferry_oci::media;
use ferry_oci::release::{BlobEntry, TagTarget};
use ferry_oci::{Digest, OciRelease};
use ferry_proto::FrameCodec;
use ferry_proto::v1::{self, frame::Body};
use prost::Message as _;

use crate::engine::{self, Op};
use crate::input::chunks;

/// One seed: target, file name, bytes.
pub type Seed = (&'static str, String, Vec<u8>);

pub fn all() -> Vec<Seed> {
    let mut out = Vec::new();
    out.extend(frame());
    out.extend(engine_transcripts());
    out.extend(serial());
    out.extend(manifest());
    out.extend(volume());
    out.extend(oci());
    out.extend(git());
    out.extend(paths());
    out.extend(named("sealed", crate::sealed::seeds()));
    out
}

fn named(target: &'static str, items: Vec<(&str, Vec<u8>)>) -> Vec<Seed> {
    items
        .into_iter()
        .map(|(name, bytes)| (target, format!("seed-{name}"), bytes))
        .collect()
}

fn sample_manifest() -> Manifest {
    let entries = (0..3u8)
        .map(|i| ManifestEntry {
            id: ChunkId::of(&[i; 10]),
            len: 10 + u32::from(i),
        })
        .collect();
    Manifest::new(entries)
        .expect("no empty chunk")
        .with_native_digest(NativeDigest::git_sha1_of(GitObjectType::Blob, b"x"))
        .with_media_type("application/octet-stream")
}

fn header(manifest: &Manifest, group: bool) -> v1::BundleHeader {
    v1::BundleHeader {
        id: Some(v1::BundleId {
            source: vec![2; 32],
            created_ms: 2_000,
            sequence: 3,
        }),
        destination: Some(v1::Endpoint {
            kind: Some(if group {
                v1::endpoint::Kind::Group("fleet".into())
            } else {
                v1::endpoint::Kind::Node(vec![1; 32])
            }),
        }),
        lifetime_ms: 3_600_000,
        priority: v1::Priority::Expedited as i32,
        kind: v1::PayloadKind::Git as i32,
        manifest_id: manifest.id().as_bytes().to_vec(),
        manifest_length: manifest.encoded_len() as u32,
        payload_length: manifest.total_length(),
        report_to: Some(v1::Endpoint {
            kind: Some(v1::endpoint::Kind::Node(vec![2; 32])),
        }),
        release: b"release".to_vec(),
        hop_count: 1,
        signature: vec![9; 80],
    }
}

fn frames() -> Vec<(&'static str, v1::Frame)> {
    let m = sample_manifest();
    let f = |body| v1::Frame { body: Some(body) };
    vec![
        (
            "hello",
            f(Body::Hello(v1::Hello {
                min_version: 1,
                max_version: 1,
                node_id: vec![2; 32],
                capabilities: vec![v1::Capability::PieceRepair as i32, 99],
                max_frame_size: 1400,
                session_nonce: 77,
                agent: "ferry".into(),
                peer_nonce: 5,
                acked: true,
            })),
        ),
        (
            "offer",
            f(Body::Offer(v1::Offer {
                bundles: vec![
                    v1::OfferedBundle {
                        handle: 1,
                        header: Some(header(&m, false)),
                        manifest: Vec::new(),
                    },
                    v1::OfferedBundle {
                        handle: 2,
                        header: Some(v1::BundleHeader {
                            manifest_id: Vec::new(),
                            ..header(&m, true)
                        }),
                        manifest: m.encode(),
                    },
                ],
            })),
        ),
        (
            "want",
            f(Body::Want(v1::WantList {
                handle: 1,
                ranges: vec![v1::IndexRange { start: 0, end: 2 }],
                bitmap: vec![0b101],
                pieces: vec![v1::PieceWant {
                    chunk_index: u32::MAX,
                    ranges: vec![
                        v1::ByteRange {
                            offset: 0,
                            length: 10,
                        },
                        v1::ByteRange {
                            offset: 20,
                            length: 5,
                        },
                    ],
                }],
                complete: false,
                refused: 0,
                report_serial: 2,
                checkpoint_seen: 1,
            })),
        ),
        (
            "chunk",
            f(Body::Chunk(v1::ChunkData {
                handle: 1,
                chunk_index: 0,
                chunk_length: 10,
                offset: 2,
                data: vec![0; 8].into(),
                chunk_id: ChunkId::of(&[0; 10]).as_bytes().to_vec(),
                checkpoint: true,
                checkpoint_serial: 1,
            })),
        ),
        (
            "custody",
            f(Body::Custody(v1::CustodySignal {
                accepted: true,
                reason: 0,
                ranges: (0..6u8)
                    .map(|i| v1::SequenceRange {
                        source: if i % 2 == 0 { vec![i; 32] } else { Vec::new() },
                        first: u64::from(i),
                        last: u64::from(i) * 3,
                    })
                    .collect(),
            })),
        ),
        (
            "refusal",
            f(Body::Custody(v1::CustodySignal {
                accepted: false,
                reason: v1::RefusalReason::DepletedStorage as i32,
                ranges: vec![v1::SequenceRange {
                    source: vec![1; 32],
                    first: 1,
                    last: 1,
                }],
            })),
        ),
        (
            "status",
            f(Body::Status(v1::StatusReport {
                bundle: header(&m, false).id,
                reporter: vec![3; 32],
                ..Default::default()
            })),
        ),
        (
            "keepalive",
            f(Body::Keepalive(v1::Keepalive {
                sequence: 9,
                time_ms: 1,
            })),
        ),
        (
            "close",
            f(Body::Close(v1::Close {
                reason: 1,
                detail: "bye".into(),
            })),
        ),
    ]
}

fn frame() -> Vec<Seed> {
    let codec = FrameCodec::new(ferry_proto::HARD_MAX_FRAME);
    let mut items: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut stream = Vec::new();
    for (name, frame) in frames() {
        let bytes = codec.encode(&frame).expect("a valid frame");
        stream.extend_from_slice(&bytes);
        items.push((name, bytes));
    }
    items.push(("stream", stream));
    // An offer in fragments, as a 32-byte link sends it.
    let offer = codec.encode(&frames()[1].1).expect("a valid frame");
    items.push((
        "fragments",
        mtu::fragment(&offer, 4, 64).expect("fits").concat(),
    ));
    named("frame", items)
}

/// Records what a real peer sends the engine under test, as the engine
/// target's input: the engine is deterministic, so it replays.
fn transcript(selector: u8, limit: usize) -> Vec<u8> {
    let (mut a, mut b) = engine::setup(selector);
    let mut now = engine::START;
    let mut out = vec![selector];
    let link = LinkId(0);
    let mut quiet = 0;
    while out.len() < limit && quiet < 3 {
        let mut moved = false;
        while let Some(t) = a.poll_transmit(now) {
            b.handle_frame(now, link, &t.frame);
            moved = true;
        }
        while let Some(t) = b.poll_transmit(now) {
            out.push(Op::Frame.to_byte());
            out.extend_from_slice(&chunks([t.frame.as_slice()]));
            a.handle_frame(now, link, &t.frame);
            moved = true;
        }
        if !moved {
            quiet += 1;
            let wait = 500u16;
            now = now + Duration::from_millis(u64::from(wait));
            out.push(Op::Wait.to_byte());
            out.extend_from_slice(&wait.to_le_bytes());
            a.handle_timeout(now);
            b.handle_timeout(now);
        } else {
            quiet = 0;
        }
    }
    out
}

fn engine_transcripts() -> Vec<Seed> {
    let mut items = Vec::new();
    // Reliable datagram link, unreliable modem, a stream link.
    for (name, selector) in [("datagram", 6u8), ("modem", 1), ("stream", 7), ("tiny", 0)] {
        items.push((name, transcript(selector, 24 << 10)));
    }
    // A session that bounces in the middle.
    let mut bounced = transcript(6, 2 << 10);
    bounced.push(Op::Bounce.to_byte());
    bounced.extend_from_slice(&transcript(6, 4 << 10)[1..]);
    items.push(("bounce", bounced));
    named("engine", items)
}

fn serial() -> Vec<Seed> {
    let mut items = Vec::new();
    for (name, selector, crc, mtu) in [
        ("crc32-256", 4u8, CrcKind::Crc32, 256usize),
        ("crc16-32", 1, CrcKind::Crc16, 32),
        ("crc32-2048", 8, CrcKind::Crc32, 2048),
    ] {
        let config = SerialConfig {
            crc,
            modem_mtu: mtu,
        };
        let encoder = Encoder::new(config).expect("valid");
        let max = config.max_payload();
        let mut stream = Vec::new();
        for (flags, payload) in [
            (0u8, vec![1u8, 2, 3]),
            (1, vec![0; max]),
            (2, (0..max as u32).map(|i| i as u8).collect()),
            (0, Vec::new()),
        ] {
            stream.extend(encoder.encode(flags, &payload).expect("fits"));
        }
        // A lone delimiter, noise, and a frame cut off.
        stream.extend_from_slice(&[0, 7, 7, 7, 0]);
        let tail = encoder.encode(3, b"cut").expect("fits");
        stream.extend_from_slice(&tail[..tail.len() - 2]);
        let mut input = vec![selector];
        input.extend_from_slice(&5u16.to_le_bytes());
        input.extend(stream);
        items.push((name, input));
    }
    named("serial", items)
}

fn manifest() -> Vec<Seed> {
    let m = sample_manifest();
    let big = Manifest::new(
        (0..40u32)
            .map(|i| ManifestEntry {
                id: ChunkId::of(&i.to_le_bytes()),
                len: 4096 + i,
            })
            .collect(),
    )
    .expect("no empty chunk")
    .with_native_digest(NativeDigest::sha256_of(b"layer"));
    let record = ferry_core::BundleRecord {
        header: ferry_core::BundleHeader::from_proto(&header(&m, true)).expect("valid"),
        custody_from: Some(ferry_core::NodeId([4; 32])),
        pending_hops: [ferry_core::NodeId([5; 32])].into(),
        delivered: true,
    };
    named(
        "manifest",
        vec![
            ("manifest", m.encode()),
            (
                "manifest-plain",
                Manifest::new(Vec::new()).expect("empty").encode(),
            ),
            ("manifest-40", big.encode()),
            ("header", header(&m, false).encode_to_vec()),
            ("record", record.encode()),
        ],
    )
}

fn volume() -> Vec<Seed> {
    let fixture = crate::volume::fixture();
    let mut items = Vec::new();
    for (name, bytes) in &fixture.volumes {
        let mut raw = vec![0u8];
        raw.extend_from_slice(bytes);
        items.push((format!("{name}-raw"), raw));
        items.push((format!("{name}-records"), crate::volume::disassemble(bytes)));
    }
    items
        .into_iter()
        .map(|(name, bytes)| ("volume", format!("seed-{name}"), bytes))
        .collect()
}

fn oci() -> Vec<Seed> {
    let config = media::Descriptor::new(media::OCI_CONFIG, b"{}");
    let layer = media::Descriptor::new(media::OCI_LAYER_GZIP, b"layer");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": config,
        "layers": [layer],
        "annotations": {"a": "b"},
    })
    .to_string();
    let mut child = media::Descriptor::new(media::OCI_MANIFEST, manifest.as_bytes());
    child.platform = Some(serde_json::json!({"architecture": "arm64", "os": "linux"}));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [child],
        "subject": media::Descriptor::new(media::OCI_MANIFEST, b"s"),
    })
    .to_string();
    let docker = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::DOCKER_MANIFEST,
        "config": media::Descriptor::new(media::DOCKER_CONFIG, b"{}"),
        "layers": [media::Descriptor::new(media::DOCKER_LAYER_GZIP, b"l")],
    })
    .to_string();
    let with = |selector: u8, text: &str| {
        let mut out = vec![selector];
        out.extend_from_slice(text.as_bytes());
        out
    };
    let m = Digest::of(manifest.as_bytes());
    let release = OciRelease {
        repository: "fleet/app".into(),
        tags: [(
            "v1.2".to_owned(),
            TagTarget {
                digest: m,
                media_type: media::OCI_MANIFEST.into(),
            },
        )]
        .into(),
        blobs: vec![
            BlobEntry {
                digest: m,
                media_type: media::OCI_MANIFEST.into(),
                size: manifest.len() as u64,
                segment_length: manifest.len() as u64,
                recipe: Vec::new(),
            },
            BlobEntry {
                digest: Digest::of(b"layer"),
                media_type: media::OCI_LAYER_GZIP.into(),
                size: 5,
                segment_length: 900,
                recipe: vec![1, 2, 3],
            },
        ],
    };
    named(
        "oci",
        vec![
            ("manifest", with(1, &manifest)),
            ("index", with(0, &index)),
            ("docker", with(3, &docker)),
            (
                "release",
                with(5, "").into_iter().chain(release.encode()).collect(),
            ),
        ],
    )
}

/// A pack body: two blobs and an `OFS_DELTA` against the first.
fn pack_body() -> (u32, Vec<u8>) {
    let mut body = Vec::new();
    // Type 3 (blob), size 11.
    body.push((3 << 4) | 11);
    body.extend(zlib_bytes(b"hello world"));
    body.push((3 << 4) | 5);
    body.extend(zlib_bytes(b"fleet"));
    // Type 6 (OFS_DELTA), size 7, its base this many bytes back (the first).
    let distance = u8::try_from(body.len()).expect("a short pack");
    body.push((6 << 4) | 7);
    body.push(distance);
    body.extend(zlib_bytes(&[11, 11, 0x91, 0, 5, 1, b'!']));
    (3, body)
}

/// zlib with stored blocks: header, one final stored block, Adler-32.
fn zlib_bytes(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01, 0x01];
    let len = data.len() as u16;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

fn git() -> Vec<Seed> {
    let release = GitRelease {
        repository: "fleet/apps".into(),
        sequence: 7,
        base: Some(5),
        refs: vec![
            RefUpdate {
                name: "refs/heads/main".into(),
                target: Some(Oid([7; 20])),
            },
            RefUpdate {
                name: "refs/tags/v1".into(),
                target: None,
            },
        ],
        prerequisites: vec![Oid([1; 20])],
        objects: 3,
        head: Some("refs/heads/main".into()),
        encoding: PackEncoding::Deflated,
    };
    let mut items = vec![(
        "release",
        [0u8]
            .into_iter()
            .chain(release.encode())
            .collect::<Vec<u8>>(),
    )];
    let (objects, body) = pack_body();
    if let Ok(encoded) = packcode::encode(&body, objects, &[]) {
        let mut input = vec![1u8];
        input.extend_from_slice(&objects.to_le_bytes());
        input.extend(encoded);
        items.push(("pack", input));
    }
    for (name, method, path, query, protocol) in [
        (
            "info-refs",
            0u8,
            "/fleet/apps.git/info/refs",
            "service=git-upload-pack",
            "version=2",
        ),
        ("upload-pack", 1, "/fleet/apps/git-upload-pack", "", ""),
        (
            "receive-pack",
            0,
            "/x/info/refs",
            "service=git-receive-pack",
            "",
        ),
    ] {
        let mut input = vec![2u8, method];
        input.extend(chunks([path.as_bytes(), query.as_bytes()]));
        input.extend_from_slice(protocol.as_bytes());
        items.push((name, input));
    }
    named("git", items)
}

fn paths() -> Vec<Seed> {
    let digest = Digest::of(b"x").to_string();
    let items: Vec<(&str, u8, &str)> = vec![
        ("oci-repo", 0, "library/debian"),
        ("oci-repo-seps", 0, "my-org/sub.team/app__x--y"),
        ("oci-tag", 1, "v1.2.3-rc_1"),
        ("digest", 2, &digest),
        ("git-repo", 3, "fleet/apps.v2"),
        ("git-repo-url", 3, "fleet/apps.git"),
        ("ref", 4, "refs/heads/feature/x-1"),
        ("group", 5, "leaves"),
    ];
    named(
        "paths",
        items
            .into_iter()
            .map(|(name, selector, text)| {
                let mut out = vec![selector];
                out.extend_from_slice(text.as_bytes());
                (name, out)
            })
            .collect(),
    )
}
