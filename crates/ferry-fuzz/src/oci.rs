//! Target `oci`: ferry-oci's index/manifest JSON parsing and
//! `OciRelease::decode` (the `release` of an OCI bundle).

use ferry_oci::digest::{check_repository, check_tag};
use ferry_oci::media::{self, Descriptor};
use ferry_oci::{Digest, OciRelease};

use crate::input::Input;

/// Media types a document may be described as.
const TYPES: [&str; 6] = [
    media::OCI_INDEX,
    media::OCI_MANIFEST,
    media::DOCKER_LIST,
    media::DOCKER_MANIFEST,
    media::OCI_CONFIG,
    "",
];

pub fn oci(data: &[u8]) {
    let mut input = Input::new(data);
    let media_type = TYPES[usize::from(input.byte()) % TYPES.len()];
    let rest = input.rest();

    if let Ok(parsed) = media::parse(media_type, rest) {
        assert!(media::is_manifest(media_type));
        if media::is_index(media_type) {
            assert!(
                parsed
                    .children
                    .iter()
                    .all(|c| media::is_manifest(&c.media_type))
            );
        } else {
            assert!(!parsed.children.is_empty(), "a manifest reaches its config");
        }
        for child in parsed.children.iter().chain(&parsed.subject) {
            descriptor_round_trips(child);
        }
    }

    release(rest);
    release(data);
}

/// A descriptor's digest survives being written as JSON and read back.
fn descriptor_round_trips(d: &Descriptor) {
    let text = serde_json::to_string(d).expect("a descriptor serialises");
    let back: Descriptor = serde_json::from_str(&text).expect("and reads back");
    assert_eq!(&back, d);
    let parsed: Digest = d
        .digest
        .to_string()
        .parse()
        .expect("a digest's text parses");
    assert_eq!(parsed, d.digest);
    // A digest names a file: 64 lowercase hex digits, nothing else.
    assert!(
        d.digest
            .hex()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
}

fn release(bytes: &[u8]) {
    let Ok(release) = OciRelease::decode(bytes) else {
        return;
    };
    check_repository(&release.repository).expect("a decoded repository name is valid");
    for (tag, target) in &release.tags {
        check_tag(tag).expect("a decoded tag is valid");
        assert!(media::is_manifest(&target.media_type));
        assert!(release.blobs.iter().any(|b| b.digest == target.digest));
    }
    // A consumer sums the segments (`ImageStore::apply` compares the sum
    // with the manifest's length): an accepted release must describe a
    // payload whose length is a number.
    let total = release
        .blobs
        .iter()
        .try_fold(0u64, |sum, b| sum.checked_add(b.segment_length));
    assert!(
        total.is_some(),
        "OciRelease::decode accepted segments whose lengths overflow u64"
    );
    assert_eq!(Some(release.payload_length()), total);
    let again = OciRelease::decode(&release.encode()).expect("a decoded release re-decodes");
    assert_eq!(again, release);
}
