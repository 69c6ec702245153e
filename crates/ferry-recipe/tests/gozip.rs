//! The real Go encoders run here, and what they write inflates to the input.

use std::io::Read;

use ferry_recipe::gozip::{self, Family};

#[test]
fn gozip_families_round_trip() {
    let data: Vec<u8> = (0..300_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    for family in [
        Family::Go,
        Family::Pgzip {
            block_size: 1 << 18,
        },
    ] {
        let member = gozip::gzip(family, -1, &data).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&member[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data, "{family:?}");
        assert!(
            gozip::deflate_body(&member).len() < data.len() / 4,
            "{family:?}"
        );
    }
}
