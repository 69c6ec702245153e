//! Compiles proto/ferry.proto with protox (pure Rust), so no protoc is needed.

fn main() {
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let proto_file = proto_dir.join("ferry.proto");
    println!("cargo:rerun-if-changed={}", proto_file.display());
    let fds = protox::compile([&proto_file], [&proto_dir]).unwrap_or_else(|e| {
        panic!("proto/ferry.proto does not compile: {e}");
    });
    prost_build::Config::new()
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("prost code generation failed: {e}"));
}
