//! A small online forecaster for a group's load: it predicts the peak over the
//! next few minutes (the provisioning horizon) and an upper quantile of it.
//!
//! Observations are folded into fixed buckets (the bucket keeps the highest
//! observation, since capacity must cover peaks). At each bucket close every
//! model predicts the peak of the next `horizon` buckets; each prediction is
//! scored when its horizon has passed, and the model with the lowest recent
//! error (an exponentially weighted mean absolute error) is used. The upper
//! quantile adds the chosen model's empirical residual quantile to its point
//! forecast, so a noisy series gets more headroom than a smooth one. It is
//! raised further by the seasonal rise bound: the peak of the last horizon
//! times how far the peak rose over one horizon around this time of day on
//! earlier days, so that headroom is placed where the load tends to jump.
//! An observation above the forecast raises it at once (not at the next
//! bucket close).
//!
//! Models:
//! * persistence: the last bucket;
//! * recent peak: the highest bucket of the last horizon;
//! * trend: the last bucket plus a Theil–Sen slope (robust to spikes);
//! * seasonal (one per season, e.g. a day and a week): the value one period
//!   ago, shifted by how much the recent level differs from the level one
//!   period ago (seasonal naive with a level correction, i.e. Holt–Winters
//!   with its smoothing constants pinned to 1).

use std::collections::VecDeque;

use jdos_types::UnixMillis;

/// Forecaster knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastConfig {
    /// Bucket length, seconds.
    pub step_seconds: u64,
    /// Seasonal periods, seconds (e.g. one day and one week).
    pub seasons_seconds: Vec<u64>,
    /// Buckets averaged to estimate the current level (seasonal models).
    pub level_window: usize,
    /// Buckets the trend slope is fitted over.
    pub trend_window: usize,
    /// Upper quantile of the residuals added to the point forecast.
    pub quantile: f64,
    /// Residuals kept for that quantile (a day of 1-minute buckets by
    /// default: a 99th percentile needs a long sample to be stable).
    pub residual_window: usize,
    /// Half-life of the error average, in buckets.
    pub error_halflife: f64,
    /// Scored forecasts a model needs before it may be used. Below 50 the
    /// nearest-rank 99th percentile of the residuals is their maximum, so
    /// an early forecast carries the widest margin seen (and the engine
    /// never scales below the HPA's recommendation on a forecast).
    pub min_scored: usize,
    /// Mean absolute error relative to the mean level above which the
    /// forecast is not trusted.
    pub max_relative_error: f64,
    /// Seasonal rise bound: earlier days (one `seasons_seconds[0]` apart)
    /// looked back at. 0 disables the bound.
    pub rise_days: usize,
    /// Half-width, in buckets, of the window around the same time on an
    /// earlier day in which a rise counts (recurring jobs start minutes
    /// early or late).
    pub rise_window: usize,
    /// The bound is the rise reached on at least this many of those days
    /// (2: one day's one-off jump is not enough).
    pub rise_min_days: usize,
    /// Raise the forecast as soon as an observation exceeds it.
    pub react_within_bucket: bool,
    /// Cold-start headroom: while the forecast is unusable for want of
    /// history, the group is kept large enough to carry this multiple of
    /// the highest load seen so far at full capacity (1.0 = none). With no
    /// history nothing bounds how far the load may rise within a start-up;
    /// 2.0 is the HPA's own scale-up allowance per period (100 %).
    pub cold_start_headroom: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            step_seconds: 60,
            seasons_seconds: vec![86_400, 7 * 86_400],
            level_window: 10,
            trend_window: 15,
            quantile: 0.99,
            residual_window: 1440,
            error_halflife: 60.0,
            min_scored: 20,
            max_relative_error: 0.25,
            rise_days: 7,
            rise_window: 5,
            rise_min_days: 2,
            react_within_bucket: true,
            cold_start_headroom: 2.0,
        }
    }
}

/// A forecasting method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// The last value.
    Persistence,
    /// The highest value of the last horizon (for noisy series the peak of
    /// the next few minutes looks like the peak of the last few).
    RecentPeak,
    /// The last value plus a robust linear trend.
    Trend,
    /// The value one season ago, level-corrected.
    Seasonal {
        /// Season length, seconds.
        period_seconds: u64,
    },
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Model::Persistence => f.write_str("persistence"),
            Model::RecentPeak => f.write_str("recent peak"),
            Model::Trend => f.write_str("trend"),
            Model::Seasonal { period_seconds } if period_seconds % 86_400 == 0 => {
                write!(f, "seasonal {}d", period_seconds / 86_400)
            }
            Model::Seasonal { period_seconds } if period_seconds % 3600 == 0 => {
                write!(f, "seasonal {}h", period_seconds / 3600)
            }
            Model::Seasonal { period_seconds } => write!(f, "seasonal {period_seconds}s"),
        }
    }
}

/// A forecast of the peak load over the horizon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// Point forecast of the peak.
    pub peak: f64,
    /// Upper quantile of the peak (raised to the seasonal rise bound). It
    /// may be below `peak` for a model that over-predicts (a negative
    /// residual quantile); the engine sizes for both.
    pub upper: f64,
    /// The seasonal rise factor in force: the peak over the horizon after
    /// the same time of day on earlier days, over the peak of the horizon
    /// before it (1.0 while the bound is off or has too few earlier days).
    pub rise: f64,
    /// The model used.
    pub model: Model,
    /// Its recent mean absolute error over the mean level.
    pub relative_error: f64,
    /// Horizon covered, seconds.
    pub horizon_seconds: u64,
}

/// Why no forecast may be used now.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum NoForecast {
    /// Not enough history has been scored yet.
    #[error("history too short: {have} of {need} scored forecasts")]
    ShortHistory {
        /// Scored forecasts of the best-covered model.
        have: usize,
        /// Needed.
        need: usize,
    },
    /// The best model has missed by too much recently.
    #[error("forecast error {error:.0}% above the {limit:.0}% limit ({model})")]
    Inaccurate {
        /// Best model.
        model: Model,
        /// Its relative error, percent.
        error: f64,
        /// The limit, percent.
        limit: f64,
    },
}

#[derive(Debug, Clone)]
struct ModelState {
    model: Model,
    /// (bucket index the forecast is due at, predicted peak).
    pending: VecDeque<(u64, f64)>,
    abs_error: f64,
    scored: usize,
    residuals: VecDeque<f64>,
    last: Option<f64>,
}

/// The online forecaster for one group.
#[derive(Debug, Clone)]
pub struct Forecaster {
    cfg: ForecastConfig,
    horizon_buckets: u64,
    horizon_seconds: u64,
    history: VecDeque<f64>,
    /// Bucket index of `history[0]`.
    first: u64,
    open: Option<(u64, f64)>,
    capacity: usize,
    models: Vec<ModelState>,
    level: Option<f64>,
    alpha: f64,
    current: Result<Forecast, NoForecast>,
    /// Per bucket of `history`: the peak of the horizon after it over the
    /// peak of the horizon up to it (NaN until the horizon has passed).
    rises: VecDeque<f64>,
    /// Buckets between the days the rise bound compares (0 = off).
    rise_period: u64,
    /// The rise factor for the current bucket, when the bound is in force.
    rise: Option<f64>,
}

impl Forecaster {
    /// A forecaster predicting the peak over the next `horizon_seconds`.
    pub fn new(cfg: ForecastConfig, horizon_seconds: u64) -> Self {
        let step = cfg.step_seconds.max(1);
        // The open bucket plus every bucket the horizon reaches into.
        let horizon_buckets = horizon_seconds.div_ceil(step) + 1;
        let mut models = vec![Model::Persistence, Model::RecentPeak, Model::Trend];
        let mut longest = 0u64;
        for &p in &cfg.seasons_seconds {
            if p / step > horizon_buckets {
                models.push(Model::Seasonal { period_seconds: p });
                longest = longest.max(p / step);
            }
        }
        let rise_period = match cfg.seasons_seconds.first() {
            Some(&p)
                if cfg.rise_days > 0 && p / step > horizon_buckets + cfg.rise_window as u64 =>
            {
                p / step
            }
            _ => 0,
        };
        let capacity = (longest as usize
            + cfg.level_window.max(cfg.trend_window)
            + horizon_buckets as usize
            + 2)
        .max(cfg.trend_window + 2)
        .max(
            rise_period as usize * cfg.rise_days
                + cfg.rise_window
                + 2 * horizon_buckets as usize
                + 2,
        );
        let alpha = 1.0 - 0.5f64.powf(1.0 / cfg.error_halflife.max(1.0));
        let need = cfg.min_scored;
        Forecaster {
            cfg,
            horizon_buckets,
            horizon_seconds,
            history: VecDeque::new(),
            first: 0,
            open: None,
            capacity,
            models: models
                .into_iter()
                .map(|model| ModelState {
                    model,
                    pending: VecDeque::new(),
                    abs_error: 0.0,
                    scored: 0,
                    residuals: VecDeque::new(),
                    last: None,
                })
                .collect(),
            level: None,
            alpha,
            current: Err(NoForecast::ShortHistory { have: 0, need }),
            rises: VecDeque::new(),
            rise_period,
            rise: None,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &ForecastConfig {
        &self.cfg
    }

    /// Adds an observation of the group's total load at `now`.
    pub fn observe(&mut self, now: UnixMillis, load: f64) {
        if !load.is_finite() {
            return;
        }
        let load = load.max(0.0);
        let idx = now / (self.cfg.step_seconds.max(1) * 1000);
        match self.open {
            None => self.open = Some((idx, load)),
            Some((open, v)) if idx <= open => self.open = Some((open, v.max(load))),
            Some((open, v)) => {
                self.close(open, v);
                // Gaps repeat the last value: a missed scrape is not zero load.
                for gap in open + 1..idx {
                    self.close(gap, v);
                }
                self.open = Some((idx, load));
            }
        }
    }

    /// The forecast made at the last bucket close, or why there is none.
    pub fn forecast(&self) -> Result<Forecast, NoForecast> {
        let mut f = self.current?;
        // An observation of the open bucket above the forecast peak is a
        // miss already: shift the forecast up by it now rather than at the
        // bucket close (up to a bucket later).
        if let (true, Some((_, v))) = (self.cfg.react_within_bucket, self.open) {
            if v > f.peak {
                f.upper += v - f.peak;
                f.peak = v;
            }
        }
        Ok(f)
    }

    /// Every model with its recent mean absolute error and how many of its
    /// forecasts were scored.
    pub fn model_errors(&self) -> Vec<(Model, f64, usize)> {
        self.models
            .iter()
            .map(|m| (m.model, m.abs_error, m.scored))
            .collect()
    }

    /// The highest load observed in the history held and the open bucket.
    pub fn highest_seen(&self) -> Option<f64> {
        self.history
            .iter()
            .copied()
            .chain(self.open.map(|(_, v)| v))
            .reduce(f64::max)
    }

    /// Buckets of history held.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    fn get(&self, idx: u64) -> Option<f64> {
        self.history.get(self.offset(idx)?).copied()
    }

    /// Offset of bucket `idx` in `history` and `rises` (which run in step).
    fn offset(&self, idx: u64) -> Option<usize> {
        usize::try_from(idx.checked_sub(self.first)?).ok()
    }

    fn close(&mut self, idx: u64, value: f64) {
        if self.history.is_empty() {
            self.first = idx;
        }
        self.history.push_back(value);
        self.rises.push_back(f64::NAN);
        while self.history.len() > self.capacity {
            self.history.pop_front();
            self.rises.pop_front();
            self.first += 1;
        }
        self.record_rise(idx);
        self.level = Some(match self.level {
            None => value,
            Some(l) => l + self.alpha * (value - l),
        });
        // Score forecasts due now against the realized peak.
        let k = self.horizon_buckets;
        let actual = (idx + 1 - k.min(idx + 1)..=idx)
            .filter_map(|i| self.get(i))
            .fold(f64::MIN, f64::max);
        let (alpha, window) = (self.alpha, self.cfg.residual_window);
        for m in &mut self.models {
            while let Some(&(due, pred)) = m.pending.front() {
                if due > idx {
                    break;
                }
                m.pending.pop_front();
                if due < idx {
                    continue;
                }
                let r = actual - pred;
                m.abs_error = if m.scored == 0 {
                    r.abs()
                } else {
                    m.abs_error + alpha * (r.abs() - m.abs_error)
                };
                m.scored += 1;
                m.residuals.push_back(r);
                if m.residuals.len() > window {
                    m.residuals.pop_front();
                }
            }
        }
        for i in 0..self.models.len() {
            let p = self.predict(self.models[i].model, idx);
            let m = &mut self.models[i];
            m.last = p;
            if let Some(p) = p {
                m.pending.push_back((idx + k, p));
            }
        }
        self.rise = self.seasonal_rise(idx);
        self.current = self.choose();
    }

    /// Highest value of buckets `from ..= to`, if all are held.
    fn peak(&self, from: u64, to: u64) -> Option<f64> {
        let mut m = f64::MIN;
        for i in from..=to {
            m = m.max(self.get(i)?);
        }
        Some(m)
    }

    /// Bucket `idx` closes the horizon after bucket `idx - k`: record how
    /// far the peak rose over that horizon relative to the horizon before.
    fn record_rise(&mut self, idx: u64) {
        let k = self.horizon_buckets;
        let Some(at) = idx.checked_sub(k) else { return };
        let Some(before_from) = (at + 1).checked_sub(k) else {
            return;
        };
        let (Some(after), Some(before)) = (self.peak(at + 1, idx), self.peak(before_from, at))
        else {
            return;
        };
        if before > 0.0 {
            if let Some(slot) = self.offset(at).and_then(|o| self.rises.get_mut(o)) {
                *slot = after / before;
            }
        }
    }

    /// The seasonal rise bound at bucket `last`: on each earlier day, the
    /// largest rise within `rise_window` buckets of the same time; the
    /// `rise_min_days`-th largest of those (never below 1). A jump faster
    /// than a start-up can only be covered by capacity placed before it,
    /// and recurring jobs jump at the same time every day. On a noisy series
    /// it is above 1 nearly always (Alibaba at 10 s: median 1.2 at a 60 s
    /// start-up; Azure at 5 min: 1.01), so it acts as a time-of-day-local
    /// upper quantile of the horizon's rise rather than a rare alarm.
    fn seasonal_rise(&self, last: u64) -> Option<f64> {
        let p = self.rise_period;
        if p == 0 {
            return None;
        }
        let w = self.cfg.rise_window as u64;
        let mut days = Vec::with_capacity(self.cfg.rise_days);
        for d in 1..=self.cfg.rise_days as u64 {
            let Some(centre) = last.checked_sub(d * p) else {
                break;
            };
            if centre + w < self.first {
                break;
            }
            let mut best: Option<f64> = None;
            for i in centre.saturating_sub(w)..=centre + w {
                let g = self
                    .offset(i)
                    .and_then(|o| self.rises.get(o))
                    .copied()
                    .filter(|g| g.is_finite());
                if let Some(g) = g {
                    best = Some(best.map_or(g, |b: f64| b.max(g)));
                }
            }
            days.extend(best);
        }
        let n = self.cfg.rise_min_days.max(1);
        if days.len() < n {
            return None;
        }
        days.sort_by(|a, b| b.total_cmp(a));
        Some(days[n - 1].max(1.0))
    }

    /// Peak of buckets `last+1 ..= last+horizon` as seen by `model`.
    fn predict(&self, model: Model, last: u64) -> Option<f64> {
        let k = self.horizon_buckets;
        let y = self.get(last)?;
        match model {
            Model::Persistence => Some(y),
            Model::RecentPeak => self.peak(last.saturating_sub(k - 1), last),
            Model::Trend => {
                let w = self.cfg.trend_window as u64;
                let pts: Vec<(f64, f64)> = (last.checked_sub(w - 1)?..=last)
                    .map(|i| self.get(i).map(|v| (i as f64, v)))
                    .collect::<Option<_>>()?;
                let slope = theil_sen(&pts);
                Some((y + slope * k as f64).max(y))
            }
            Model::Seasonal { period_seconds } => {
                let p = period_seconds / self.cfg.step_seconds.max(1);
                let w = self.cfg.level_window as u64;
                let start = last.checked_sub(p + w - 1)?;
                if start < self.first {
                    return None;
                }
                let mean = |from: u64| -> Option<f64> {
                    let mut s = 0.0;
                    for i in from..from + w {
                        s += self.get(i)?;
                    }
                    Some(s / w as f64)
                };
                let shift = mean(last + 1 - w)? - mean(last + 1 - w - p)?;
                let mut peak = f64::MIN;
                for j in 1..=k {
                    peak = peak.max(self.get(last + j - p)? + shift);
                }
                Some(peak.max(0.0))
            }
        }
    }

    fn choose(&self) -> Result<Forecast, NoForecast> {
        let need = self.cfg.min_scored;
        let best = self
            .models
            .iter()
            .filter(|m| m.scored >= need && m.last.is_some())
            .min_by(|a, b| a.abs_error.total_cmp(&b.abs_error));
        let Some(best) = best else {
            let have = self.models.iter().map(|m| m.scored).max().unwrap_or(0);
            return Err(NoForecast::ShortHistory { have, need });
        };
        let level = self.level.unwrap_or(0.0).max(f64::EPSILON);
        let rel = best.abs_error / level;
        if rel > self.cfg.max_relative_error {
            return Err(NoForecast::Inaccurate {
                model: best.model,
                error: rel * 100.0,
                limit: self.cfg.max_relative_error * 100.0,
            });
        }
        let peak = best.last.unwrap_or(0.0);
        let mut r: Vec<f64> = best.residuals.iter().copied().collect();
        let margin = quantile(&mut r, self.cfg.quantile).unwrap_or(0.0);
        // The rise bound scales the peak of the last horizon (what the
        // group was just sized for) by the rise seen at this time before.
        let k = self.horizon_buckets;
        let last = self.first + self.history.len() as u64 - 1;
        let bound = self.rise.map_or(0.0, |r| {
            r * self.peak(last.saturating_sub(k - 1), last).unwrap_or(0.0)
        });
        Ok(Forecast {
            peak,
            upper: (peak + margin).max(bound).max(0.0),
            rise: self.rise.unwrap_or(1.0),
            model: best.model,
            relative_error: rel,
            horizon_seconds: self.horizon_seconds,
        })
    }
}

/// Median of pairwise slopes.
fn theil_sen(pts: &[(f64, f64)]) -> f64 {
    let mut slopes = Vec::with_capacity(pts.len() * pts.len() / 2);
    for (i, a) in pts.iter().enumerate() {
        for b in &pts[i + 1..] {
            if b.0 != a.0 {
                slopes.push((b.1 - a.1) / (b.0 - a.0));
            }
        }
    }
    quantile(&mut slopes, 0.5).unwrap_or(0.0)
}

/// The `q` quantile (nearest rank) of `v`, reordering it.
pub(crate) fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let k = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, f64::total_cmp);
    Some(*x)
}
