//! The ferry peer daemon: tokio glue around ferry-core.
//!
//! - [`config`]: the TOML file, validated with the key and reason of every error.
//! - [`driver`]: the engine thread that owns `Engine<SharedStore>`.
//! - [`links`]: QUIC connections to peers, one per peer, pumped to the engine.
//! - [`serial_links`]: serial devices (acoustic, satellite modems), one per peer.
//! - [`admin`]: the Unix-socket API the `ferry` command talks to.
//! - [`restore`]: delivered files written back out, by manifest or by the name they were sent under.
//! - [`logbuf`]: the recent log lines `ferry logs` reads.
//! - [`metrics`]: Prometheus `/metrics`.
//! - [`discovery`]: mDNS advertising and browsing, enrolment of new leaves, `learned.json`.
//! - [`media`]: removable media: export volumes, import them, receipts, a watched mount point.
//! - [`git`]: Git releases: publish, apply delivered ones, read-only smart HTTP.
//! - [`oci`]: OCI releases: publishing, applying delivered ones, the leaf's registry.
//! - [`daemon`]: start-up, `ferryd init`, and clean shutdown on a signal.

pub mod admin;
pub mod config;
pub mod daemon;
pub mod discovery;
pub mod driver;
pub mod git;
pub mod links;
pub mod logbuf;
pub mod media;
pub mod metrics;
pub mod oci;
pub mod restore;
pub mod serial_links;
pub mod trust;
pub mod units;
