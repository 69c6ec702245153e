//! Chunk size parameters and their validation.

use fastcdc::v2020;

/// Chunk size parameters of FastCDC v2020 (normalisation level 1).
///
/// Changing any of them changes every boundary, and so every chunk id: all
/// nodes exchanging objects should agree on one configuration. The defaults
/// (4 KiB / 16 KiB / 64 KiB) are ferry's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkerConfig {
    /// No chunk is shorter than this, except the last chunk of an object.
    pub min_size: u32,
    /// The target size; normalised chunking clusters chunk sizes around it.
    pub avg_size: u32,
    /// No chunk is longer than this.
    pub max_size: u32,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A [`ChunkerConfig`] outside the limits of FastCDC v2020.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{field} = {value} is outside FastCDC's range {min}..={max}")]
    OutOfRange {
        field: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    #[error("{field} = {value} must be even (FastCDC v2020 tests cut points in pairs)")]
    Odd { field: &'static str, value: u32 },
    #[error(
        "sizes must satisfy min_size <= avg_size <= max_size, found {min_size} / {avg_size} / {max_size}"
    )]
    Unordered {
        min_size: u32,
        avg_size: u32,
        max_size: u32,
    },
}

impl ChunkerConfig {
    /// 4 KiB / 16 KiB / 64 KiB.
    pub const DEFAULT: Self = Self {
        min_size: 4 * 1024,
        avg_size: 16 * 1024,
        max_size: 64 * 1024,
    };

    /// A validated configuration.
    pub fn new(min_size: u32, avg_size: u32, max_size: u32) -> Result<Self, ConfigError> {
        let config = Self {
            min_size,
            avg_size,
            max_size,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the sizes against FastCDC v2020's limits: `min_size` in
    /// 64 B..=1 MiB, `avg_size` in 256 B..=4 MiB, `max_size` in 1 KiB..=16 MiB,
    /// all even, and `min_size <= avg_size <= max_size`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ranges = [
            (
                "min_size",
                self.min_size,
                v2020::MINIMUM_MIN,
                v2020::MINIMUM_MAX,
            ),
            (
                "avg_size",
                self.avg_size,
                v2020::AVERAGE_MIN,
                v2020::AVERAGE_MAX,
            ),
            (
                "max_size",
                self.max_size,
                v2020::MAXIMUM_MIN,
                v2020::MAXIMUM_MAX,
            ),
        ];
        for (field, value, min, max) in ranges {
            // The crate's limits all fit in u32 (the largest is 16 MiB).
            let (min, max) = (min as u32, max as u32);
            if !(min..=max).contains(&value) {
                return Err(ConfigError::OutOfRange {
                    field,
                    value,
                    min,
                    max,
                });
            }
            if !value.is_multiple_of(2) {
                return Err(ConfigError::Odd { field, value });
            }
        }
        if !(self.min_size <= self.avg_size && self.avg_size <= self.max_size) {
            return Err(ConfigError::Unordered {
                min_size: self.min_size,
                avg_size: self.avg_size,
                max_size: self.max_size,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        ChunkerConfig::default().validate().unwrap();
        assert_eq!(ChunkerConfig::default().avg_size, 16384);
    }

    #[test]
    fn limits_are_enforced() {
        assert!(matches!(
            ChunkerConfig::new(32, 256, 1024),
            Err(ConfigError::OutOfRange {
                field: "min_size",
                ..
            })
        ));
        assert!(matches!(
            ChunkerConfig::new(64, 256, 32 * 1024 * 1024),
            Err(ConfigError::OutOfRange {
                field: "max_size",
                ..
            })
        ));
        assert!(matches!(
            ChunkerConfig::new(64, 257, 1024),
            Err(ConfigError::Odd {
                field: "avg_size",
                ..
            })
        ));
        assert!(matches!(
            ChunkerConfig::new(4096, 2048, 8192),
            Err(ConfigError::Unordered { .. })
        ));
        ChunkerConfig::new(64, 256, 1024).unwrap();
    }
}
