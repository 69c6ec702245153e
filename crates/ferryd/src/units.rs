//! Human units in configuration and on the command line: byte sizes
//! (`512`, `64K`, `10MiB`, `4.7G`) and link rates (`2400 bit/s`, `2 Mbit/s`).

/// Splits `12.5 Mbit/s` into the number and the lower-cased unit.
fn number_and_unit(text: &str, example: &str) -> Result<(f64, String), String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value = number
        .parse()
        .map_err(|_| format!("{text:?} is not {example}"))?;
    Ok((value, unit.trim().to_ascii_lowercase()))
}

/// Parses a size; suffixes are binary (K = 1024), with or without `iB`/`B`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (value, unit) = number_and_unit(text, "a size (try 512M or 10G)")?;
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?} (use K, M, G or T)"
            ));
        }
    };
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// Parses a link rate in bits per second; suffixes are decimal (k = 1000),
/// with an optional `bit/s`, `bps` or `b/s`: `2400`, `5k`, `2 Mbit/s`.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let (value, unit) = number_and_unit(text, "a rate (try 2400 bit/s or 2 Mbit/s)")?;
    let prefix = ["bit/s", "bps", "b/s"]
        .iter()
        .find_map(|s| unit.strip_suffix(s))
        .unwrap_or(&unit);
    let scale = match prefix.trim() {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        other => {
            return Err(format!(
                "unknown rate unit {other:?} in {text:?} (use k, M or G)"
            ));
        }
    };
    let bps = value * scale;
    if !bps.is_finite() || bps < 1.0 || bps > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bps as u64)
}

#[cfg(test)]
mod tests {
    use super::{parse_rate, parse_size};

    #[test]
    fn parses_rates() {
        assert_eq!(parse_rate("2400").unwrap(), 2400);
        assert_eq!(parse_rate("2400 bit/s").unwrap(), 2400);
        assert_eq!(parse_rate("5k").unwrap(), 5000);
        assert_eq!(parse_rate("2 Mbit/s").unwrap(), 2_000_000);
        assert_eq!(parse_rate("512 kbps").unwrap(), 512_000);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("3 furlongs").is_err());
    }

    #[test]
    fn parses_plain_and_suffixed_sizes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("10MiB").unwrap(), 10 << 20);
        assert_eq!(parse_size("2GB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
    }

    #[test]
    fn rejects_nonsense() {
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
    }
}
