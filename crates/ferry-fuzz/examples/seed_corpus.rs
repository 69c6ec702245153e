//! Writes the seed corpora: `cargo run -p ferry-fuzz --example seed_corpus
//! [-- DIR]` (default `fuzz/corpus`), one directory per target. Files are
//! named `seed-*` and overwritten; what the fuzzer added is left alone.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus"),
        PathBuf::from,
    );
    for (target, name, bytes) in ferry_fuzz::seeds::all() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(&name), &bytes)?;
        println!("{target}/{name}: {} bytes", bytes.len());
    }
    Ok(())
}
