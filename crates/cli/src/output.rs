//! Rendering for people and for programs: `-o table|json|yaml`, aligned
//! tables, human units (16 cores, 64 GiB) and ages (5m, 3d).

use serde::Serialize;

/// `-o` / `--output`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON, for scripts (`jq`).
    Json,
    /// YAML.
    Yaml,
}

/// Serializes `value` as JSON or YAML; `None` for `table`, which each
/// command renders itself.
pub fn structured<T: Serialize + ?Sized>(
    format: OutputFormat,
    value: &T,
) -> anyhow::Result<Option<String>> {
    Ok(match format {
        OutputFormat::Table => None,
        OutputFormat::Json => Some(serde_json::to_string_pretty(value)? + "\n"),
        OutputFormat::Yaml => Some(serde_norway::to_string(value)?),
    })
}

/// A table with a header row, columns padded to their widest cell and
/// separated by three spaces, as kubectl prints them.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new<I, S>(header: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (missing cells are blank; extra cells are kept).
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The table as text, one line per row, no trailing spaces.
    pub fn render(&self) -> String {
        let ncols = std::iter::once(&self.header)
            .chain(&self.rows)
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; ncols];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = r.get(i).map(String::as_str).unwrap_or("");
                line.push_str(cell);
                if i + 1 < ncols {
                    let pad = w - cell.chars().count() + 3;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Millicores as cores: `16 cores`, `1 core`, `2.5 cores`, `0.25 cores`.
pub fn cores(millis: u64) -> String {
    let n = cores_number(millis);
    if n == "1" {
        "1 core".to_string()
    } else {
        format!("{n} cores")
    }
}

/// Millicores as a bare number of cores: `16`, `2.5`, `0.25`.
pub fn cores_number(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        return (millis / 1000).to_string();
    }
    let s = format!("{:.2}", millis as f64 / 1000.0);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Bytes in binary units: `0 B`, `512 MiB`, `64 GiB`, `1.5 TiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut whole = n;
    while whole >= 1024 && unit + 1 < UNITS.len() {
        whole /= 1024;
        unit += 1;
    }
    let exact = n.is_multiple_of(1u64 << (10 * unit));
    if unit == 0 || exact {
        format!("{whole} {}", UNITS[unit])
    } else {
        let v = n as f64 / (1u64 << (10 * unit)) as f64;
        let s = format!("{v:.1}");
        format!("{} {}", s.trim_end_matches(".0"), UNITS[unit])
    }
}

/// `used / total` as a whole percentage (`-` when `total` is 0).
pub fn percent(used: u64, total: u64) -> String {
    if total == 0 {
        return "-".to_string();
    }
    format!("{}%", (used as u128 * 100 / total as u128))
}

/// Age of a timestamp like kubectl: `45s`, `12m`, `5h`, `3d` (`-` for 0,
/// meaning never set).
pub fn age(then_ms: u64, now_ms: u64) -> String {
    if then_ms == 0 {
        return "-".to_string();
    }
    let s = now_ms.saturating_sub(then_ms) / 1000;
    if s < 120 {
        format!("{s}s")
    } else if s < 120 * 60 {
        format!("{}m", s / 60)
    } else if s < 48 * 3600 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86400)
    }
}

/// Now, in unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `-` for an empty cell, so columns never look shifted.
pub fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let mut t = Table::new(["NAME", "STATE", "CPU"]);
        t.row(["host-1", "ready", "16"]);
        t.row(["h", "cordoned", ""]);
        assert_eq!(
            t.render(),
            "NAME     STATE      CPU\n\
             host-1   ready      16\n\
             h        cordoned\n"
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(cores(16_000), "16 cores");
        assert_eq!(cores(1_000), "1 core");
        assert_eq!(cores(2_500), "2.5 cores");
        assert_eq!(cores(250), "0.25 cores");
        assert_eq!(cores(0), "0 cores");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1000), "1000 B");
        assert_eq!(bytes(64 << 30), "64 GiB");
        assert_eq!(bytes(512 << 20), "512 MiB");
        assert_eq!(bytes(3 << 39), "1.5 TiB");
        assert_eq!(bytes((1 << 30) + 1), "1 GiB");
        assert_eq!(percent(1, 3), "33%");
        assert_eq!(percent(1, 0), "-");
    }

    #[test]
    fn ages_like_kubectl() {
        let now = 1_000_000_000;
        assert_eq!(age(0, now), "-");
        assert_eq!(age(now - 5_000, now), "5s");
        assert_eq!(age(now - 119_000, now), "119s");
        assert_eq!(age(now - 10 * 60_000, now), "10m");
        assert_eq!(age(now - 5 * 3_600_000, now), "5h");
        assert_eq!(age(now - 3 * 86_400_000, now), "3d");
        assert_eq!(age(now + 5_000, now), "0s", "clock skew is not negative");
    }

    #[test]
    fn structured_formats() {
        #[derive(Serialize)]
        struct X {
            a: u32,
        }
        assert_eq!(structured(OutputFormat::Table, &X { a: 1 }).unwrap(), None);
        let j = structured(OutputFormat::Json, &X { a: 1 })
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&j).unwrap()["a"],
            1
        );
        let y = structured(OutputFormat::Yaml, &X { a: 1 })
            .unwrap()
            .unwrap();
        assert_eq!(y.trim(), "a: 1");
    }
}
