//! The forecaster on synthetic series with a known shape.

use jdos_autoscaler::forecast::{ForecastConfig, Forecaster, Model, NoForecast};

/// Deterministic noise in [-1, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

const PERIOD_MIN: u64 = 240;

/// A 4-hour cycle: a sine plus a 30-minute burst, with ±2 % noise.
fn load(minute: u64, noise: &mut Lcg) -> f64 {
    let phase = (minute % PERIOD_MIN) as f64 / PERIOD_MIN as f64;
    let burst = if (120..150).contains(&(minute % PERIOD_MIN)) {
        80.0
    } else {
        0.0
    };
    100.0 + 40.0 * (phase * std::f64::consts::TAU).sin() + burst + 2.0 * noise.next()
}

fn cfg() -> ForecastConfig {
    ForecastConfig {
        seasons_seconds: vec![3 * 3600, 4 * 3600, 86_400],
        ..ForecastConfig::default()
    }
}

#[test]
fn recovers_the_period_and_beats_naive() {
    let mut f = Forecaster::new(cfg(), 120);
    let mut noise = Lcg(7);
    for m in 0..6 * PERIOD_MIN {
        f.observe(m * 60_000, load(m, &mut noise));
    }
    let fc = f.forecast().expect("a forecast after six periods");
    assert_eq!(
        fc.model,
        Model::Seasonal {
            period_seconds: 4 * 3600
        },
        "{fc:?}"
    );
    let errors = f.model_errors();
    let err = |m: Model| errors.iter().find(|e| e.0 == m).unwrap().1;
    let seasonal = err(Model::Seasonal {
        period_seconds: 4 * 3600,
    });
    assert!(seasonal < 0.5 * err(Model::Persistence), "{errors:?}");
    assert!(
        seasonal
            < err(Model::Seasonal {
                period_seconds: 3 * 3600
            }),
        "{errors:?}"
    );
}

#[test]
fn forecasts_a_recurring_burst_before_it_starts() {
    let mut f = Forecaster::new(cfg(), 120);
    let mut noise = Lcg(11);
    // Feed up to the minute before the sixth period's burst (the open
    // bucket plus the 2-minute horizon reach into it).
    let stop = 5 * PERIOD_MIN + 119;
    for m in 0..stop {
        f.observe(m * 60_000, load(m, &mut noise));
    }
    let now = load(stop - 1, &mut Lcg(1));
    let fc = f.forecast().unwrap();
    assert!(
        fc.peak > now + 60.0,
        "peak {} vs current {now}: {fc:?}",
        fc.peak
    );
    assert!(fc.upper >= fc.peak - 1e-9);
}

#[test]
fn short_history_and_noise_are_refused() {
    let mut f = Forecaster::new(cfg(), 120);
    f.observe(0, 10.0);
    f.observe(60_000, 10.0);
    assert!(matches!(f.forecast(), Err(NoForecast::ShortHistory { .. })));

    // Uniform noise: no model can predict the next peaks within 25 %.
    let mut f = Forecaster::new(cfg(), 120);
    let mut noise = Lcg(3);
    for m in 0..600 {
        f.observe(m * 60_000, 50.0 + 50.0 * noise.next());
    }
    assert!(
        matches!(f.forecast(), Err(NoForecast::Inaccurate { .. })),
        "{:?}",
        f.forecast()
    );
}

#[test]
fn a_steady_ramp_is_followed_by_the_trend() {
    let mut f = Forecaster::new(cfg(), 300);
    for m in 0..300 {
        f.observe(m * 60_000, 10.0 + m as f64);
    }
    let fc = f.forecast().unwrap();
    assert_eq!(fc.model, Model::Trend, "{fc:?}");
    // The last full bucket is minute 298; five minutes on (plus the open
    // bucket) the ramp reaches about 10 + 304.
    assert!((fc.peak - 314.0).abs() < 2.0, "{fc:?}");
}

/// A flat series (±1 %) with a jump to 160 from minute 30 to 40 of each
/// listed hour; the "day" of the rise bound is one hour here.
fn jumps_in(hours: &[u64], minutes: u64) -> Forecaster {
    let mut f = Forecaster::new(
        ForecastConfig {
            seasons_seconds: vec![3600],
            ..ForecastConfig::default()
        },
        120,
    );
    let mut noise = Lcg(5);
    for m in 0..minutes {
        let jump = hours.contains(&(m / 60)) && (30..40).contains(&(m % 60));
        let v = if jump { 160.0 } else { 100.0 } + noise.next();
        f.observe(m * 60_000, v);
    }
    f
}

#[test]
fn a_jump_seen_at_this_time_on_two_earlier_days_raises_the_upper_bound() {
    // Stop two minutes before the fourth hour's jump (bucket 28 is open).
    let f = jumps_in(&[1, 2], 3 * 60 + 29);
    let fc = f.forecast().unwrap();
    assert!(fc.rise > 1.5, "{fc:?}");
    assert!(fc.upper >= 1.5 * 99.0, "{fc:?}");
    assert!(fc.upper >= fc.peak);
}

#[test]
fn a_one_off_jump_does_not_raise_the_upper_bound() {
    // The default bound wants the rise on two earlier days.
    let f = jumps_in(&[2], 3 * 60 + 29);
    let fc = f.forecast().unwrap();
    // (Noise alone rises by 1-2 %.)
    assert!(fc.rise < 1.05, "{fc:?}");
    // Nor does a jump on two days at another time of day.
    let f = jumps_in(&[1, 2], 3 * 60 + 10);
    assert!(f.forecast().unwrap().rise < 1.05);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
    /// The rise bound only adds headroom: the same series gives the same
    /// point forecast and model with the bound on and off, and an upper
    /// bound at least as high with it on.
    #[test]
    fn the_rise_bound_only_raises_the_upper_bound(
        levels in proptest::collection::vec(1.0f64..100.0, 24..200),
        seed in 0u64..1000,
    ) {
        let on = ForecastConfig {
            seasons_seconds: vec![3600],
            min_scored: 10,
            max_relative_error: 100.0,
            ..ForecastConfig::default()
        };
        let off = ForecastConfig { rise_days: 0, ..on.clone() };
        let (mut a, mut b) = (Forecaster::new(on, 120), Forecaster::new(off, 120));
        let mut noise = Lcg(seed);
        let mut m = 0u64;
        for level in levels {
            for _ in 0..4 {
                let v = level * (1.0 + 0.1 * noise.next());
                a.observe(m * 60_000, v);
                b.observe(m * 60_000, v);
                m += 1;
                match (a.forecast(), b.forecast()) {
                    (Ok(x), Ok(y)) => {
                        proptest::prop_assert_eq!(x.peak, y.peak);
                        proptest::prop_assert_eq!(x.model, y.model);
                        proptest::prop_assert!(x.upper >= y.upper, "{:?} vs {:?}", x, y);
                        proptest::prop_assert!(x.rise >= 1.0);
                        proptest::prop_assert_eq!(y.rise, 1.0);
                    }
                    (x, y) => proptest::prop_assert_eq!(x.is_ok(), y.is_ok()),
                }
            }
        }
    }
}

/// A flat series up to minute 119 (the open bucket).
fn flat(react: bool) -> Forecaster {
    let mut f = Forecaster::new(
        ForecastConfig {
            react_within_bucket: react,
            ..cfg()
        },
        120,
    );
    let mut noise = Lcg(9);
    for m in 0..120 {
        f.observe(m * 60_000, 100.0 + noise.next());
    }
    f
}

#[test]
fn a_miss_inside_the_open_bucket_raises_the_forecast_at_once() {
    let mut f = flat(true);
    let before = f.forecast().unwrap();
    // 15 s later, still in the open bucket, the load is 50 above the
    // forecast peak.
    f.observe(119 * 60_000 + 15_000, before.peak + 50.0);
    let after = f.forecast().unwrap();
    assert_eq!(after.peak, before.peak + 50.0);
    assert!(
        (after.upper - (before.upper + 50.0)).abs() < 1e-9,
        "{after:?}"
    );
    // Without the reaction the forecast waits for the bucket to close.
    let mut f = flat(false);
    let before = f.forecast().unwrap();
    f.observe(119 * 60_000 + 15_000, before.peak + 50.0);
    assert_eq!(f.forecast().unwrap(), before);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
    /// A usable forecast never predicts a peak below what the open bucket
    /// has already seen.
    #[test]
    fn the_forecast_peak_covers_the_open_bucket(
        samples in proptest::collection::vec(0.0f64..100.0, 100..400),
    ) {
        let mut f = Forecaster::new(
            ForecastConfig { min_scored: 5, max_relative_error: 100.0, ..cfg() },
            120,
        );
        let mut open_max = f64::MIN;
        let mut open = u64::MAX;
        for (i, v) in samples.into_iter().enumerate() {
            let t = i as u64 * 15_000;
            if t / 60_000 != open {
                open = t / 60_000;
                open_max = f64::MIN;
            }
            open_max = open_max.max(v);
            f.observe(t, v);
            if let Ok(fc) = f.forecast() {
                proptest::prop_assert!(fc.peak >= open_max, "{:?} below {}", fc, open_max);
            }
        }
    }
}
