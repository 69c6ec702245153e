//! `ferry key new|show|rotate|revoke|publish`: publisher keys and the
//! signed key statements that rotate or revoke them; `ferry key
//! anchor|admit`: a trust anchor for QUIC admission, and the certificates it
//! issues to nodes.
//!
//! A publisher key signs releases; it is separate from every node key, and
//! belongs on the machine that publishes, not on relays or leaves. Nodes
//! name the keys they trust in their policy (`ed25519:<hex>`).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use ferry_trust::{PublicKey, PublisherKey, Signed, Statement};
use ferryd::admin::Request;

use ferry_link::identity::NodeKey;
use ferry_link::quic::anchor;

use crate::daemon::{Common, ask};

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Make a new publisher key; print its public key and a policy rule.
    New {
        /// Where to write the private key (PKCS#8 PEM, mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print a key file's public key.
    Show {
        key: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Make a successor key and a statement, signed by the old key, that
    /// hands the old key's rights to it and retires the old key.
    Rotate {
        /// The current key.
        #[arg(long)]
        key: PathBuf,
        /// Where to write the new private key.
        #[arg(long)]
        out: PathBuf,
        /// Where to write the signed rotation statement.
        #[arg(long)]
        statement: PathBuf,
    },
    /// Sign a statement revoking a key: the key itself, or any key when the
    /// signer is an admin key of the nodes' policy.
    Revoke {
        /// The signing key.
        #[arg(long)]
        key: PathBuf,
        /// The key to revoke (`ed25519:<hex>`); default: the signing key.
        #[arg(long)]
        revoke: Option<PublicKey>,
        #[arg(long)]
        reason: String,
        /// Where to write the signed revocation statement.
        #[arg(long)]
        statement: PathBuf,
    },
    /// Hand a signed key statement to the running daemon to send to
    /// ENDPOINT (a peer, a node id, or group:NAME); every node it reaches
    /// takes it into its trust state.
    Publish {
        #[command(flatten)]
        common: Common,
        statement: PathBuf,
        #[arg(long)]
        to: String,
    },
    /// Write a trust anchor's CA certificate (DER) for the anchor key KEY
    /// (made first if it does not exist): peers list it in `[trust]
    /// anchors` to admit the nodes it certifies.
    Anchor {
        /// The anchor's private key (PKCS#8 PEM, mode 0600).
        #[arg(long)]
        key: PathBuf,
        /// Where to write the certificate.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue a node a certificate (DER) from the anchor key: the node sets
    /// it as `[node] certificate` and is admitted where the anchor is.
    Admit {
        /// The anchor's private key.
        #[arg(long)]
        anchor: PathBuf,
        /// The node's public key (`ed25519:<hex>`, logged by its ferryd at
        /// start as node_key).
        #[arg(long)]
        node: PublicKey,
        /// Where to write the certificate.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

pub fn run(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::New { out, force } => {
            refuse_overwrite(&out, force)?;
            let key = PublisherKey::generate()?;
            key.save(&out)?;
            println!("{}", key.public());
            eprintln!(
                "wrote {}; trust it at a node with:\n\n[[trust.publisher]]\nkey = \"{}\"\ngit = [\"REPOSITORY-PATTERN\"]\noci = [\"IMAGE-PATTERN\"]",
                out.display(),
                key.public()
            );
        }
        KeyCommand::Show { key, json } => {
            let public = PublisherKey::load(&key)?.public();
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "public_key": public.to_string() })
                );
            } else {
                println!("{public}");
            }
        }
        KeyCommand::Rotate {
            key,
            out,
            statement,
        } => {
            refuse_overwrite(&out, false)?;
            let old = PublisherKey::load(&key)?;
            let new = PublisherKey::generate()?;
            let signed = Signed::sign(
                &old,
                &Statement::Rotation {
                    new_key: new.public(),
                },
                now_ms(),
            );
            new.save(&out)?;
            write_statement(&statement, &signed)?;
            println!("{}", new.public());
            eprintln!(
                "{} → {}: new key in {}, rotation statement in {}",
                old.public(),
                new.public(),
                out.display(),
                statement.display()
            );
        }
        KeyCommand::Revoke {
            key,
            revoke,
            reason,
            statement,
        } => {
            let signer = PublisherKey::load(&key)?;
            let revoked = revoke.unwrap_or_else(|| signer.public());
            let signed = Signed::sign(
                &signer,
                &Statement::Revocation { revoked, reason },
                now_ms(),
            );
            write_statement(&statement, &signed)?;
            eprintln!(
                "{revoked} revoked by {}: statement in {}",
                signer.public(),
                statement.display()
            );
        }
        KeyCommand::Publish {
            common,
            statement,
            to,
        } => {
            // The daemon runs elsewhere: name the file absolutely.
            let statement = std::path::absolute(&statement)
                .with_context(|| format!("{}", statement.display()))?;
            let answer = ask(&common, Request::KeyPublish { statement, to })?;
            println!("{}", answer["bundle"].as_str().unwrap_or_default());
        }
        KeyCommand::Anchor { key, out, days } => {
            let anchor = match key.exists() {
                true => NodeKey::load(&key)?,
                false => {
                    let made = NodeKey::generate()?;
                    made.save(&key)?;
                    eprintln!("made anchor key {}", key.display());
                    made
                }
            };
            let cert = anchor::anchor_certificate(&anchor, days)?;
            std::fs::write(&out, cert.as_ref()).with_context(|| format!("{}", out.display()))?;
            println!(
                "anchor {} (valid {days} days): list {} in [trust] anchors",
                PublicKey(anchor.public_key()),
                out.display()
            );
        }
        KeyCommand::Admit {
            anchor: key,
            node,
            out,
            days,
        } => {
            let anchor = NodeKey::load(&key)?;
            let cert = anchor::admit(&anchor, &node.0, days)?;
            std::fs::write(&out, cert.as_ref()).with_context(|| format!("{}", out.display()))?;
            println!(
                "certified {node} (node {}) for {days} days: set [node] certificate = {:?}",
                ferry_link::identity::node_id_from_public_key(&node.0),
                out.display().to_string()
            );
        }
    }
    Ok(())
}

fn refuse_overwrite(path: &Path, force: bool) -> anyhow::Result<()> {
    if !force && path.exists() {
        bail!(
            "{} exists; a key file is never overwritten without --force",
            path.display()
        );
    }
    Ok(())
}

fn write_statement(path: &Path, signed: &Signed) -> anyhow::Result<()> {
    std::fs::write(path, signed.encode()).with_context(|| format!("{}", path.display()))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
