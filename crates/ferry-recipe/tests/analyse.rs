//! Recipes found for real encoders' output rebuild the exact blob, and a
//! damaged recipe or segment never yields a wrong blob silently.

use std::io::Write;
use std::process::{Command, Stdio};

use ferry_recipe::{Encoder, Limits, Outcome, Recipe, analyse};

/// Text-like content: this crate's sources, repeated with small changes.
fn content(len: usize) -> Vec<u8> {
    let mut seed = Vec::new();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            seed.extend(std::fs::read(path).unwrap());
        }
    }
    let mut out = Vec::with_capacity(len);
    let mut i = 0u32;
    while out.len() < len {
        out.extend_from_slice(&seed);
        out.extend_from_slice(format!("-- copy {i} --\n").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

fn gnu_gzip(level: u32, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg(format!("-{level}"))
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip runs");
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn gnu_gzip_rebuilds_through_preflate() {
    let data = content(3 << 20);
    for level in [1, 6, 9] {
        let blob = gnu_gzip(level, &data);
        let Outcome::Found(found) = analyse(&blob, &Limits::default()) else {
            panic!("gzip -{level}: no recipe");
        };
        assert_eq!(found.recipe.encoder, Encoder::Preflate, "gzip -{level}");
        assert_eq!(&found.segment[..data.len()], &data[..], "gzip -{level}");
        let corrections = found.segment.len() - data.len();
        assert!(
            corrections * 100 < blob.len(),
            "gzip -{level}: {corrections} B of corrections"
        );
        let recipe = Recipe::decode(&found.recipe.encode()).unwrap();
        assert_eq!(recipe, found.recipe);
        assert_eq!(
            recipe.rebuild(&found.segment).unwrap(),
            blob,
            "gzip -{level}"
        );
    }
}

#[test]
fn damaged_recipes_and_segments_are_refused_or_differ() {
    let data = content(200_000);
    let blob = gnu_gzip(6, &data);
    let Outcome::Found(found) = analyse(&blob, &Limits::default()) else {
        panic!("no recipe");
    };
    let wire = found.recipe.encode();
    // Every truncation of the wire form is refused or decodes to a recipe
    // whose rebuild is refused or differs: never the blob by accident.
    for cut in 0..wire.len() {
        if let Ok(recipe) = Recipe::decode(&wire[..cut]) {
            assert_ne!(
                recipe.rebuild(&found.segment).ok(),
                Some(blob.clone()),
                "cut {cut}"
            );
        }
    }
    // A recipe from a newer encoder behaviour is refused, not guessed at.
    let mut newer: ferry_proto::v1::GzipRecipe = prost::Message::decode(&wire[..]).unwrap();
    newer.encoder_version += 1;
    let refused = Recipe::decode(&prost::Message::encode_to_vec(&newer));
    assert!(
        matches!(refused, Err(ferry_recipe::RecipeError::Unsupported(_))),
        "{refused:?}"
    );
    // A flipped byte in the content changes the rebuilt blob.
    let mut segment = found.segment.clone();
    segment[1000] ^= 0x40;
    assert_ne!(found.recipe.rebuild(&segment).ok(), Some(blob.clone()));
    // A segment shorter than the content is refused.
    assert!(found.recipe.rebuild(&found.segment[..100]).is_err());
}

#[test]
fn what_is_not_one_gzip_member_travels_as_it_is() {
    let data = content(100_000);
    let mut two = gnu_gzip(6, &data);
    two.extend(gnu_gzip(6, &data));
    for (name, blob) in [
        ("plain", data.clone()),
        ("two members", two),
        ("empty", Vec::new()),
    ] {
        assert!(
            matches!(analyse(&blob, &Limits::default()), Outcome::AsIs(_)),
            "{name}"
        );
    }
    let mut truncated = gnu_gzip(6, &data);
    truncated.truncate(truncated.len() - 20);
    assert!(matches!(
        analyse(&truncated, &Limits::default()),
        Outcome::AsIs(_)
    ));
}

#[test]
fn go_layers_get_a_go_recipe_at_their_level() {
    use ferry_recipe::gozip::{self, Family};
    let data = content(5 << 20);
    for level in [-1, 1, 5, 9] {
        let blob = gozip::gzip(Family::Go, level, &data).unwrap();
        let Outcome::Found(found) = analyse(&blob, &Limits::default()) else {
            panic!("go level {level}: no recipe");
        };
        assert!(
            matches!(found.recipe.encoder, Encoder::Go { .. }),
            "go level {level}: {}",
            found.recipe.encoder
        );
        assert_eq!(found.segment, data);
        assert_eq!(found.recipe.rebuild(&found.segment).unwrap(), blob);
    }
}

#[test]
fn pgzip_layers_get_a_pgzip_recipe_with_their_block_size() {
    use ferry_recipe::gozip::{self, Family};
    let data = content(6 << 20);
    for (level, block_size) in [(-1, 1 << 20), (-1, 256 << 10), (1, 1 << 20), (9, 512 << 10)] {
        let blob = gozip::gzip(Family::Pgzip { block_size }, level, &data).unwrap();
        let Outcome::Found(found) = analyse(&blob, &Limits::default()) else {
            panic!("pgzip level {level} block {block_size}: no recipe");
        };
        assert!(
            matches!(
                found.recipe.encoder,
                Encoder::Pgzip { block_size: b, .. } if b as usize == block_size
            ),
            "pgzip level {level} block {block_size}: {}",
            found.recipe.encoder
        );
        assert_eq!(found.recipe.rebuild(&found.segment).unwrap(), blob);
    }
}
