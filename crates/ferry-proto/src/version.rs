//! Version and capability negotiation from two `Hello` messages.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use crate::v1::{Capability, Hello};

/// Protocol versions this build speaks.
pub const SUPPORTED_VERSIONS: RangeInclusive<u32> = 1..=1;

/// What a session runs with once both hellos are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub version: u32,
    pub capabilities: BTreeSet<Capability>,
    /// Largest frame both sides accept.
    pub max_frame_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no common protocol version: we speak {ours_min}..={ours_max}, the peer speaks {theirs_min}..={theirs_max}"
)]
pub struct VersionError {
    pub ours_min: u32,
    pub ours_max: u32,
    pub theirs_min: u32,
    pub theirs_max: u32,
}

/// The highest common version, the common capabilities and the smaller frame limit.
/// Capabilities this build does not know are ignored.
pub fn negotiate(ours: &Hello, theirs: &Hello) -> Result<Negotiated, VersionError> {
    let low = ours.min_version.max(theirs.min_version);
    let high = ours.max_version.min(theirs.max_version);
    if low > high {
        return Err(VersionError {
            ours_min: ours.min_version,
            ours_max: ours.max_version,
            theirs_min: theirs.min_version,
            theirs_max: theirs.max_version,
        });
    }
    let known = |hello: &Hello| -> BTreeSet<Capability> {
        hello
            .capabilities
            .iter()
            .filter_map(|&c| Capability::try_from(c).ok())
            .filter(|&c| c != Capability::Unspecified)
            .collect()
    };
    Ok(Negotiated {
        version: high,
        capabilities: known(ours).intersection(&known(theirs)).copied().collect(),
        max_frame_size: ours.max_frame_size.min(theirs.max_frame_size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(min: u32, max: u32, caps: &[i32]) -> Hello {
        Hello {
            min_version: min,
            max_version: max,
            capabilities: caps.to_vec(),
            max_frame_size: 1400,
            ..Default::default()
        }
    }

    #[test]
    fn picks_highest_common_version_and_shared_capabilities() {
        let ours = hello(
            1,
            3,
            &[Capability::Pipeline as i32, Capability::PieceRepair as i32],
        );
        let theirs = hello(2, 5, &[Capability::PieceRepair as i32, 999]);
        let n = negotiate(&ours, &theirs).unwrap();
        assert_eq!(n.version, 3);
        assert_eq!(n.capabilities, BTreeSet::from([Capability::PieceRepair]));
    }

    #[test]
    fn disjoint_versions_are_an_error() {
        let err = negotiate(&hello(1, 1, &[]), &hello(2, 3, &[])).unwrap_err();
        assert_eq!(err.theirs_min, 2);
    }
}
