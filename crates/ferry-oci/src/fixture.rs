//! Test images, built from files: a base layer shared by every version
//! (a small root filesystem of text files and binaries), an app layer that
//! changes from version to version, a multi-arch index and a signature
//! that refers to v1 (OCI 1.1 `subject`). Layers are real gzip'd tars with
//! fixed metadata, so the same version always has the same digests. Used
//! by the tests and by `cargo bench --bench oci_bump`.

use std::io::{self, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::Digest;
use crate::layout::LayoutWriter;
use crate::media::{self, Descriptor};

/// Deterministic bytes (xorshift64*), so fixtures need no RNG crate.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Incompressible bytes, as in a stripped binary's code.
    fn binary(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// Text that compresses about as well as configuration and docs do.
    fn text(&mut self, len: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "the", "ferry", "relay", "leaf", "bundle", "custody", "chunk", "manifest", "layer",
            "image", "config", "server", "listen", "port", "timeout", "retry", "=", "true",
            "false", "#", "path", "/usr/lib", "/etc", "user", "group", "0644", "daemon",
        ];
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            let r = self.next();
            out.extend_from_slice(WORDS[(r % WORDS.len() as u64) as usize].as_bytes());
            out.push(if r >> 60 == 0 { b'\n' } else { b' ' });
        }
        out.truncate(len);
        out
    }
}

/// Which gzip encoder makes a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    /// flate2 (miniz_oxide) at this level: what [`layer`] uses.
    Flate2(u32),
    /// GNU gzip: `gzip -n -6 -c` (must be installed).
    Gnu,
    /// Go's `compress/gzip` at its default level (the real encoder, through
    /// `ferry_recipe::gozip`): Docker, BuildKit, containerd.
    Go,
    /// klauspost/pgzip at its default level with blocks of this many bytes:
    /// skopeo, podman, buildah.
    Pgzip { block_size: usize },
}

impl Compressor {
    /// The three families real registries are full of.
    pub const FAMILIES: [Compressor; 3] = [
        Compressor::Gnu,
        Compressor::Go,
        Compressor::Pgzip {
            block_size: 1 << 20,
        },
    ];

    /// A short name: `flate2-6`, `gnu-gzip`, `go`, `pgzip`.
    pub fn name(&self) -> String {
        match self {
            Compressor::Flate2(level) => format!("flate2-{level}"),
            Compressor::Gnu => "gnu-gzip".into(),
            Compressor::Go => "go".into(),
            Compressor::Pgzip { .. } => "pgzip".into(),
        }
    }

    /// `data` as one gzip member.
    pub fn gzip(&self, data: &[u8]) -> io::Result<Vec<u8>> {
        match *self {
            Compressor::Flate2(level) => {
                let mut gz = GzEncoder::new(Vec::new(), Compression::new(level));
                gz.write_all(data)?;
                gz.finish()
            }
            Compressor::Gnu => {
                let mut child = std::process::Command::new("gzip")
                    .args(["-n", "-6", "-c"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()?;
                let mut stdin = child.stdin.take().expect("piped");
                let input = data.to_vec();
                let feeder = std::thread::spawn(move || stdin.write_all(&input));
                let out = child.wait_with_output()?;
                feeder
                    .join()
                    .map_err(|_| io::Error::other("gzip's feeder panicked"))??;
                if !out.status.success() {
                    return Err(io::Error::other(format!("gzip failed: {}", out.status)));
                }
                Ok(out.stdout)
            }
            Compressor::Go => ferry_recipe::gozip::gzip(ferry_recipe::gozip::Family::Go, -1, data)
                .map_err(io::Error::other),
            Compressor::Pgzip { block_size } => ferry_recipe::gozip::gzip(
                ferry_recipe::gozip::Family::Pgzip { block_size },
                -1,
                data,
            )
            .map_err(io::Error::other),
        }
    }
}

/// A gzip'd tar of `files` (path, bytes, mode) with fixed metadata; returns
/// (compressed layer, sha256 of the uncompressed tar = its diff id).
pub fn layer(files: &[(String, Vec<u8>, u32)]) -> io::Result<(Vec<u8>, Digest)> {
    layer_with(Compressor::Flate2(6), files)
}

/// [`layer`] compressed by `compressor`.
pub fn layer_with(
    compressor: Compressor,
    files: &[(String, Vec<u8>, u32)],
) -> io::Result<(Vec<u8>, Digest)> {
    let tar = tar(files)?;
    Ok((compressor.gzip(&tar)?, Digest::of(&tar)))
}

/// The tar of `files`, with fixed metadata.
pub fn tar(files: &[(String, Vec<u8>, u32)]) -> io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, bytes, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, &bytes[..])?;
    }
    tar.into_inner()
}

/// Bytes that compress about as a program's code does (roughly 2:1): short
/// instruction-like patterns with random operands.
fn code(rng: &mut Bytes, len: usize) -> Vec<u8> {
    const OPS: &[&[u8]] = &[
        b"\x48\x89\xe5",
        b"\x48\x83\xec",
        b"\xe8",
        b"\x8b\x45",
        b"\x89\x45",
        b"\x0f\x84",
        b"\xc3",
        b"\x55",
        b"\x5d",
        b"\x48\x8d\x3d",
        b"\x31\xc0",
        b"\x74",
    ];
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let r = rng.next();
        out.extend_from_slice(OPS[(r % OPS.len() as u64) as usize]);
        let operands = ((r >> 8) % 4) as usize;
        out.extend_from_slice(&(r >> 16).to_le_bytes()[..operands]);
    }
    out.truncate(len);
    out
}

/// A base layer of about `kib` KiB: binary-like files (code that compresses
/// about 2:1, and some incompressible data) and a tree of text files.
pub fn rootfs_files(kib: usize) -> Vec<(String, Vec<u8>, u32)> {
    let mut rng = Bytes(0x5eed_0ff0_0d00);
    let mut files = Vec::new();
    let binaries = kib * 1024 * 3 / 5;
    for (i, name) in ["busybox", "libc.so.6", "libssl.so.3", "libz.so.1"]
        .iter()
        .enumerate()
    {
        let dir = if name.starts_with("lib") {
            "usr/lib"
        } else {
            "bin"
        };
        let len = binaries / 4 + i * 1013;
        let mut bytes = code(&mut rng, len * 4 / 5);
        bytes.extend(rng.binary(len / 5));
        files.push((format!("{dir}/{name}"), bytes, 0o755));
    }
    let text = kib * 1024 * 2 / 5;
    let mut i = 0;
    let mut written = 0;
    while written < text {
        let len = 1_500 + (i * 397) % 9_000;
        files.push((
            format!("usr/share/doc/pkg{:03}/README", i),
            rng.text(len),
            0o644,
        ));
        written += len;
        i += 1;
    }
    files
}

/// An app layer of about `kib` KiB: a server binary, its configuration and
/// static assets.
pub fn service_files(kib: usize) -> Vec<(String, Vec<u8>, u32)> {
    let mut rng = Bytes(0x0a99_5e21);
    let mut files = vec![(
        "app/bin/server".to_owned(),
        code(&mut rng, kib * 1024 * 3 / 4),
        0o755,
    )];
    files.push(("app/etc/server.toml".into(), rng.text(3_000), 0o644));
    for i in 0..20 {
        files.push((
            format!("app/static/page{i:02}.html"),
            rng.text(kib * 1024 / 4 / 20),
            0o644,
        ));
    }
    files.push(("app/VERSION".into(), b"1\n".to_vec(), 0o644));
    files
}

/// The same files with a few changed, as a version bump changes them:
/// `count` files (spread over the list) get a few small edits, the last
/// file is rewritten, and the largest file has a 4 KiB stretch replaced.
pub fn bump(
    files: &[(String, Vec<u8>, u32)],
    version: u64,
    count: usize,
) -> Vec<(String, Vec<u8>, u32)> {
    let mut rng = Bytes(0xb0b + version * 0x9e37_79b9);
    let mut out = files.to_vec();
    let n = out.len();
    for k in 0..count.min(n) {
        let (_, bytes, _) = &mut out[k * n / count.max(1)];
        for _ in 0..3 {
            if bytes.is_empty() {
                break;
            }
            let at = (rng.next() % bytes.len() as u64) as usize;
            let edit = rng.text(24);
            let end = (at + edit.len()).min(bytes.len());
            bytes[at..end].copy_from_slice(&edit[..end - at]);
        }
    }
    if let Some(largest) = out.iter_mut().max_by_key(|f| f.1.len()) {
        let len = largest.1.len();
        if len > 8192 {
            let at = (rng.next() % (len as u64 - 4096)) as usize;
            let fresh = rng.binary(4096);
            largest.1[at..at + 4096].copy_from_slice(&fresh);
        }
    }
    if let Some(last) = out.last_mut() {
        last.1 = format!("{version}\n").into_bytes();
    }
    out
}

/// What [`family_layout`] wrote: tags `v1` and `v2`, each with a base and
/// an app layer, v2's changing a few files in each.
pub struct FamilyImages {
    pub v1: Descriptor,
    pub v2: Descriptor,
    /// v1's then v2's layers: (digest, compressed bytes).
    pub layers: [Vec<(Digest, u64)>; 2],
}

/// Writes tags `v1` and `v2` to a layout at `dir`, every layer compressed
/// by `compressor`: a base layer of about `base_kib` KiB
/// ([`rootfs_files`]) and an app layer of about `app_kib` KiB
/// ([`service_files`]), v2 [`bump`]ing a few files in each.
pub fn family_layout(
    dir: &Path,
    compressor: Compressor,
    base_kib: usize,
    app_kib: usize,
) -> io::Result<FamilyImages> {
    let mut out = LayoutWriter::create(dir)?;
    let base = rootfs_files(base_kib);
    let app = service_files(app_kib);
    let v1_layers = [
        layer_with(compressor, &base)?,
        layer_with(compressor, &app)?,
    ];
    let v2_layers = [
        layer_with(compressor, &bump(&base, 2, 5))?,
        layer_with(compressor, &bump(&app, 2, 3))?,
    ];
    let sizes = |layers: &[(Vec<u8>, Digest)]| -> Vec<(Digest, u64)> {
        layers
            .iter()
            .map(|(bytes, _)| (Digest::of(bytes), bytes.len() as u64))
            .collect()
    };
    let layers = [sizes(&v1_layers), sizes(&v2_layers)];
    let mut v1 = image(&mut out, "amd64", &v1_layers)?;
    let mut v2 = image(&mut out, "amd64", &v2_layers)?;
    v1.platform = None;
    v2.platform = None;
    out.tag("v1", &v1);
    out.tag("v2", &v2);
    out.finish()?;
    Ok(FamilyImages { v1, v2, layers })
}

/// The shared base layer: about `binary_kib` KiB of binaries and a tree of text files.
pub fn base_files(binary_kib: usize) -> Vec<(String, Vec<u8>, u32)> {
    let mut rng = Bytes(0x0bad_5eed);
    let mut files = Vec::new();
    for (i, name) in ["sh", "ls", "cat", "tar", "libc.so.6", "libssl.so.3"]
        .iter()
        .enumerate()
    {
        let dir = if name.starts_with("lib") {
            "usr/lib"
        } else {
            "bin"
        };
        files.push((
            format!("{dir}/{name}"),
            rng.binary(binary_kib * 1024 / 6 + i * 977),
            0o755,
        ));
    }
    for i in 0..60 {
        files.push((
            format!("etc/conf.d/service{i:02}.conf"),
            rng.text(2_000 + i * 131),
            0o644,
        ));
        files.push((
            format!("usr/share/doc/pkg{i:02}/README"),
            rng.text(6_000 + i * 57),
            0o644,
        ));
    }
    files
}

/// The app layer of `version`: a server binary and its configuration.
pub fn app_files(version: u64, binary_kib: usize) -> Vec<(String, Vec<u8>, u32)> {
    let mut rng = Bytes(0xa99 + version * 0x9e37_79b9);
    vec![
        (
            "app/bin/server".into(),
            rng.binary(binary_kib * 1024),
            0o755,
        ),
        ("app/etc/server.toml".into(), rng.text(3_000), 0o644),
        (
            "app/VERSION".into(),
            format!("{version}\n").into_bytes(),
            0o644,
        ),
    ]
}

/// Writes an image (config and manifest) with `layers` into `out`; returns
/// the manifest's descriptor (with `platform` set).
pub fn image(
    out: &mut LayoutWriter,
    arch: &str,
    layers: &[(Vec<u8>, Digest)],
) -> io::Result<Descriptor> {
    let diff_ids: Vec<String> = layers.iter().map(|(_, d)| d.to_string()).collect();
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Entrypoint": ["/app/bin/server"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = out.put(media::OCI_CONFIG, config.to_string().as_bytes())?;
    let mut layer_descs = Vec::new();
    for (bytes, _) in layers {
        layer_descs.push(out.put(media::OCI_LAYER_GZIP, bytes)?);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": config, "layers": layer_descs,
    });
    let mut desc = out.put(media::OCI_MANIFEST, manifest.to_string().as_bytes())?;
    desc.platform = Some(serde_json::json!({"architecture": arch, "os": "linux"}));
    Ok(desc)
}

/// What [`test_layout`] wrote.
pub struct TestImages {
    pub v1: Descriptor,
    pub v2: Descriptor,
    pub multi: Descriptor,
    pub signature: Descriptor,
}

/// Writes the test layout to `dir`: tags `v1` and `v2` (single-arch, sharing
/// a base layer of about `base_kib` KiB, app layers of about `app_kib`
/// KiB), `multi` (an index of amd64 v2 and an arm64 image), and an untagged
/// signature whose subject is v1.
pub fn test_layout(dir: &Path, base_kib: usize, app_kib: usize) -> io::Result<TestImages> {
    let mut out = LayoutWriter::create(dir)?;
    let base = layer(&base_files(base_kib))?;
    let v1 = image(
        &mut out,
        "amd64",
        &[base.clone(), layer(&app_files(1, app_kib))?],
    )?;
    let v2 = image(
        &mut out,
        "amd64",
        &[base.clone(), layer(&app_files(2, app_kib))?],
    )?;
    let arm = image(&mut out, "arm64", &[base, layer(&app_files(102, app_kib))?])?;
    let mut v1_plain = v1.clone();
    v1_plain.platform = None;
    let mut v2_plain = v2.clone();
    v2_plain.platform = None;
    out.tag("v1", &v1_plain);
    out.tag("v2", &v2_plain);
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX,
        "manifests": [v2, arm],
    });
    let multi = out.put(media::OCI_INDEX, index.to_string().as_bytes())?;
    out.tag("multi", &multi);
    let empty = out.put(media::OCI_EMPTY, b"{}")?;
    let sig = out.put(
        "application/vnd.example.signature.v1",
        b"signed: v1 by the release key",
    )?;
    let signature = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature.v1",
        "config": empty, "layers": [sig], "subject": v1_plain,
    });
    let signature = out.put(media::OCI_MANIFEST, signature.to_string().as_bytes())?;
    out.add_untagged(&signature);
    out.finish()?;
    Ok(TestImages {
        v1: v1_plain,
        v2: v2_plain,
        multi,
        signature,
    })
}
