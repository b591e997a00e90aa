//! The Triton backend's own metrics, appended to the auditor's exposition.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

pub(crate) struct Metrics {
    registry: Registry,
    pub requests_ok: IntCounter,
    pub requests_failed: IntCounter,
    pub retries: IntCounter,
    pub samples_scored: IntCounter,
    pub samples_failed: IntCounter,
    pub request_seconds: Histogram,
    pub in_flight: IntGauge,
}

impl Metrics {
    pub(crate) fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "mint_backend_triton_requests_total",
                "infer requests sent to Triton, by outcome (each attempt).",
            ),
            &["outcome"],
        )?;
        let samples = IntCounterVec::new(
            Opts::new("mint_backend_triton_samples_total", "Samples answered by the Triton backend, by outcome."),
            &["outcome"],
        )?;
        let retries = IntCounter::new("mint_backend_triton_retries_total", "infer requests retried after an error.")?;
        let request_seconds = Histogram::with_opts(
            HistogramOpts::new("mint_backend_triton_request_duration_seconds", "Time of one infer request.")
                .buckets(prometheus::exponential_buckets(1e-4, 2.0, 18)?),
        )?;
        let in_flight = IntGauge::new("mint_backend_triton_in_flight_samples", "Samples in requests on the wire now.")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(samples.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        Ok(Metrics {
            requests_ok: requests.with_label_values(&["success"]),
            requests_failed: requests.with_label_values(&["failure"]),
            samples_scored: samples.with_label_values(&["scored"]),
            samples_failed: samples.with_label_values(&["failed"]),
            retries,
            request_seconds,
            in_flight,
            registry,
        })
    }

    pub(crate) fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("encoding a valid registry");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}
