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

/// A gzip'd tar of `files` (path, bytes, mode) with fixed metadata; returns
/// (compressed layer, sha256 of the uncompressed tar = its diff id).
pub fn layer(files: &[(String, Vec<u8>, u32)]) -> io::Result<(Vec<u8>, Digest)> {
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
    let tar = tar.into_inner()?;
    let diff_id = Digest::of(&tar);
    let mut gz = GzEncoder::new(Vec::new(), Compression::new(6));
    gz.write_all(&tar)?;
    Ok((gz.finish()?, diff_id))
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
