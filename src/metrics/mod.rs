//! Prometheus metrics of one auditor, in a registry of its own (never the global one).
//!
//! Every label takes values from a closed set known at start-up, and every labelled series is
//! created at zero up front, so regulators' `rate()` and `increase()` see a series before its
//! first event. The model id, version and head digest appear once, on the `_info` gauge.
//! The sample counts are the [`Ledger`]'s own counters; this module only adds the timings,
//! the score histogram and the gauges, and renders the registry.

mod http;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

#[cfg(fuzzing)]
pub use http::InMemoryEndpoint;
pub(crate) use http::{HttpHealth, MetricsServer, Render};

use crate::config::{Calibration, Config};
use crate::error::{Error, Result};
use crate::evidence::Evidence;
use crate::ledger::Ledger;

/// Values of the `mint_auditor_info` gauge.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub model_id: String,
    pub model_version: String,
    /// `vanilla` or `cnn`.
    pub head_kind: &'static str,
    /// Digest of the head file (Vanilla), or of the backend library (CNN).
    pub head_sha256: String,
}

/// The metrics of one auditor; every handle is private, so only this crate's pipeline moves them.
pub(crate) struct Metrics {
    registry: Registry,
    /// The score histogram of each cohort, by index.
    score: Vec<Histogram>,
    capture_seconds: Histogram,
    head_batch_seconds: Histogram,
    head_batch_size: Histogram,
    backend_errors: IntCounter,
    backend_in_flight: IntGauge,
    http: HttpHealth,
}

/// Bounds of the membership score histogram: the configured ones; else, with a calibration,
/// where decisions happen (the non-member quantiles, the threshold and steps beside it);
/// else 0.05 steps over [0, 1].
fn score_buckets(config: &Config) -> Vec<f64> {
    if let Some(buckets) = &config.metrics.score_buckets {
        return buckets.clone();
    }
    let Some(c) = config.calibration() else {
        return (1..=20).map(|i| i as f64 / 20.0).collect();
    };
    let t = (c.threshold as f64).clamp(1e-6, 1.0 - 1e-6);
    let logit = (t / (1.0 - t)).ln();
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let mut bounds: Vec<f64> = c.quantiles.iter().map(|q| q.score).collect();
    bounds.extend([-2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0].map(|d| sigmoid(logit + d)));
    bounds.extend([0.1, 0.25, 0.5, 0.75, 0.9, 1.0]);
    bounds.retain(|b| b.is_finite() && *b > 0.0 && *b <= 1.0);
    bounds.sort_by(f64::total_cmp);
    bounds.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    bounds
}

/// The calibration's gauges; an uncalibrated head says so, with NaN rates.
fn calibration_collectors(config: &Config, calibration: Option<&Calibration>) -> Result<Vec<Box<dyn Collector>>> {
    let info = IntGaugeVec::new(
        Opts::new(
            "mint_calibration_info",
            "How the live threshold was chosen; always 1. state=calibrated (by mint eval --calibrate, for target_fpr) or uncalibrated (a fixed threshold: the rates are unknown).",
        ),
        &["state", "target_fpr", "digest"],
    )
    .map_err(metrics_error)?;
    let threshold =
        Gauge::new("mint_calibration_threshold", "The live threshold: scores at or above it count as members.")
            .map_err(metrics_error)?;
    threshold.set(config.threshold() as f64);
    let rates = GaugeVec::new(
        Opts::new(
            "mint_calibration_rate",
            "False- and true-positive rates of the threshold (bound=estimate|low|high): FPR with its exact 95% interval on new non-members, TPR with a 95% bootstrap interval; NaN when uncalibrated.",
        ),
        &["rate", "bound"],
    )
    .map_err(metrics_error)?;
    let samples = IntGaugeVec::new(
        Opts::new("mint_calibration_samples", "Samples of the calibration sets (0 when uncalibrated)."),
        &["set"],
    )
    .map_err(metrics_error)?;
    let nan = crate::config::Rate { estimate: f64::NAN, low: f64::NAN, high: f64::NAN };
    let (fpr, tpr) = calibration.map_or((nan, nan), |c| (c.fpr, c.tpr));
    for (rate, r) in [("fpr", fpr), ("tpr", tpr)] {
        for (bound, v) in [("estimate", r.estimate), ("low", r.low), ("high", r.high)] {
            rates.with_label_values(&[rate, bound]).set(v);
        }
    }
    let (members, non_members) = calibration.map_or((0, 0), |c| (c.members, c.non_members));
    samples.with_label_values(&["members"]).set(i64::try_from(members).unwrap_or(i64::MAX));
    samples.with_label_values(&["non_members"]).set(i64::try_from(non_members).unwrap_or(i64::MAX));
    match calibration {
        Some(c) => info.with_label_values(&["calibrated", &c.target_fpr.to_string(), &c.digest]).set(1),
        None => info.with_label_values(&["uncalibrated", "", ""]).set(1),
    }
    Ok(vec![Box::new(info), Box::new(threshold), Box::new(rates), Box::new(samples)])
}

impl Metrics {
    /// `queue_depth` is read at every scrape, so the gauge is exact rather than last-written.
    pub(crate) fn new(
        config: &Config,
        ledger: &Ledger,
        evidence: &mut Evidence,
        identity: &Identity,
        queue_depth: impl Fn() -> i64 + Send + Sync + 'static,
    ) -> Result<Metrics> {
        let registry = Registry::new();
        let reg = |c: Box<dyn Collector>| registry.register(c).map_err(metrics_error);
        let queue_capacity = config.queue.capacity;

        let score_vec = HistogramVec::new(
            HistogramOpts::new(
                "mint_membership_score",
                "Membership scores given by the MINT head (0 to 1), by cohort.",
            )
            .buckets(score_buckets(config)),
            &["cohort"],
        )
        .map_err(metrics_error)?;
        let score = config.cohort_names().iter().map(|c| score_vec.with_label_values(&[c])).collect();
        let capture_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "mint_capture_duration_seconds",
                "Time one submit call spends on the vendor's thread (checks, reduction, hand-off).",
            )
            .buckets(prometheus::exponential_buckets(1e-6, 2.0, 20).map_err(metrics_error)?),
        )
        .map_err(metrics_error)?;
        let head_batch_seconds = Histogram::with_opts(
            HistogramOpts::new("mint_head_batch_duration_seconds", "Time the head takes to score one batch.")
                .buckets(prometheus::exponential_buckets(1e-5, 2.0, 20).map_err(metrics_error)?),
        )
        .map_err(metrics_error)?;
        let head_batch_size = Histogram::with_opts(
            HistogramOpts::new("mint_head_batch_samples", "Samples per batch run by the head.")
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 12).map_err(metrics_error)?),
        )
        .map_err(metrics_error)?;
        let queue_depth = ReadGauge {
            gauge: IntGauge::new("mint_queue_depth_samples", "Samples queued for the head or being scored.")
                .map_err(metrics_error)?,
            read: Box::new(queue_depth),
        };
        let capacity_gauge = IntGauge::new("mint_queue_capacity_samples", "Samples the queue to the head may hold.")
            .map_err(metrics_error)?;
        capacity_gauge.set(i64::try_from(queue_capacity).unwrap_or(i64::MAX));
        let backend_errors = IntCounter::new(
            "mint_backend_errors_total",
            "Calls to the backend plugin that failed (the vendor's calls never fail because of them).",
        )
        .map_err(metrics_error)?;
        let backend_in_flight = IntGauge::new(
            "mint_backend_in_flight_samples",
            "Samples handed to the backend plugin and not yet answered.",
        )
        .map_err(metrics_error)?;
        let http = HttpHealth {
            requests: IntCounter::new("mint_http_requests_total", "Requests the /metrics endpoint answered.")
                .map_err(metrics_error)?,
            rejected: IntCounter::new(
                "mint_http_connections_rejected_total",
                "Connections the /metrics endpoint closed at once: it held metrics.http.max_connections already.",
            )
            .map_err(metrics_error)?,
            errors: IntCounterVec::new(
                Opts::new(
                    "mint_http_errors_total",
                    "Failures of the /metrics endpoint, by kind: accept (e.g. out of descriptors; retried), connection (a client's error, timeout or failed TLS handshake), unauthorized (no or a wrong bearer token).",
                ),
                &["kind"],
            )
            .map_err(metrics_error)?,
        };
        for kind in ["accept", "connection", "unauthorized"] {
            http.errors.with_label_values(&[kind]);
        }
        let info = IntGaugeVec::new(
            Opts::new("mint_auditor_info", "Identity of the audited model and the MINT head; always 1."),
            &["model_id", "model_version", "head_kind", "head_sha256", "version", "reduce_isa"],
        )
        .map_err(metrics_error)?;
        info.with_label_values(&[
            identity.model_id.as_str(),
            identity.model_version.as_str(),
            identity.head_kind,
            identity.head_sha256.as_str(),
            crate::identity::VERSION,
            crate::identity::reduce_isa(),
        ])
        .set(1);

        for collector in ledger.collectors() {
            reg(collector)?;
        }
        reg(Box::new(score_vec))?;
        for collector in calibration_collectors(config, config.calibration())? {
            reg(collector)?;
        }
        for collector in evidence.collectors() {
            reg(collector)?;
        }
        reg(Box::new(capture_seconds.clone()))?;
        reg(Box::new(head_batch_seconds.clone()))?;
        reg(Box::new(head_batch_size.clone()))?;
        reg(Box::new(queue_depth))?;
        reg(Box::new(capacity_gauge))?;
        reg(Box::new(backend_errors.clone()))?;
        reg(Box::new(backend_in_flight.clone()))?;
        reg(Box::new(info))?;
        reg(Box::new(http.requests.clone()))?;
        reg(Box::new(http.rejected.clone()))?;
        reg(Box::new(http.errors.clone()))?;

        Ok(Metrics {
            registry,
            score,
            capture_seconds,
            head_batch_seconds,
            head_batch_size,
            backend_errors,
            backend_in_flight,
            http,
        })
    }

    /// One score given by the head to a sample of `cohort`.
    pub(crate) fn observe_score(&self, cohort: usize, score: f32) {
        self.score[cohort].observe(score as f64);
    }

    /// The time one submit call took on the vendor's thread.
    pub(crate) fn observe_capture(&self, seconds: f64) {
        self.capture_seconds.observe(seconds);
    }

    /// One batch run by the head (or handed to the backend).
    pub(crate) fn observe_head_batch(&self, seconds: f64, samples: usize) {
        self.head_batch_seconds.observe(seconds);
        self.head_batch_size.observe(samples as f64);
    }

    /// A failed call to the backend plugin.
    pub(crate) fn backend_error(&self) {
        self.backend_errors.inc();
    }

    /// Samples handed to the backend and not answered yet.
    pub(crate) fn set_backend_in_flight(&self, samples: usize) {
        self.backend_in_flight.set(i64::try_from(samples).unwrap_or(i64::MAX));
    }

    /// The endpoint's own counters.
    pub(crate) fn http_health(&self) -> HttpHealth {
        self.http.clone()
    }

    /// The registry in Prometheus' text exposition format (version 0.0.4).
    pub(crate) fn render(&self) -> String {
        render_registry(&self.registry)
    }
}

/// A gauge whose value is read from elsewhere when scraped.
struct ReadGauge {
    gauge: IntGauge,
    read: Box<dyn Fn() -> i64 + Send + Sync>,
}

impl Collector for ReadGauge {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.gauge.set((self.read)());
        self.gauge.collect()
    }
}

pub(crate) fn render_registry(registry: &Registry) -> String {
    let mut buf = Vec::with_capacity(8 << 10);
    // Encoding into a Vec cannot fail on I/O; an error would be a malformed metric, which the
    // constructors above rule out.
    TextEncoder::new().encode(&registry.gather(), &mut buf).expect("text encoding of a valid registry");
    String::from_utf8(buf).expect("the text format is UTF-8")
}

fn metrics_error(e: prometheus::Error) -> Error {
    Error::config("metrics", e.to_string())
}
