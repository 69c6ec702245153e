//! `ferry oci`: publish container images through the running daemon, and
//! export what a leaf holds to an OCI image layout.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use ferryd::admin::{Request, request};

use crate::daemon::Common;

#[derive(clap::Subcommand)]
pub enum OciCommand {
    /// Publish tags of an image source as one release (one bundle) to a
    /// destination. SOURCE is oci:DIR[:TAG] (an OCI image layout, e.g.
    /// written by `skopeo copy ... oci:DIR:TAG`), docker-archive:FILE[:TAG]
    /// (a `docker save` tar), docker://HOST/REPO[:TAG]
    /// (a registry over HTTPS) or docker+http://HOST/REPO[:TAG] (plain
    /// HTTP); every blob is verified against its digest before anything is
    /// sent.
    Publish {
        #[command(flatten)]
        common: Common,
        source: String,
        /// A tag to publish (repeatable); none: the tag SOURCE names, or
        /// every tag of the source.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// The repository the leaf serves it as (default: the registry's
        /// repository, or the layout's or archive's file name), e.g.
        /// library/nginx.
        #[arg(long)]
        repository: Option<String>,
        /// A peer name, a node id, or group:NAME.
        #[arg(long)]
        to: String,
        /// A file holding user:password for a registry source.
        #[arg(long)]
        credentials: Option<PathBuf>,
        /// Seconds the bundle may live before it is deleted undelivered.
        #[arg(long)]
        lifetime: Option<u64>,
    },
    /// Write a repository's tags, as a leaf holds them, to an OCI image
    /// layout (read from the image store directly: `[oci] root`).
    Export {
        /// The leaf's image store (`[oci] root` in ferryd.toml).
        #[arg(long)]
        root: PathBuf,
        /// REPOSITORY or REPOSITORY:TAG.
        image: String,
        /// The layout directory to write (created, or added to).
        dest: PathBuf,
    },
}

pub fn run(command: OciCommand) -> anyhow::Result<()> {
    match command {
        OciCommand::Publish {
            common,
            source,
            tags,
            repository,
            to,
            credentials,
            lifetime,
        } => {
            // The daemon resolves paths from its own directory: send an absolute one.
            let cwd = std::env::current_dir().context("the current directory")?;
            let source = ["oci:", "docker-archive:"]
                .iter()
                .find_map(|prefix| {
                    let rest = source.strip_prefix(prefix)?;
                    (!rest.starts_with('/'))
                        .then(|| format!("{prefix}{}", cwd.join(rest).display()))
                })
                .unwrap_or(source);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .context("starting the runtime")?;
            let answer = runtime
                .block_on(request(
                    &common.socket,
                    &Request::OciPublish {
                        source,
                        credentials: credentials
                            .map(std::path::absolute)
                            .transpose()
                            .context("resolving --credentials")?,
                        repository,
                        tags,
                        to,
                        lifetime_s: lifetime,
                    },
                ))
                .map_err(|e| anyhow!(e))?;
            if common.json {
                println!("{answer}");
            } else {
                println!(
                    "{} {}: {} blobs, {} B ({} B new)  bundle {}",
                    answer["repository"].as_str().unwrap_or("?"),
                    answer["tags"],
                    answer["blobs"],
                    answer["bytes"],
                    answer["new_bytes"],
                    answer["bundle"].as_str().unwrap_or("?"),
                );
                // Per layer: its recipe (or why none), what will cross.
                for layer in answer["layers"].as_array().into_iter().flatten() {
                    let mut line = format!(
                        "  {} {}: {} B gzip, {} B new of {} B to send",
                        layer["digest"].as_str().unwrap_or("?"),
                        layer["recipe"].as_str().unwrap_or("?"),
                        layer["blob_bytes"],
                        layer["new_bytes"],
                        layer["segment_bytes"],
                    );
                    if layer["rebuilt"].as_bool() == Some(true) {
                        line.push_str(&format!(
                            ", rebuild {:.0} ms",
                            layer["rebuild_ms"].as_f64().unwrap_or(0.0)
                        ));
                    }
                    println!("{line}");
                }
            }
            Ok(())
        }
        OciCommand::Export { root, image, dest } => {
            let (repository, tags) = match image.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), vec![tag.to_owned()]),
                _ => (image.clone(), Vec::new()),
            };
            if !root.join("repositories").is_dir() {
                return Err(anyhow!(
                    "{} is not an image store ([oci] root)",
                    root.display()
                ));
            }
            let images = ferry_oci::ImageStore::open(&root)
                .with_context(|| format!("opening {}", root.display()))?;
            let tags = images.export(&repository, &tags, &dest)?;
            println!("{repository} {tags:?} written to {}", dest.display());
            Ok(())
        }
    }
}
