//! Compiles proto/ferry.proto with protox (pure Rust), so no protoc is needed.

fn main() {
    // Read at run time, not baked in with env!: a build script compiled for
    // one checkout may be reused for another in a shared target directory.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let proto_dir = std::path::Path::new(&manifest_dir).join("../../proto");
    let proto_file = proto_dir.join("ferry.proto");
    println!("cargo:rerun-if-changed={}", proto_file.display());
    let fds = protox::compile([&proto_file], [&proto_dir]).unwrap_or_else(|e| {
        panic!("proto/ferry.proto does not compile: {e}");
    });
    prost_build::Config::new()
        // Chunk data decoded from a shared buffer points into it, uncopied
        // (`FrameCodec::decode_exact_shared`).
        .bytes([".ferry.v1.ChunkData.data"])
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("prost code generation failed: {e}"));
}
