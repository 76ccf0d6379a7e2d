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
