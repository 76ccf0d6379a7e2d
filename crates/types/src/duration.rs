//! Durations as people write them in YAML and flags: `500ms`, `30s`, `5m`,
//! `2h`, `1d` (a bare number is seconds). Stored and sent as the same text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration in milliseconds that reads and writes as `30s`, `5m`, `2h`…
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub u64);

/// Longest duration accepted: 10 years.
pub const MAX_MS: u64 = 10 * 365 * 86_400_000;

impl HumanDuration {
    /// `n` seconds.
    pub const fn secs(n: u64) -> Self {
        HumanDuration(n * 1000)
    }

    /// `n` minutes.
    pub const fn mins(n: u64) -> Self {
        HumanDuration(n * 60_000)
    }

    /// `n` hours.
    pub const fn hours(n: u64) -> Self {
        HumanDuration(n * 3_600_000)
    }

    /// Milliseconds.
    pub const fn ms(self) -> u64 {
        self.0
    }

    /// As a std duration.
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a duration: use e.g. 500ms, 30s, 10m, 2h, 1d"))?;
        let ms = match unit.trim() {
            "ms" => n,
            "" | "s" => n * 1e3,
            "m" => n * 60e3,
            "h" => n * 3600e3,
            "d" => n * 86_400e3,
            u => return Err(format!("{s:?}: unknown unit {u:?}: use ms, s, m, h or d")),
        };
        if !ms.is_finite() || ms < 0.0 || ms > MAX_MS as f64 {
            return Err(format!("{s:?} is out of range (at most 10 years)"));
        }
        Ok(HumanDuration(ms.round() as u64))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1000, "s"),
        ];
        for (size, unit) in units {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) if n.saturating_mul(1000) <= MAX_MS => Ok(HumanDuration::secs(n)),
            Raw::Secs(n) => Err(serde::de::Error::custom(format!(
                "{n} seconds is out of range (at most 10 years)"
            ))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, ms, shown) in [
            ("30s", 30_000, "30s"),
            ("5m", 300_000, "5m"),
            ("90m", 5_400_000, "90m"),
            ("2h", 7_200_000, "2h"),
            ("1d", 86_400_000, "1d"),
            ("500ms", 500, "500ms"),
            ("1.5s", 1500, "1500ms"),
            ("7", 7000, "7s"),
        ] {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.ms(), ms, "{text}");
            assert_eq!(d.to_string(), shown);
        }
        assert!("5 parsecs".parse::<HumanDuration>().is_err());
        assert!("-5s".parse::<HumanDuration>().is_err());
        assert!("20000d".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn serde_accepts_text_and_seconds() {
        let d: HumanDuration = serde_json::from_str("\"2h\"").unwrap();
        assert_eq!(d, HumanDuration::hours(2));
        let d: HumanDuration = serde_json::from_str("45").unwrap();
        assert_eq!(d, HumanDuration::secs(45));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"45s\"");
        assert!(serde_json::from_str::<HumanDuration>("\"soon\"").is_err());
    }
}
