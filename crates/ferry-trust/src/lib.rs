//! Trust for releases: publisher keys, signed statements, and the policy a
//! node applies before it applies or serves a release.
//!
//! A publisher key ([`PublisherKey`], Ed25519, separate from every node key)
//! signs a [`ReleaseClaim`] — kind, name, destination, a monotonic version,
//! the digest of the adapter's release and the payload's manifest id — as a
//! [`Signed`] statement that travels with the bundle. Relays carry it
//! unread. A node that applies or serves releases checks it with
//! [`Trust::check_release`]: the signature, the key's standing (rotations and
//! revocations, themselves signed statements), the [`Policy`] (which key may
//! publish which names to which destinations), that the claim matches what
//! arrived, and that the version is newer than any accepted.
//!
//! - [`key`]: keys and their text form `ed25519:<hex>`.
//! - [`keyfile`]: private keys on disk (PKCS#8 PEM, written atomically).
//! - [`statement`]: statements and their signed wire form.
//! - [`pattern`]: name patterns (`fleet/*`, `fleet/**`).
//! - [`policy`]: the policy's rules.
//! - [`trust`]: checking, and the state learnt from accepted statements.
//! - [`seal`]: group keys and sealing; [`envelope`]: sealed bundles.
//! - [`volume`]: signatures of removable-media files.

pub mod envelope;
pub mod key;
pub mod keyfile;
pub mod pattern;
pub mod policy;
pub mod seal;
pub mod statement;
pub mod trust;
pub mod volume;

pub use key::{PublicKey, PublisherKey};
pub use pattern::Pattern;
pub use policy::{Policy, PublisherRule};
pub use statement::{Kind, ReleaseClaim, Signed, Statement, StatementError};
pub use trust::{Accepted, Arrived, KeyChange, Refusal, Served, Trust, TrustState};
