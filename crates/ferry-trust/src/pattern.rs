//! Name patterns in a trust policy: `/`-separated segments, where `*`
//! matches any run of characters within one segment and a segment `**`
//! matches any number of whole segments (none included). Everything else
//! matches itself: `fleet/*` takes `fleet/app` but not `fleet/app/db`;
//! `fleet/**` takes both; `group:bush-*` takes `group:bush-north`.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// Whether `name` matches. A name with an empty, `.` or `..` segment
    /// matches nothing.
    pub fn matches(&self, name: &str) -> bool {
        if name.split('/').any(|seg| matches!(seg, "" | "." | "..")) {
            return false;
        }
        let pattern: Vec<&str> = self.0.split('/').collect();
        let name: Vec<&str> = name.split('/').collect();
        segments_match(&pattern, &name)
    }
}

fn segments_match(pattern: &[&str], name: &[&str]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((&"**", rest)) => (0..=name.len()).any(|skip| segments_match(rest, &name[skip..])),
        Some((first, rest)) => name
            .split_first()
            .is_some_and(|(n, name_rest)| glob(first, n) && segments_match(rest, name_rest)),
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

impl FromStr for Pattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 256 {
            return Err(format!("{s:?}: a pattern is 1 to 256 characters"));
        }
        if s.split('/')
            .any(|seg| seg.is_empty() || (seg.contains("**") && seg != "**"))
        {
            return Err(format!(
                "{s:?}: empty segment, or ** not a whole segment (write a/**/b)"
            ));
        }
        Ok(Pattern(s.to_owned()))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        s.parse().unwrap()
    }

    #[test]
    fn segments_and_globs() {
        assert!(p("fleet/*").matches("fleet/app"));
        assert!(!p("fleet/*").matches("fleet/app/db"));
        assert!(!p("fleet/*").matches("fleet"));
        assert!(p("fleet/**").matches("fleet/app/db"));
        assert!(p("fleet/**").matches("fleet"));
        assert!(p("**").matches("anything/at/all"));
        assert!(p("a/**/z").matches("a/z"));
        assert!(p("a/**/z").matches("a/b/c/z"));
        assert!(!p("a/**/z").matches("a/b/c"));
        assert!(p("group:bush-*").matches("group:bush-north"));
        assert!(!p("group:bush-*").matches("group:base"));
        assert!(p("*-app-*").matches("x-app-y"));
        assert!(!p("*-app-*").matches("x-ap-y"));
        assert!(!p("ab*ba").matches("aba"));
        assert!(p("ab*ba").matches("abba"));
        assert!(p("exact").matches("exact"));
        assert!(!p("exact").matches("exactly"));
        assert!(!p("fleet/*").matches("fleet/.."));
        assert!(!p("**").matches("a/../b"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "a//b", "a/**x/b", "/a", "a/"] {
            assert!(bad.parse::<Pattern>().is_err(), "{bad:?}");
        }
    }
}
