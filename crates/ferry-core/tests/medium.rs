//! Removable media: export at a base, import at an air-gapped site, receipts
//! carried back. Each test is one behaviour of `ferry_core::medium`.

use std::time::Duration;

use ferry_chunk::{Chunker, ChunkerConfig, ManifestBuilder, ManifestId, reassemble};
use ferry_core::{
    BundleId, Cf, Endpoint, Engine, EngineConfig, Event, ExportOptions, Instant, MediumError,
    MemStore, NodeId, PayloadKind, Priority, Routes, Store, Submission,
};
use rand::{Rng, RngCore, SeedableRng};

const BASE: NodeId = NodeId([1; 32]);
const SITE: NodeId = NodeId([2; 32]);
const OTHER: NodeId = NodeId([3; 32]);
const T0: Instant = Instant(1_000_000_000);

fn engine(node: NodeId) -> Engine<MemStore> {
    Engine::new(EngineConfig::new(node, 1), MemStore::new()).unwrap()
}

fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}

/// Puts `bytes` in the store and submits a bundle of it for `to`.
fn submit(engine: &mut Engine<MemStore>, to: Endpoint, bytes: &[u8]) -> (BundleId, ManifestId) {
    let chunker = Chunker::new(ChunkerConfig::default()).unwrap();
    let store = engine.store_mut();
    let mut builder = ManifestBuilder::new();
    for span in chunker.chunk_slice(bytes) {
        let chunk = &bytes[span.offset as usize..span.end() as usize];
        store.put_chunk(span.id, chunk).unwrap();
        builder.push(span, chunk).unwrap();
    }
    let manifest = store.put_manifest(&builder.finish()).unwrap();
    store.sync().unwrap();
    let id = engine
        .submit(
            T0,
            Submission {
                destination: to,
                lifetime: Duration::from_secs(30 * 24 * 3600),
                priority: Priority::Normal,
                kind: PayloadKind::Blob,
                manifest,
                release: b"release".to_vec(),
                signature: Vec::new(),
            },
        )
        .unwrap();
    (id, manifest)
}

/// Every volume of an export of `target`, as bytes.
fn export(
    engine: &mut Engine<MemStore>,
    target: Endpoint,
    options: ExportOptions,
) -> (Vec<Vec<u8>>, ferry_core::ExportSummary) {
    let plan = engine.plan_export(T0, target, options).unwrap();
    let mut volumes = Vec::new();
    for i in 0..plan.volume_count() {
        let mut out = Vec::new();
        let written = plan
            .write_volume(i, engine.store(), &mut out, |_| {})
            .unwrap();
        assert_eq!(written, out.len() as u64, "the size written is the size");
        assert_eq!(
            plan.summary().volume_bytes[i],
            written,
            "the plan knows each volume's exact size"
        );
        volumes.push(out);
    }
    (volumes, plan.summary().clone())
}

fn read_back(engine: &Engine<MemStore>, manifest: ManifestId) -> Vec<u8> {
    let store = engine.store();
    let manifest = store
        .get_manifest(manifest)
        .unwrap()
        .expect("manifest held");
    let mut out = Vec::new();
    reassemble(
        &manifest,
        |id| store.get_chunk(id).unwrap().ok_or("missing chunk"),
        &mut out,
    )
    .expect("every chunk present and verified");
    out
}

fn events(engine: &mut Engine<MemStore>) -> Vec<Event> {
    std::iter::from_fn(|| engine.poll_event()).collect()
}

/// Every record a store holds: family, key, value.
type Records = Vec<(Cf, Vec<u8>, Vec<u8>)>;

/// Everything the store holds but chunk bytes, and its size.
fn snapshot(store: &MemStore) -> (Records, u64) {
    let mut out = Vec::new();
    for cf in Cf::ALL {
        if cf == Cf::Chunks {
            continue;
        }
        if let Ok(records) = store.scan_prefix(cf, &[]) {
            out.extend(records.into_iter().map(|(k, v)| (cf, k, v)));
        }
    }
    (out, store.usage().bytes)
}

#[test]
fn a_release_exported_to_a_file_is_delivered_at_a_site_with_no_link() {
    let mut base = engine(BASE);
    let mut site = engine(SITE);
    let payload = data(1, 700_000);
    let (bundle, manifest) = submit(&mut base, Endpoint::Node(SITE), &payload);
    events(&mut base);

    let (volumes, summary) = export(&mut base, Endpoint::Node(SITE), ExportOptions::default());
    assert_eq!(volumes.len(), 1);
    assert_eq!(summary.bundles, 1);
    assert_eq!(summary.chunk_bytes, payload.len() as u64);
    assert!(
        base.bundle(&bundle).unwrap().pending_hops.contains(&SITE),
        "the base keeps custody until receipts come back"
    );

    let report = site.import_volume(T0, &volumes[0][..]).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.accepted, vec![bundle]);
    assert_eq!(report.delivered, vec![(bundle, manifest)]);
    let record = site.bundle(&bundle).expect("custody taken");
    assert_eq!(record.custody_from, Some(BASE));
    assert!(record.delivered);
    assert!(events(&mut site).contains(&Event::Delivered { bundle, manifest }));
    assert_eq!(read_back(&site, manifest), payload);

    // Taken durably: a crash right after the import keeps it.
    let mut store = site.into_store();
    store.crash();
    let site = Engine::new(EngineConfig::new(SITE, 1), store).unwrap();
    assert!(site.bundle(&bundle).is_some());
    assert_eq!(read_back(&site, manifest), payload);
}

/// An empty file's bundle (its manifest encodes to nothing) travels on a
/// medium beside the rest and is delivered as an empty object.
#[test]
fn an_empty_payload_travels_on_a_medium() {
    let mut base = engine(BASE);
    let mut site = engine(SITE);
    let payload = data(2, 50_000);
    let (empty, empty_manifest) = submit(&mut base, Endpoint::Node(SITE), &[]);
    let (full, full_manifest) = submit(&mut base, Endpoint::Node(SITE), &payload);
    let (volumes, summary) = export(&mut base, Endpoint::Node(SITE), ExportOptions::default());
    assert_eq!(summary.bundles, 2);

    let report = site.import_volume(T0, &volumes[0][..]).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        report.delivered,
        vec![(empty, empty_manifest), (full, full_manifest)]
    );
    assert_eq!(read_back(&site, empty_manifest), Vec::<u8>::new());
    assert_eq!(read_back(&site, full_manifest), payload);
}

#[test]
fn importing_the_same_volume_twice_changes_nothing() {
    let mut base = engine(BASE);
    let mut site = engine(SITE);
    let (bundle, _) = submit(&mut base, Endpoint::Node(SITE), &data(2, 300_000));
    let (volumes, _) = export(&mut base, Endpoint::Node(SITE), ExportOptions::default());
    site.import_volume(T0, &volumes[0][..]).unwrap();
    events(&mut site);
    let before = snapshot(site.store());
    let syncs = site.store().sync_count();
    let again = site.import_volume(T0, &volumes[0][..]).unwrap();
    assert_eq!(again.already_held, vec![bundle]);
    assert!(again.accepted.is_empty());
    assert_eq!(again.chunks_stored, 0);
    assert_eq!(snapshot(site.store()), before, "the store is unchanged");
    assert_eq!(site.store().unsynced_writes(), 0);
    assert!(site.store().sync_count() <= syncs + 1);
    assert!(events(&mut site).is_empty(), "no second delivery");
}

#[test]
fn a_tampered_chunk_is_rejected_by_record_and_the_rest_kept() {
    let mut base = engine(BASE);
    let mut site = engine(SITE);
    let payload = data(3, 800_000);
    let (bundle, manifest) = submit(&mut base, Endpoint::Node(SITE), &payload);
    let (volumes, summary) = export(&mut base, Endpoint::Node(SITE), ExportOptions::default());
    assert!(summary.chunks >= 4, "enough chunks to tamper with one");
    let mut tampered = volumes[0].clone();
    // A byte in the middle of the last chunk's payload (before its hash and the trailer).
    let at = tampered.len() - 200;
    tampered[at] ^= 0x40;

    let report = site.import_volume(T0, &tampered[..]).unwrap();
    let chunk_problems: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.kind == "chunk")
        .collect();
    assert_eq!(chunk_problems.len(), 1, "{:?}", report.problems);
    assert!(chunk_problems[0].reason.contains("BLAKE3"));
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.accepted.is_empty(), "nothing partial is taken");
    assert_eq!(report.incomplete, vec![(bundle, 1)]);
    assert_eq!(
        report.chunks_stored,
        summary.chunks - 1,
        "the valid rest is kept"
    );
    assert!(site.bundle(&bundle).is_none());

    // The next trip (a clean copy) completes it, carrying what is missing.
    let report = site.import_volume(T0, &volumes[0][..]).unwrap();
    assert_eq!(report.accepted, vec![bundle]);
    assert_eq!(report.chunks_stored, 1);
    assert_eq!(read_back(&site, manifest), payload);
}

#[test]
fn a_truncated_volume_keeps_its_whole_records() {
    let mut base = engine(BASE);
    let mut site = engine(SITE);
    let payload = data(4, 800_000);
    let (bundle, manifest) = submit(&mut base, Endpoint::Node(SITE), &payload);
    let (volumes, summary) = export(&mut base, Endpoint::Node(SITE), ExportOptions::default());
    let cut = &volumes[0][..volumes[0].len() * 2 / 3];
    let report = site.import_volume(T0, cut).unwrap();
    assert!(report.truncated);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].reason.contains("truncated"));
    assert!(report.chunks_stored > 0 && report.chunks_stored < summary.chunks);
    assert!(report.accepted.is_empty());
    // What is whole survives a crash, and the rest arrives later.
    let mut store = site.into_store();
    store.crash();
    let mut site = Engine::new(EngineConfig::new(SITE, 1), store).unwrap();
    let report = site.import_volume(T0, &volumes[0][..]).unwrap();
    assert_eq!(report.accepted, vec![bundle]);
    assert!(
        report.chunks_present > 0,
        "what was kept is not carried again"
    );
    assert_eq!(read_back(&site, manifest), payload);
}

#[test]
fn receipts_release_custody_at_the_base_and_the_next_export_skips_what_the_site_holds() {
    let mut base = engine(BASE);
    base.set_routes(
        T0,
        Routes {
            next_hop: [(SITE, SITE)].into(),
            ..Default::default()
        },
    );
    let mut site = engine(SITE);
    let v1 = data(5, 1_000_000);
    let (first, _) = submit(&mut base, Endpoint::Node(SITE), &v1);
    let (volumes, _) = export(&mut base, Endpoint::Node(SITE), ExportOptions::default());
    site.import_volume(T0, &volumes[0][..]).unwrap();

    let mut receipts = Vec::new();
    let summary = site.export_receipts(T0, &mut receipts).unwrap();
    assert_eq!(summary.bundles, 1);
    events(&mut base);
    let report = base.import_volume(T0, &receipts[..]).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.released, vec![first]);
    assert!(base.bundle(&first).unwrap().pending_hops.is_empty());
    assert!(events(&mut base).contains(&Event::CustodyReleased { bundle: first }));
    // Receipts again (a second copy) change nothing.
    let again = base.import_volume(T0, &receipts[..]).unwrap();
    assert!(again.released.is_empty());

    // A bump: a few bytes changed in the middle.
    let mut v2 = v1.clone();
    for byte in &mut v2[500_000..500_100] {
        *byte ^= 0xff;
    }
    let (second, manifest) = submit(&mut base, Endpoint::Node(SITE), &v2);
    let (volumes, diff) = export(&mut base, Endpoint::Node(SITE), ExportOptions::default());
    assert_eq!(diff.bundles, 1, "the released bundle is not exported again");
    assert!(diff.skipped_chunks > 0);
    assert_eq!(
        diff.manifest_deltas, 1,
        "the new manifest travels as edits of the one the site holds"
    );
    assert!(
        diff.chunk_bytes < v2.len() as u64 / 3,
        "only the changed chunks travel: {} of {}",
        diff.chunk_bytes,
        v2.len()
    );
    assert!(diff.total_bytes() < diff.full_bytes / 3);
    let (_, full) = export(
        &mut base,
        Endpoint::Node(SITE),
        ExportOptions {
            full: true,
            ..Default::default()
        },
    );
    assert_eq!(
        full.chunk_bytes,
        v2.len() as u64,
        "--full carries everything"
    );
    let report = site.import_volume(T0, &volumes[0][..]).unwrap();
    assert_eq!(report.accepted, vec![second]);
    assert_eq!(read_back(&site, manifest), v2);
}

#[test]
fn volumes_split_by_size_import_alone_in_any_order() {
    let mut base = engine(BASE);
    let mut site = engine(SITE);
    let a = data(6, 900_000);
    let b = data(7, 500_000);
    let (bundle_a, manifest_a) = submit(&mut base, Endpoint::Group("sites".into()), &a);
    let (bundle_b, manifest_b) = submit(&mut base, Endpoint::Group("sites".into()), &b);
    base.set_routes(
        T0,
        Routes {
            next_hop: [(SITE, SITE)].into(),
            groups: [("sites".to_string(), [SITE].into())].into(),
            ..Default::default()
        },
    );
    let max = 400_000;
    let (volumes, summary) = export(
        &mut base,
        Endpoint::Group("sites".into()),
        ExportOptions {
            full: false,
            max_volume_bytes: Some(max),
        },
    );
    assert!(volumes.len() >= 4, "{} volumes", volumes.len());
    assert!(volumes.iter().all(|v| v.len() as u64 <= max));
    assert_eq!(summary.chunk_bytes, (a.len() + b.len()) as u64);

    let mut site_config = EngineConfig::new(SITE, 1);
    site_config.member_of = ["sites".to_string()].into();
    site = Engine::new(site_config, site.into_store()).unwrap();
    let mut accepted = Vec::new();
    for (i, volume) in volumes.iter().enumerate().rev() {
        let report = site.import_volume(T0, &volume[..]).unwrap();
        assert!(
            report.problems.is_empty(),
            "volume {i}: {:?}",
            report.problems
        );
        accepted.extend(report.accepted);
    }
    accepted.sort();
    assert_eq!(
        accepted,
        vec![bundle_a, bundle_b],
        "complete when the last arrives"
    );
    assert_eq!(read_back(&site, manifest_a), a);
    assert_eq!(read_back(&site, manifest_b), b);
}

#[test]
fn a_volume_for_another_node_or_not_a_volume_is_refused_whole() {
    let mut base = engine(BASE);
    let mut other = engine(OTHER);
    submit(&mut base, Endpoint::Node(SITE), &data(8, 100_000));
    let (volumes, _) = export(&mut base, Endpoint::Node(SITE), ExportOptions::default());
    let before = snapshot(other.store());
    assert!(matches!(
        other.import_volume(T0, &volumes[0][..]),
        Err(MediumError::WrongTarget { .. })
    ));
    assert!(matches!(
        other.import_volume(T0, &b"PK\x03\x04 a zip file"[..]),
        Err(MediumError::NotAVolume)
    ));
    let mut newer = volumes[0].clone();
    newer[9] = 9;
    let err = other.import_volume(T0, &newer[..]).unwrap_err();
    assert!(
        matches!(err, MediumError::UnsupportedVersion { found: 9 }),
        "{err}"
    );
    assert_eq!(snapshot(other.store()), before);
    assert!(matches!(
        base.import_volume(T0, &volumes[0][..]),
        Err(MediumError::OwnVolume)
    ));
}

#[test]
fn an_expired_bundle_on_a_late_medium_is_refused() {
    let mut base = engine(BASE);
    let mut site = engine(SITE);
    let (bundle, _) = submit(&mut base, Endpoint::Node(SITE), &data(9, 100_000));
    let (volumes, _) = export(&mut base, Endpoint::Node(SITE), ExportOptions::default());
    let late = T0 + Duration::from_secs(31 * 24 * 3600);
    let report = site.import_volume(late, &volumes[0][..]).unwrap();
    assert_eq!(report.refused.len(), 1);
    assert_eq!(report.refused[0].0, bundle);
    assert!(site.bundle(&bundle).is_none());
}

#[test]
fn a_record_rewritten_with_a_matching_hash_is_caught_by_the_trailer() {
    let mut base = engine(BASE);
    let mut site = engine(SITE);
    submit(&mut base, Endpoint::Node(SITE), &data(10, 200_000));
    let (volumes, _) = export(&mut base, Endpoint::Node(SITE), ExportOptions::default());
    // Rewrite the bundle header record (the second record) with a new
    // release and a matching BLAKE3, as an attacker could.
    let volume = &volumes[0];
    let header_len = u32::from_be_bytes(volume[11..15].try_into().unwrap()) as usize;
    let at = 10 + 5 + header_len + 32;
    assert_eq!(volume[at], 2, "the second record is a bundle header");
    let len = u32::from_be_bytes(volume[at + 1..at + 5].try_into().unwrap()) as usize;
    let mut payload = volume[at + 5..at + 5 + len].to_vec();
    let pos = payload
        .windows(7)
        .position(|w| w == b"release")
        .expect("release in the header");
    payload[pos] = b'R';
    let mut forged = volume[..at + 5].to_vec();
    forged.extend_from_slice(&payload);
    forged.extend_from_slice(blake3::hash(&payload).as_bytes());
    forged.extend_from_slice(&volume[at + 5 + len + 32..]);
    let report = site.import_volume(T0, &forged[..]).unwrap();
    assert!(
        report.problems.iter().any(|p| p.kind == "trailer"),
        "{:?}",
        report.problems
    );
}

mod hostile {
    use proptest::prelude::*;

    use super::*;

    fn volume() -> Vec<u8> {
        let mut base = engine(BASE);
        submit(&mut base, Endpoint::Node(SITE), &data(11, 300_000));
        submit(&mut base, Endpoint::Node(SITE), &data(12, 100_000));
        export(&mut base, Endpoint::Node(SITE), ExportOptions::default())
            .0
            .remove(0)
    }

    /// Whatever a bundle accepted from hostile bytes, its content verifies.
    fn check(bytes: &[u8]) {
        let mut site = engine(SITE);
        if let Ok(report) = site.import_volume(T0, bytes) {
            for (_, manifest) in &report.delivered {
                read_back(&site, *manifest);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            check(&bytes);
            let mut framed = b"FERRYVOL\x00\x01".to_vec();
            framed.extend_from_slice(&bytes);
            check(&framed);
        }

        #[test]
        fn truncated_or_bit_flipped_volumes_never_panic(
            cut in any::<proptest::sample::Index>(),
            flips in proptest::collection::vec((any::<proptest::sample::Index>(), 0u8..8), 0..6),
        ) {
            static VOLUME: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
            let volume = VOLUME.get_or_init(volume);
            let mut bytes = volume[..cut.index(volume.len() + 1)].to_vec();
            if !bytes.is_empty() {
                for (at, bit) in &flips {
                    let i = at.index(bytes.len());
                    bytes[i] ^= 1 << bit;
                }
            }
            check(&bytes);
        }
    }
}

#[test]
fn a_manifest_delta_against_a_base_the_site_lacks_is_reported_and_skipped() {
    // The base believes the site holds release 1 (its receipts said so), but
    // the site was rebuilt empty: the delta cannot be applied.
    let mut base = engine(BASE);
    let mut site = engine(SITE);
    let v1 = data(13, 600_000);
    submit(&mut base, Endpoint::Node(SITE), &v1);
    let (volumes, _) = export(&mut base, Endpoint::Node(SITE), ExportOptions::default());
    site.import_volume(T0, &volumes[0][..]).unwrap();
    let mut receipts = Vec::new();
    site.export_receipts(T0, &mut receipts).unwrap();
    base.import_volume(T0, &receipts[..]).unwrap();
    let mut v2 = v1.clone();
    v2[300_000] ^= 1;
    let (bundle, _) = submit(&mut base, Endpoint::Node(SITE), &v2);
    let (volumes, summary) = export(&mut base, Endpoint::Node(SITE), ExportOptions::default());
    assert_eq!(summary.manifest_deltas, 1);
    let mut rebuilt = engine(SITE);
    let report = rebuilt.import_volume(T0, &volumes[0][..]).unwrap();
    assert_eq!(
        report.problems[0].kind, "manifest delta",
        "{:?}",
        report.problems
    );
    assert!(report.problems[0].reason.contains("does not hold"));
    assert!(
        report.problems[1..].iter().all(|p| p.kind == "chunk"),
        "its new chunks have no manifest to belong to: {:?}",
        report.problems
    );
    assert_eq!(report.no_manifest, vec![bundle]);
    // `--full` carries whole manifests and every chunk.
    let (volumes, _) = export(
        &mut base,
        Endpoint::Node(SITE),
        ExportOptions {
            full: true,
            ..Default::default()
        },
    );
    let report = rebuilt.import_volume(T0, &volumes[0][..]).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.accepted, vec![bundle]);
}

#[test]
fn a_bundle_sent_again_unchanged_travels_as_a_reference_to_the_one_the_site_holds() {
    let mut base = engine(BASE);
    let mut site = engine(SITE);
    let file = data(14, 200_000);
    let (first, manifest) = submit(&mut base, Endpoint::Node(SITE), &file);
    let (volumes, _) = export(&mut base, Endpoint::Node(SITE), ExportOptions::default());
    site.import_volume(T0, &volumes[0][..]).unwrap();
    let mut receipts = Vec::new();
    site.export_receipts(T0, &mut receipts).unwrap();
    base.import_volume(T0, &receipts[..]).unwrap();

    // The same file sent again: a new bundle, the same content.
    let (again, _) = submit(&mut base, Endpoint::Node(SITE), &file);
    assert_ne!(again, first);
    let (volumes, summary) = export(&mut base, Endpoint::Node(SITE), ExportOptions::default());
    assert_eq!(
        (summary.bundles, summary.manifests, summary.chunks),
        (1, 0, 0)
    );
    assert!(
        // Framing, volume header and trailer take about 210 bytes; a whole
        // bundle header would add about 200 more, a reference about 90.
        volumes[0].len() < 330,
        "a reference, not a header: {} bytes",
        volumes[0].len()
    );
    let report = site.import_volume(T0, &volumes[0][..]).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.delivered, vec![(again, manifest)]);
    let record = site.bundle(&again).unwrap();
    assert_eq!(record.header.release, b"release");
    assert_eq!(record.header.id, again);

    // A node that does not hold the bundle referred to reports it.
    let mut other = engine(SITE);
    let report = other.import_volume(T0, &volumes[0][..]).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].kind, "bundle references");
    assert!(report.problems[0].reason.contains("does not hold"));
    assert!(other.bundle(&again).is_none());
}

#[test]
fn a_crash_between_reading_a_volume_and_taking_custody_loses_no_promise() {
    let mut base = engine(BASE);
    let payload = data(15, 400_000);
    let (bundle, manifest) = submit(&mut base, Endpoint::Node(SITE), &payload);
    let (volumes, _) = export(&mut base, Endpoint::Node(SITE), ExportOptions::default());
    let mut site = engine(SITE);
    let read = ferry_core::medium::read_volume(site.store_mut(), SITE, &volumes[0][..]).unwrap();
    assert_eq!(read.info().source, BASE);
    // Killed before accept_volume: no custody was taken, nothing promised.
    let mut store = site.into_store();
    store.crash_partially({
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
        move || rng.random_bool(0.5)
    });
    let mut site = Engine::new(EngineConfig::new(SITE, 1), store).unwrap();
    assert!(site.bundle(&bundle).is_none());
    // The same volume again completes it, whatever chunks survived.
    let report = site.import_volume(T0, &volumes[0][..]).unwrap();
    assert_eq!(report.accepted, vec![bundle]);
    assert_eq!(read_back(&site, manifest), payload);
}
