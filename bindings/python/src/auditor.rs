//! `mint_audit.Auditor`: the library's auditor, from a configuration file or dict.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mint_audit::config::TapKind;
use mint_audit::reduction::{channel_max, channel_max_unchecked};
use mint_audit::{Cohort, Form};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyDict, PyTuple};

use crate::batch;
use crate::errors::{invalid_input, to_py};
use crate::reports::{CloseReport, Stats, SubmitReport};
use crate::sink::PythonSink;
use crate::tensors;

/// Maps of at least this many bytes are reduced by `channel_maxima` with the GIL released.
const RELEASE_GIL_BYTES: usize = 1 << 20;

/// How long dropping an auditor that was never closed lets its queue drain.
const DROP_TIMEOUT: Duration = Duration::from_secs(5);

/// Audits samples during inference: hand it each batch's sample ids and the tapped
/// activations, and it scores their membership on its own worker threads.
///
/// ``Auditor(config, on_results=None, base_dir=None)``
///
/// - ``config``: the path of an auditor configuration (JSON, as for the C API), or the same
///   configuration as a dict; relative paths in it are resolved against the file's folder, or
///   against ``base_dir`` (default: the current directory) for a dict.
/// - ``on_results``: optional callable, called on the library's worker threads (holding the
///   GIL) with a list of ``AuditResult`` per scored batch. Keep it short: it delays scoring.
///
/// Thread-safe: share one auditor between serving threads. ``submit`` releases the GIL while
/// the library reads the tensors. Use it as a context manager: leaving the block closes it,
/// draining what is queued (``close``). Every error raises a ``MintError`` subclass carrying
/// ``status`` (the C API's name) and ``message``.
#[pyclass(module = "mint_audit", frozen, subclass, weakref)]
pub struct Auditor {
    inner: Arc<mint_audit::Auditor>,
    taps: Vec<(String, TapKind)>,
}

#[pymethods]
impl Auditor {
    #[new]
    #[pyo3(signature = (config, on_results=None, base_dir=None))]
    fn new(
        py: Python<'_>,
        config: &Bound<'_, PyAny>,
        on_results: Option<Py<PyAny>>,
        base_dir: Option<PathBuf>,
    ) -> PyResult<Auditor> {
        let config = batch::config_of(py, config, base_dir)?;
        let taps = config.taps.iter().map(|t| (t.name.clone(), t.kind)).collect();
        if let Some(callback) = &on_results {
            if !callback.bind(py).is_callable() {
                return Err(invalid_input("on_results: not callable".into()));
            }
        }
        // Loading the head (and the model) takes a while: let other Python threads run.
        let inner = py
            .detach(move || match on_results {
                Some(callback) => mint_audit::Auditor::with_sink(config, Arc::new(PythonSink { callback })),
                None => mint_audit::Auditor::new(config),
            })
            .map_err(to_py)?;
        Ok(Auditor { inner: Arc::new(inner), taps })
    }

    /// Hands over one batch: ``ids`` (a sequence of non-negative ints, one per sample) and
    /// ``taps``, one tensor per configured tap, as a sequence in the configuration's order or
    /// a dict by tap name. Each tensor is a numpy array or a torch tensor (float32, float16 or
    /// bfloat16; any strides; on the CPU), read in place: ``[N, C, H, W]`` for a map (any
    /// memory layout), ``[N, T, C]`` for a token sequence (hidden states; any memory layout,
    /// so ``x.transpose(1, 2)`` of an ``[N, C, T]`` tensor too), ``[N, C]`` for an outcome, for
    /// maps the caller already reduced to their per-channel max, or for sequences the caller
    /// already pooled. ``cohort`` names one of the configuration's cohorts.
    ///
    /// ``lengths`` (``[N]`` integers, each in ``1..=T``: right padding) or ``mask`` (``[N, T]``
    /// booleans or integers, non-zero where a token counts: any padding side, e.g. a
    /// tokenizer's ``attention_mask``) say which tokens of every ``[N, T, C]`` tap count;
    /// without them every position does. ``targets`` (``[N, T]`` integers, or a dict by tap
    /// name) are the token ids a language model read, for ``token_logits`` taps: the logits
    /// at each position are scored on the next valid token.
    ///
    /// Returns a ``SubmitReport``. Raises (``QueueFullError``, ``InvalidInputError``, ...)
    /// when samples were lost; every lost sample is also counted in ``stats()``.
    #[pyo3(signature = (ids, taps, cohort=None, lengths=None, mask=None, targets=None))]
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        py: Python<'_>,
        ids: Vec<u64>,
        taps: &Bound<'_, PyAny>,
        cohort: Option<&str>,
        lengths: Option<&Bound<'_, PyAny>>,
        mask: Option<&Bound<'_, PyAny>>,
        targets: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<SubmitReport> {
        let cohort = match cohort {
            Some(name) => self.inner.cohort(name).map_err(to_py)?,
            None => Cohort::DEFAULT,
        };
        let held = batch::borrow_taps(taps, &self.taps)?;
        let tokens =
            batch::tokens_of(lengths, mask, &self.taps).and_then(|t| Ok((t, batch::targets_of(targets, &self.taps)?)));
        let views =
            tokens.as_ref().map_err(|e| e.clone_ref(py)).and_then(|(t, ids)| batch::views(&held, &self.taps, t, ids));
        let inner = &self.inner;
        let report = match views {
            Ok(views) => py.detach(|| inner.submit_in(cohort, &ids, &views)),
            // Counted by the library like any batch it cannot read.
            Err(e) => inner.submit_decoded(cohort, &ids, Err(mint_audit::Error::InvalidInput(e.value(py).to_string()))),
        };
        Ok(report.map_err(to_py)?.into())
    }

    /// Counters since start (of one cohort when ``cohort`` is given).
    #[pyo3(signature = (cohort=None))]
    fn stats(&self, cohort: Option<&str>) -> PyResult<Stats> {
        match cohort {
            None => Ok(self.inner.stats().into()),
            Some(name) => {
                let cohort = self.inner.cohort(name).map_err(to_py)?;
                Ok(self.inner.cohort_stats(cohort).map_err(to_py)?.into())
            }
        }
    }

    /// The membership evidence on one cohort now, as a dict: ``audited``, ``flagged``,
    /// ``member_fraction`` (estimate, low, high; NaN without calibration), ``windows``,
    /// ``window_progress``, ``last_window`` (per test: statistic and p-value, or None),
    /// ``alarms`` (per test), ``overall_rank`` (statistic, p-value, AUC, or None), and
    /// ``anytime``: the evidence valid at every look, ``e_value`` and ``p_value`` per test
    /// (``flags``, ``scores``; NaN where a test cannot run), ``member_fraction`` (low, high:
    /// a 95% confidence sequence) and ``certificate`` (fewer than this share of the cohort
    /// were members, at 95%; None when the head cannot certify).
    #[pyo3(signature = (cohort="default"))]
    fn evidence<'py>(&self, py: Python<'py>, cohort: &str) -> PyResult<Bound<'py, PyDict>> {
        let id = self.inner.cohort(cohort).map_err(to_py)?;
        let e = self.inner.evidence(id).map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("audited", e.audited)?;
        d.set_item("flagged", e.flagged)?;
        let f = e.member_fraction;
        d.set_item("member_fraction", (f.estimate, f.low, f.high))?;
        d.set_item("windows", e.windows)?;
        d.set_item("window_progress", e.window_progress)?;
        let tests = mint_audit::evidence::WindowTest::ALL;
        let last = PyDict::new(py);
        let alarms = PyDict::new(py);
        for (i, test) in tests.iter().enumerate() {
            last.set_item(test.label(), e.last_window[i].map(|t| (t.statistic, t.p_value)))?;
            alarms.set_item(test.label(), e.alarms[i])?;
        }
        d.set_item("last_window", last)?;
        d.set_item("alarms", alarms)?;
        d.set_item("overall_rank", e.overall_rank.map(|(t, auc)| (t.statistic, t.p_value, auc)))?;
        let a = e.anytime;
        let anytime = PyDict::new(py);
        let (e_values, p_values) = (PyDict::new(py), PyDict::new(py));
        for (i, test) in mint_audit::evidence::AnytimeTest::ALL.iter().enumerate() {
            e_values.set_item(test.label(), a.e_value[i])?;
            p_values.set_item(test.label(), a.p_value[i])?;
        }
        anytime.set_item("e_value", e_values)?;
        anytime.set_item("p_value", p_values)?;
        anytime.set_item("member_fraction", a.member_fraction)?;
        anytime.set_item("certificate", a.certificate)?;
        d.set_item("anytime", anytime)?;
        Ok(d)
    }

    /// Stops accepting samples, scores what is queued for up to ``timeout`` seconds, drops
    /// (as ``shutdown``) what is left, and stops the workers; returns a ``CloseReport``.
    /// Returns within ``timeout`` plus ``CLOSE_GRACE_S`` whatever the result callback does.
    /// Later calls return the first report. Releases the GIL while it waits.
    #[pyo3(signature = (timeout=5.0))]
    fn close(&self, py: Python<'_>, timeout: f64) -> PyResult<CloseReport> {
        let timeout = Duration::try_from_secs_f64(timeout)
            .map_err(|_| invalid_input(format!("timeout: {timeout} is not a duration in seconds")))?;
        let inner = &self.inner;
        Ok(py.detach(|| inner.try_close(timeout)).map_err(to_py)?.into())
    }

    /// The metrics in Prometheus's text format, as the endpoint serves them.
    fn render_metrics(&self, py: Python<'_>) -> String {
        let inner = &self.inner;
        py.detach(|| inner.render_metrics())
    }

    /// ``host:port`` of the built-in metrics endpoint, or None when the configuration has none.
    #[getter]
    fn metrics_address(&self) -> Option<String> {
        self.inner.metrics_addr().map(|a| a.to_string())
    }

    /// Digest of the head file (Vanilla) or of the backend code (CNN) in use.
    #[getter]
    fn head_sha256(&self) -> String {
        self.inner.head_sha256().to_string()
    }

    /// The configured taps, in order: a list of (name, kind) with kind ``activation_map``,
    /// ``outcome`` or ``token_sequence``.
    #[getter]
    fn taps(&self) -> Vec<(String, &'static str)> {
        self.taps.iter().map(|(n, k)| (n.clone(), k.label())).collect()
    }

    /// The ONNX tensor a tap reads in the audited model, as configured (None when not given).
    fn tap_tensor(&self, tap: &str) -> PyResult<Option<String>> {
        let config = self.inner.config();
        let index = config
            .tap_index(tap)
            .ok_or_else(|| invalid_input(format!("no tap is named '{tap}'; configured: {}", self.tap_names())))?;
        Ok(config.taps[index].tensor.clone())
    }

    /// How many channels tap ``tap`` has (a ``token_logprobs`` tap: 1, the log-probability of
    /// each token, or 3, with the mean and spread Min-K%++ needs).
    fn tap_channels(&self, tap: &str) -> PyResult<usize> {
        let config = self.inner.config();
        let index = config
            .tap_index(tap)
            .ok_or_else(|| invalid_input(format!("no tap is named '{tap}'; configured: {}", self.tap_names())))?;
        Ok(config.taps[index].channels)
    }

    /// How a token-sequence tap is pooled over its valid tokens (``max``, ``mean``, ``first``
    /// or ``last``); None for other taps.
    fn tap_pooling(&self, tap: &str) -> PyResult<Option<&'static str>> {
        let config = self.inner.config();
        let index = config
            .tap_index(tap)
            .ok_or_else(|| invalid_input(format!("no tap is named '{tap}'; configured: {}", self.tap_names())))?;
        let t = &config.taps[index];
        Ok((t.kind == TapKind::TokenSequence).then(|| t.pooling().label()))
    }

    /// The per-channel maxima of activation-map tap ``tap`` from ``maps`` (``[N, C, H, W]``,
    /// any layout and dtype ``submit`` takes), computed in place by the library's kernels as
    /// ``submit`` would: ``N × C`` float32 values, sample by sample, in a ``bytearray``
    /// (``torch.frombuffer(b, dtype=torch.float32).view(N, C)`` reads it without a copy). A
    /// sample whose map holds NaN or infinities gets a row of NaN, so that ``submit`` drops
    /// and counts it as it would have the map. For hooks that reduce each map as soon as the
    /// model has made it, instead of holding every map until the forward ends.
    fn channel_maxima<'py>(
        &self,
        py: Python<'py>,
        tap: &str,
        maps: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let Some((_, kind)) = self.taps.iter().find(|(name, _)| name == tap) else {
            return Err(invalid_input(format!("no tap is named '{tap}'; configured: {}", self.tap_names())));
        };
        let held = tensors::borrow(maps, tap)?;
        let view = held.view(*kind, tap)?;
        if *kind != TapKind::ActivationMap || view.form() != Form::Map {
            return Err(invalid_input(format!(
                "tap '{tap}': channel maxima are taken of an activation map [N, C, H, W]"
            )));
        }
        let (n, c) = (view.batch(), view.channels());
        let mut maxima =
            vec![0f32; n.checked_mul(c).ok_or_else(|| invalid_input(format!("tap '{tap}': N × C overflows")))?];
        let check = self.inner.config().capture.check_finite;
        let reduce = |maxima: &mut [f32]| {
            for (s, row) in maxima.chunks_exact_mut(c.max(1)).enumerate().take(n) {
                if check {
                    if !channel_max(&view, s, row) {
                        row.fill(f32::NAN);
                    }
                } else {
                    channel_max_unchecked(&view, s, row);
                }
            }
        };
        // Large maps are reduced with the GIL released; small ones are not worth handing it over.
        if view.elements().len() * view.dtype().size() >= RELEASE_GIL_BYTES {
            py.detach(|| reduce(&mut maxima));
        } else {
            reduce(&mut maxima);
        }
        PyByteArray::new_with(py, maxima.len() * 4, |bytes| {
            for (chunk, value) in bytes.chunks_exact_mut(4).zip(&maxima) {
                chunk.copy_from_slice(&value.to_ne_bytes());
            }
            Ok(())
        })
    }

    /// The head's kind: ``vanilla`` or ``cnn``.
    #[getter]
    fn head_kind(&self) -> &'static str {
        self.inner.config().head.kind()
    }

    /// The configured cohorts (``default`` first).
    #[getter]
    fn cohorts(&self) -> Vec<String> {
        self.inner.config().cohort_names().into_iter().map(String::from).collect()
    }

    /// The model's id and version, as configured.
    #[getter]
    fn model(&self) -> (String, String) {
        let m = &self.inner.config().model;
        (m.id.clone(), m.version.clone())
    }

    /// The last error a worker met (a head or backend failure), if any.
    fn last_worker_error(&self) -> Option<String> {
        self.inner.last_worker_error()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py, DROP_TIMEOUT.as_secs_f64())?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let m = &self.inner.config().model;
        format!("Auditor(model='{}', version='{}', head_sha256='{}')", m.id, m.version, self.inner.head_sha256())
    }
}

impl Auditor {
    fn tap_names(&self) -> String {
        self.taps.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl Drop for Auditor {
    /// Closes with the GIL released, so that workers inside the result callback can finish;
    /// the library's own drop then finds it closed.
    fn drop(&mut self) {
        let inner = &self.inner;
        let _ = Python::try_attach(|py| py.detach(|| inner.close(DROP_TIMEOUT)));
    }
}
