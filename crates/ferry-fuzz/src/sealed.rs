//! Target `sealed`: ferry-trust's `envelope::open`, which a leaf runs on a
//! sealed bundle's release and manifest as they arrived from a relay or a
//! medium, before anything is authenticated.
//!
//! The first byte picks what the fuzzer controls, against one payload
//! sealed for the harness's member:
//! - 0: the whole release (the envelope, the wrapped keys, the sealed record);
//! - 1: one sealed chunk's bytes;
//! - 2: the sealed manifest's chunk list (chunks made from the input);
//! - 3: a byte-level edit of the genuine release.
//!
//! Property: no panic, the store is not changed, and whenever `open`
//! succeeds it yields exactly the release and manifest that were sealed,
//! and every chunk of the view reads back.

use std::sync::OnceLock;

use ferry_chunk::{ChunkId, Manifest, ManifestEntry, ManifestId};
use ferry_core::{MemStore, Store};
use ferry_trust::envelope::{self, Member};
use ferry_trust::seal::{GroupKey, MemberSecret};

use crate::input::Input;

const MEMBER_SEED: [u8; 32] = [0x5e; 32];
const RELEASE: &[u8] = b"the release the publisher sealed";

struct Fixture {
    store: MemStore,
    member: Member,
    plain: Manifest,
    sealed: envelope::Sealed,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut store = MemStore::new();
        let mut entries = Vec::new();
        for i in 0..3u8 {
            let body = vec![i.wrapping_mul(37); 600 + usize::from(i) * 100];
            let id = ChunkId::of(&body);
            store.put_chunk(id, &body).expect("a memory store takes it");
            entries.push(ManifestEntry {
                id,
                len: body.len() as u32,
            });
        }
        let plain = Manifest::new(entries)
            .expect("no empty chunk")
            .with_media_type("application/x-fuzz");
        store.put_manifest(&plain).expect("a memory store takes it");
        let public = ed25519_dalek::SigningKey::from_bytes(&MEMBER_SEED)
            .verifying_key()
            .to_bytes();
        let member = Member::from_node_public_key(&public).expect("a valid key");
        let group = GroupKey::from_bytes([0x6b; 32]);
        let sealed = envelope::seal(&mut store, &group, &[member], RELEASE, &plain)
            .expect("sealing a held payload");
        Fixture {
            store,
            member,
            plain,
            sealed,
        }
    })
}

pub fn sealed(data: &[u8]) {
    let f = fixture();
    let mut input = Input::new(data);
    let mut store = f.store.clone();
    let mut release = f.sealed.release.clone();
    let mut manifest = f.sealed.manifest;
    let genuine = store
        .get_manifest(manifest)
        .expect("memory store")
        .expect("the sealed manifest is held");
    match input.byte() % 4 {
        0 => release = input.rest().to_vec(),
        1 => {
            let index = usize::from(input.byte()) % genuine.chunk_count();
            let bytes = input.rest();
            if bytes.is_empty() {
                return;
            }
            let mut entries = genuine.entries().to_vec();
            entries[index] = ManifestEntry {
                id: ChunkId::of(bytes),
                len: bytes.len() as u32,
            };
            store.put_chunk(entries[index].id, bytes).expect("memory");
            manifest = put(&mut store, entries);
        }
        2 => {
            let mut entries = Vec::new();
            while !input.is_empty() && entries.len() < 8 {
                let bytes = input.chunk();
                if bytes.is_empty() {
                    // An id the store does not hold.
                    entries.push(ManifestEntry {
                        id: ChunkId::of(&[entries.len() as u8]),
                        len: 1,
                    });
                    continue;
                }
                let id = ChunkId::of(bytes);
                store.put_chunk(id, bytes).expect("memory");
                entries.push(ManifestEntry {
                    id,
                    len: bytes.len() as u32,
                });
            }
            if entries.is_empty() {
                return;
            }
            manifest = put(&mut store, entries);
        }
        _ => {
            while !input.is_empty() {
                let at = usize::from(input.u16());
                match input.byte() % 3 {
                    0 if !release.is_empty() => {
                        let at = at % release.len();
                        release[at] ^= input.byte() | 1;
                    }
                    1 if at <= release.len() => release.insert(at, input.byte()),
                    _ if !release.is_empty() => {
                        release.remove(at % release.len());
                    }
                    _ => {}
                }
            }
        }
    }
    let before = (store.usage().bytes, store.unsynced_writes());
    let secret = MemberSecret::from_node_seed(&MEMBER_SEED);
    let Ok(opened) = envelope::open(&store, &f.member.node, &secret, &release, manifest) else {
        assert_eq!(
            (store.usage().bytes, store.unsynced_writes()),
            before,
            "a refused open changed the store"
        );
        return;
    };
    assert_eq!(
        opened.release(),
        RELEASE,
        "opened to a release never sealed"
    );
    assert_eq!(
        opened.manifest(),
        &f.plain,
        "opened to a manifest never sealed"
    );
    let view = opened.view(&store);
    for entry in f.plain.entries() {
        let bytes = view
            .get_chunk(entry.id)
            .expect("an opened chunk reads back")
            .expect("an opened chunk is there");
        assert_eq!(ChunkId::of(&bytes), entry.id);
    }
}

fn put(store: &mut MemStore, entries: Vec<ManifestEntry>) -> ManifestId {
    let manifest = Manifest::new(entries).expect("no empty chunk");
    store.put_manifest(&manifest).expect("memory")
}

/// Seeds: the genuine release in each mode's shape.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let f = fixture();
    let genuine = f.store.get_manifest(f.sealed.manifest).unwrap().unwrap();
    let chunk = f.store.get_chunk(genuine.entries()[1].id).unwrap().unwrap();
    let mut whole = vec![0];
    whole.extend_from_slice(&f.sealed.release);
    let mut one = vec![1, 1];
    one.extend_from_slice(&chunk);
    let mut list = vec![2];
    for entry in genuine.entries() {
        let body = f.store.get_chunk(entry.id).unwrap().unwrap();
        list.extend(crate::input::chunks([body.as_slice()]));
    }
    vec![
        ("whole-release", whole),
        ("one-chunk", one),
        ("chunk-list", list),
        ("release-edit", vec![3, 40, 0, 0, 0x20]),
    ]
}
