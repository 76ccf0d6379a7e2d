//! Hourly downsampling, computed when a block closes and kept much longer than raw data
//! (utilization reports read the hourly max per container).

use crate::gorilla::Sample;

/// One hour of one series. NaN samples (staleness markers) are not counted.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HourlyPoint {
    /// Start of the hour, ms since the epoch (a multiple of 3,600,000).
    pub hour: i64,
    /// Number of samples in the hour.
    pub count: u32,
    /// Sum of the samples (mean = sum / count).
    pub sum: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Latest sample.
    pub last: f64,
}

impl HourlyPoint {
    /// Mean of the hour.
    pub fn mean(&self) -> f64 {
        self.sum / f64::from(self.count)
    }
}

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// Folds time-ordered samples into hourly points (hours without a non-NaN sample are absent).
pub fn hourly(samples: impl IntoIterator<Item = Sample>) -> Vec<HourlyPoint> {
    let mut out: Vec<HourlyPoint> = Vec::new();
    for s in samples {
        if s.v.is_nan() {
            continue;
        }
        let hour = s.t.div_euclid(HOUR_MS) * HOUR_MS;
        match out.last_mut() {
            Some(p) if p.hour == hour => {
                p.count += 1;
                p.sum += s.v;
                p.min = p.min.min(s.v);
                p.max = p.max.max(s.v);
                p.last = s.v;
            }
            _ => out.push(HourlyPoint {
                hour,
                count: 1,
                sum: s.v,
                min: s.v,
                max: s.v,
                last: s.v,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_hours_and_skips_nan() {
        let h = HOUR_MS;
        let pts = hourly([
            Sample::new(h - 1, 5.0),
            Sample::new(h, 1.0),
            Sample::new(h + 10, f64::NAN),
            Sample::new(h + 20, 3.0),
            Sample::new(3 * h + 1, -2.0),
        ]);
        assert_eq!(pts.len(), 3);
        assert_eq!((pts[0].hour, pts[0].count, pts[0].max), (0, 1, 5.0));
        assert_eq!(
            pts[1],
            HourlyPoint {
                hour: h,
                count: 2,
                sum: 4.0,
                min: 1.0,
                max: 3.0,
                last: 3.0
            }
        );
        assert_eq!(pts[1].mean(), 2.0);
        assert_eq!((pts[2].hour, pts[2].min), (3 * h, -2.0));
    }
}
