//! Auditor configuration: JSON, strict (unknown keys are errors), validated field by field.
//!
//! Every error names the field it is about (`taps[2].channels: must be at least 1`), so a
//! vendor fixing a deployment knows where to look.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

// The maxima of every resource the configuration sizes, so that no number in a configuration
// can make the library allocate without bound (docs/design.md, "Bounds").

/// Most taps one auditor takes.
pub const MAX_TAPS: usize = 64;
/// Most channels (or outcome values) per tap.
pub const MAX_CHANNELS: usize = 1 << 16;
/// Largest vocabulary of a `token_logits` tap (its channel count).
pub const MAX_VOCABULARY: usize = 1 << 18;
/// Most elements (C × H × W) of one sample's map: 2^26, 256 MiB of f32.
pub const MAX_MAP_ELEMENTS: usize = 1 << 26;
/// Most samples the queue holds (`queue.capacity`): its slots are allocated up front.
pub const MAX_QUEUE_CAPACITY: usize = 1 << 20;
/// Largest batch the head runs (`batching.max_batch`).
pub const MAX_BATCH: usize = 4096;
/// Most worker threads (`workers`).
pub const MAX_WORKERS: usize = 64;
/// Largest copy budget of the CNN path (`head.copy_budget_bytes`): 16 GiB.
pub const MAX_COPY_BUDGET_BYTES: usize = 1 << 34;

/// Most connections the `/metrics` endpoint holds at once (`metrics.http.max_connections`).
pub const MAX_HTTP_CONNECTIONS: usize = 1024;
/// Most cohorts one auditor declares, `default` included.
pub const MAX_COHORTS: usize = 1024;
/// Longest cohort name.
pub const MAX_COHORT_NAME: usize = 64;
/// Most non-member quantiles a calibration block lists.
pub const MAX_CALIBRATION_QUANTILES: usize = 64;
/// Largest evidence window, in audited samples.
pub const MAX_EVIDENCE_WINDOW: u64 = 1 << 24;
/// The most samples a conformance recording keeps.
pub const MAX_CONFORMANCE_SAMPLES: usize = 1 << 16;
/// The most f32 values a conformance recording keeps in all (1 GiB).
pub const MAX_CONFORMANCE_VALUES: usize = 1 << 28;

/// The cohort of samples submitted without one: ordinary traffic.
pub const DEFAULT_COHORT: &str = "default";
/// The cohort of known non-members that suspect cohorts are compared with.
pub const REFERENCE_COHORT: &str = "reference";

/// Complete configuration of one auditor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The audited model, as named in metrics.
    pub model: ModelInfo,
    /// The tensors the vendor hands over on every submit, in this order.
    pub taps: Vec<TapConfig>,
    /// The MINT head that scores the taps.
    pub head: HeadConfig,
    /// What the vendor's thread does with the tensors.
    #[serde(default)]
    pub capture: CaptureConfig,
    /// The bound on samples waiting for the workers.
    #[serde(default)]
    pub queue: QueueConfig,
    /// How the workers batch samples for the head.
    #[serde(default)]
    pub batching: BatchingConfig,
    /// Which samples are audited.
    #[serde(default)]
    pub sampling: SamplingConfig,
    /// The metrics and their endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Worker threads running the head (each owns one state of the shared compiled plan).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Cohorts the vendor may tag samples with, besides `default` (always there, first):
    /// `reference` for known non-members, and any number of named suspect cohorts.
    #[serde(default)]
    pub cohorts: Vec<String>,
    /// How the per-cohort evidence is computed.
    #[serde(default)]
    pub evidence: EvidenceConfig,
    /// Conformance recording, for a vendor's CI (`mint conformance`): off unless given.
    #[serde(default)]
    pub conformance: Option<ConformanceConfig>,
    /// The auditor's own signed, chained evidence log: off unless given.
    #[serde(default)]
    pub evidence_log: Option<EvidenceLogConfig>,
    /// Folder relative paths were resolved against (the configuration file's).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// The audited model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ModelInfo {
    /// Its id, as named in metrics.
    pub id: String,
    /// Its version, as named in metrics.
    #[serde(default)]
    pub version: String,
    /// The audited model's ONNX file, when mint-audit runs the model itself (the `mint`
    /// toolkit, the demo); vendors who capture their own activations leave it out.
    #[serde(default)]
    pub onnx: Option<PathBuf>,
    /// One input sample's shape without the batch axis, e.g. `[1, 28, 28]`; needed with `onnx`.
    #[serde(default)]
    pub input_shape: Option<Vec<usize>>,
    /// What runs `onnx` when mint-audit runs the model: tract (the default, built in) or
    /// onnxruntime (builds with the `onnxruntime` feature, from a library loaded at run time).
    #[serde(default)]
    pub runtime: ModelRuntime,
    /// The onnxruntime shared library (`libonnxruntime.so.1.x`, 1.24 or newer) for
    /// `runtime: "onnxruntime"`; when absent, the `ORT_DYLIB_PATH` environment variable names it.
    #[serde(default)]
    pub onnxruntime_library: Option<PathBuf>,
}

/// What runs the audited model's ONNX file (never the head: heads always run on tract or on
/// a backend plugin).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelRuntime {
    /// tract, built into the library.
    #[default]
    Tract,
    /// onnxruntime, through the `ort` crate with the library loaded at run time; needs a build
    /// with the `onnxruntime` feature.
    Onnxruntime,
}

impl ModelRuntime {
    /// Every runtime, built into this build or not.
    pub const ALL: [ModelRuntime; 2] = [ModelRuntime::Tract, ModelRuntime::Onnxruntime];

    /// Whether this build can run the audited model with this runtime.
    pub fn available(self) -> bool {
        match self {
            ModelRuntime::Tract => true,
            ModelRuntime::Onnxruntime => cfg!(feature = "onnxruntime"),
        }
    }

    /// The name used in configurations.
    pub fn name(self) -> &'static str {
        match self {
            ModelRuntime::Tract => "tract",
            ModelRuntime::Onnxruntime => "onnxruntime",
        }
    }

    /// The error for a runtime this build does not have.
    pub(crate) fn not_built(self) -> Error {
        Error::config(
            "model.runtime",
            format!(
                "\"{}\" is not in this build of mint-audit (build it with the cargo feature `{}`)",
                self.name(),
                self.name()
            ),
        )
    }
}

impl std::str::FromStr for ModelRuntime {
    type Err = String;

    /// A runtime by its configuration name (what `--runtime` takes).
    fn from_str(name: &str) -> std::result::Result<ModelRuntime, String> {
        ModelRuntime::ALL.into_iter().find(|r| r.name() == name).ok_or_else(|| {
            let names: Vec<&str> = ModelRuntime::ALL.iter().map(|r| r.name()).collect();
            format!("'{name}' is not a runtime ({})", names.join(", "))
        })
    }
}

/// What a tap carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TapKind {
    /// An activation map `[N, C, H, W]`, reduced to its per-channel max for Vanilla heads.
    ActivationMap,
    /// The model outcome, a vector `[N, L]` taken as it is.
    Outcome,
    /// A token sequence `[N, T, C]` (or `[N, C, T]`): a transformer's hidden states, pooled
    /// over each sample's valid tokens (`pooling`) for Vanilla heads.
    TokenSequence,
    /// A language model's outcome per token, `[N, T, C]`: the log-probability of each actual
    /// token (C = 1), or that with the mean and standard deviation of the log-probabilities
    /// under the model's next-token distribution at that position (C = 3, which Min-K%++
    /// needs), turned into the label-free membership features `features` lists.
    TokenLogprobs,
    /// A causal language model's logits `[N, T, V]` (V the vocabulary) with the token ids it
    /// read: the library scores each token on the logits before it, as `token_logprobs` of
    /// C = 3 would carry, and computes the same `features`. Costs a softmax over V per scored
    /// position of each audited sample; where the logits sit on a GPU, computing the scores
    /// there (`mint_audit.torch.token_scores`) and tapping `token_logprobs` moves less.
    TokenLogits,
}

impl TapKind {
    /// The configuration's name for it.
    pub fn label(self) -> &'static str {
        match self {
            TapKind::ActivationMap => "activation_map",
            TapKind::Outcome => "outcome",
            TapKind::TokenSequence => "token_sequence",
            TapKind::TokenLogprobs => "token_logprobs",
            TapKind::TokenLogits => "token_logits",
        }
    }

    /// Whether the tap's tensor is a token sequence, with lengths or a mask.
    pub fn has_tokens(self) -> bool {
        matches!(self, TapKind::TokenSequence | TapKind::TokenLogprobs | TapKind::TokenLogits)
    }

    /// Whether the tap gives a language model's token scores, turned into `features`.
    pub fn is_language_model(self) -> bool {
        matches!(self, TapKind::TokenLogprobs | TapKind::TokenLogits)
    }
}

/// A label-free membership feature of a language model's per-token log-probabilities, over a
/// sample's valid tokens (Shi et al. 2024, Min-K% Prob; Zhang et al. 2025, Min-K%++).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub enum LmFeature {
    /// The mean log-probability (minus the loss): `mean`.
    Mean,
    /// Min-K% Prob: the mean of the lowest fraction `k` of the log-probabilities (at least
    /// one token): `min_k:0.2`.
    MinK(f32),
    /// Min-K%++: the same over each token's log-probability standardised by the mean and
    /// standard deviation of the log-probabilities at its position (needs C = 3):
    /// `min_kpp:0.2`.
    MinKpp(f32),
    /// An order statistic of the log-probabilities, `q` in [0, 1] (0 the lowest):
    /// `quantile:0.5`.
    Quantile(f32),
}

impl LmFeature {
    /// What `features` lists when a `token_logprobs` tap gives none (Min-K%++ only with C = 3).
    pub fn defaults(channels: usize) -> Vec<LmFeature> {
        let mut list = vec![LmFeature::Mean];
        list.extend([0.05, 0.1, 0.2, 0.3, 0.5].map(LmFeature::MinK));
        if channels == 3 {
            list.extend([0.05, 0.1, 0.2, 0.3, 0.5].map(LmFeature::MinKpp));
        }
        list.extend([0.0, 0.25, 0.5, 0.75].map(LmFeature::Quantile));
        list
    }

    /// The configuration's name for it (`min_k:0.2`).
    pub fn label(&self) -> String {
        match self {
            LmFeature::Mean => "mean".into(),
            LmFeature::MinK(k) => format!("min_k:{k}"),
            LmFeature::MinKpp(k) => format!("min_kpp:{k}"),
            LmFeature::Quantile(q) => format!("quantile:{q}"),
        }
    }
}

impl TryFrom<String> for LmFeature {
    type Error = String;
    fn try_from(text: String) -> std::result::Result<LmFeature, String> {
        let (name, arg) = match text.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (text.as_str(), None),
        };
        let fraction = |low_open: bool| -> std::result::Result<f32, String> {
            let a = arg.ok_or_else(|| format!("'{text}' needs a value after ':'"))?;
            let x: f32 = a.parse().map_err(|_| format!("'{a}' in '{text}' is not a number"))?;
            let ok = if low_open { x > 0.0 && x <= 1.0 } else { (0.0..=1.0).contains(&x) };
            if ok {
                Ok(x)
            } else {
                Err(format!("'{text}': the value must be in {}", if low_open { "(0, 1]" } else { "[0, 1]" }))
            }
        };
        match (name, arg) {
            ("mean", None) => Ok(LmFeature::Mean),
            ("min_k", _) => fraction(true).map(LmFeature::MinK),
            ("min_kpp", _) => fraction(true).map(LmFeature::MinKpp),
            ("quantile", _) => fraction(false).map(LmFeature::Quantile),
            _ => Err(format!("'{text}' is not a feature (mean, min_k:K, min_kpp:K, quantile:Q)")),
        }
    }
}

/// How a token sequence becomes one value per channel: over the sample's valid tokens only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The per-channel max: the Vanilla MINT feature, as for maps.
    #[default]
    Max,
    /// The per-channel mean.
    Mean,
    /// The first valid token (a ViT's or BERT's CLS token).
    First,
    /// The last valid token (a causal language model's summary of the whole text).
    Last,
}

impl Pooling {
    /// The configuration's name for it.
    pub fn label(self) -> &'static str {
        match self {
            Pooling::Max => "max",
            Pooling::Mean => "mean",
            Pooling::First => "first",
            Pooling::Last => "last",
        }
    }
}

/// One tensor the vendor hands over on every submit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TapConfig {
    /// Its name, unique in the configuration.
    pub name: String,
    /// Channel count of the map (or length of the outcome vector).
    pub channels: usize,
    /// What it carries.
    pub kind: TapKind,
    /// Expected `[H, W]` of the maps, checked on every submit when given; required for the
    /// tap of a CNN head.
    #[serde(default)]
    pub spatial: Option<[usize; 2]>,
    /// Name of the tensor (or node) in the audited ONNX model, when mint-audit runs the model.
    #[serde(default)]
    pub tensor: Option<String>,
    /// For a token sequence: how its valid tokens are pooled (default `max`).
    #[serde(default)]
    pub pooling: Option<Pooling>,
    /// For a token sequence: the most positions T a submitted tensor may have (checked on every
    /// submit when given; T × C is bounded by the map limit either way).
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// For token log-probabilities: the features computed from them, in order (default:
    /// [`LmFeature::defaults`]).
    #[serde(default)]
    pub features: Option<Vec<LmFeature>>,
}

pub use mint_head::ScoreOutput;

/// The MINT head, by kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum HeadConfig {
    /// A Vanilla MINT head: per-channel maxima of the listed taps, concatenated, into an ONNX model.
    Vanilla {
        /// The head's ONNX file, `[N, F]` to `[N]` or `[N, 1]`.
        path: PathBuf,
        /// The file's sha256: a head whose digest differs is refused.
        sha256: String,
        /// Scores at or above it are counted as members: the calibration's when there is one,
        /// else 0.5.
        #[serde(default)]
        threshold: Option<f32>,
        /// Where the threshold comes from, as `mint eval --calibrate` measured it.
        #[serde(default)]
        calibration: Option<Calibration>,
        /// Whether the head outputs probabilities or logits.
        #[serde(default)]
        output: ScoreOutput,
        /// Taps whose features feed the head, in order; all taps when absent.
        #[serde(default)]
        taps: Option<Vec<String>>,
    },
    /// A CNN MINT head on the full maps of one tap, run by a backend plugin.
    Cnn {
        /// The tap whose full maps the head takes.
        tap: String,
        /// Scores at or above it are counted as members: the calibration's when there is one,
        /// else 0.5.
        #[serde(default)]
        threshold: Option<f32>,
        /// Where the threshold comes from, as `mint eval --calibrate` measured it.
        #[serde(default)]
        calibration: Option<Calibration>,
        /// The plugin that runs the head.
        backend: BackendConfig,
        /// Bytes of full maps that may wait for the backend at once; past it, batches are dropped.
        #[serde(default = "default_copy_budget")]
        copy_budget_bytes: usize,
    },
}

impl HeadConfig {
    /// The `kind` tag: `vanilla` or `cnn`.
    pub fn kind(&self) -> &'static str {
        match self {
            HeadConfig::Vanilla { .. } => "vanilla",
            HeadConfig::Cnn { .. } => "cnn",
        }
    }
}

/// A rate measured on a calibration set, with its 95% interval (for the FPR, the exact
/// interval of the threshold's rate on new non-members; for the TPR, a bootstrap interval).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// The rate on the calibration set.
    pub estimate: f64,
    /// Lower bound of the interval.
    pub low: f64,
    /// Upper bound of the interval.
    pub high: f64,
}

/// A non-member score quantile of the calibration set.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Quantile {
    /// The probability, in (0, 1).
    pub q: f64,
    /// The score below which that share of the calibration non-members fall.
    pub score: f64,
}

/// How the live threshold was chosen: on held-out non-members, for a target false-positive
/// rate, with the rates it achieved (written by `mint eval --calibrate`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Calibration {
    /// The false-positive rate asked for.
    pub target_fpr: f64,
    /// The threshold chosen: the lowest whose FPR on the calibration non-members is at most
    /// the target.
    pub threshold: f32,
    /// FPR of the threshold on the calibration non-members.
    pub fpr: Rate,
    /// TPR of the threshold on the calibration members.
    pub tpr: Rate,
    /// Calibration non-members scored.
    pub non_members: u64,
    /// Calibration members scored.
    pub members: u64,
    /// sha256 of the calibration sets (ids and scores), to tell calibrations apart.
    pub digest: String,
    /// Non-member score quantiles, by increasing `q`.
    #[serde(default)]
    pub quantiles: Vec<Quantile>,
    /// What the sets were (free text, for the record).
    #[serde(default)]
    pub source: String,
}

/// How per-cohort evidence is computed (docs/evidence.md says why fixed windows).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EvidenceConfig {
    /// Audited samples per window: each completed window of a cohort gets its own tests.
    #[serde(default = "default_window")]
    pub window: u64,
    /// Significance level of a window's tests: a window whose p-value is below it is an alarm.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Reference samples needed before a window's rank test is computed.
    #[serde(default = "default_min_reference")]
    pub min_reference: u64,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig { window: default_window(), alpha: default_alpha(), min_reference: default_min_reference() }
    }
}

fn default_window() -> u64 {
    500
}
fn default_alpha() -> f64 {
    0.01
}
fn default_min_reference() -> u64 {
    100
}

/// A backend plugin and its own configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BackendConfig {
    /// The plugin shared library: a path (relative to the configuration), or a bare file
    /// name, looked for beside libmint_audit itself, then where the dynamic loader looks.
    pub library: PathBuf,
    /// The library's sha256, when pinned: another file is refused, naming it.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Passed to the plugin as JSON, untouched.
    #[serde(default)]
    pub config: serde_json::Value,
}

/// What the vendor's thread does with the tensors it is handed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CaptureConfig {
    /// Look for NaN and infinities in every map read (samples holding any are dropped and
    /// counted). Costs about 10% of the reduction; turn off only when the activations are
    /// known to be finite (a NaN is then simply never a channel's max).
    #[serde(default = "default_true")]
    pub check_finite: bool,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig { check_finite: true }
    }
}

/// The queue between the vendor's threads and the workers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct QueueConfig {
    /// Samples that may wait for the worker; past it, batches are dropped and counted.
    pub capacity: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig { capacity: 4096 }
    }
}

/// How the workers batch samples for the head.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BatchingConfig {
    /// Largest batch the head runs.
    pub max_batch: usize,
    /// Longest a sample waits for a batch to fill, in milliseconds.
    pub max_wait_ms: u64,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig { max_batch: 64, max_wait_ms: 2 }
    }
}

impl BatchingConfig {
    /// `max_wait_ms` as a duration.
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }
}

/// Which samples are audited.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SamplingConfig {
    /// Audit one sample in this many, chosen by a hash of the sample id (so the same id is
    /// always chosen or always skipped, on every replica).
    pub one_in: u64,
    /// Mixed into the hash, to choose a different subset.
    #[serde(default)]
    pub salt: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig { one_in: 1, salt: 0 }
    }
}

/// The metrics and their endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// Serve `/metrics` over HTTP; off unless given.
    #[serde(default)]
    pub http: Option<HttpConfig>,
    /// Upper bounds of the membership score histogram's buckets.
    #[serde(default)]
    pub score_buckets: Option<Vec<f64>>,
}

/// The built-in `/metrics` endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Address to bind; port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Connections served at once; past it, new ones are closed and counted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time a client has to send a request's head (and finish a TLS handshake), in ms.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// Serve HTTPS with this certificate, for scrapes across networks.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// A file holding the bearer token scrapes must send (`Authorization: Bearer ...`, as
    /// Prometheus' `authorization.credentials_file`); others get 401.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
}

/// The endpoint's certificate, as Prometheus exporters configure theirs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM certificate chain, the server's first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl HttpConfig {
    /// An endpoint on `listen` ("127.0.0.1:0" picks a free loopback port), default limits.
    pub fn new(listen: impl Into<String>) -> HttpConfig {
        HttpConfig {
            listen: listen.into(),
            max_connections: default_max_connections(),
            header_timeout_ms: default_header_timeout_ms(),
            tls: None,
            bearer_token_file: None,
        }
    }
}

fn default_max_connections() -> usize {
    16
}
fn default_header_timeout_ms() -> u64 {
    5000
}

impl TapConfig {
    /// A tap named `name` of `channels` channels, with no spatial size or tensor name.
    pub fn new(name: impl Into<String>, channels: usize, kind: TapKind) -> TapConfig {
        TapConfig {
            name: name.into(),
            channels,
            kind,
            spatial: None,
            tensor: None,
            pooling: None,
            max_tokens: None,
            features: None,
        }
    }

    /// The features of a `token_logprobs` or `token_logits` tap, in order (empty for other
    /// kinds).
    pub fn lm_features(&self) -> Vec<LmFeature> {
        match (self.kind, &self.features) {
            (kind, Some(list)) if kind.is_language_model() => list.clone(),
            (TapKind::TokenLogprobs, None) => LmFeature::defaults(self.channels),
            // Logits give all three scores of each token.
            (TapKind::TokenLogits, None) => LmFeature::defaults(3),
            _ => Vec::new(),
        }
    }

    /// Values this tap adds to a Vanilla head's feature row: its channel count, or for token
    /// log-probabilities the number of features computed from them.
    pub fn feature_width(&self) -> usize {
        match self.kind {
            TapKind::TokenLogprobs | TapKind::TokenLogits => self.lm_features().len(),
            _ => self.channels,
        }
    }

    /// The same tap pooled over its tokens by `pooling`.
    pub fn with_pooling(self, pooling: Pooling) -> TapConfig {
        TapConfig { pooling: Some(pooling), ..self }
    }

    /// How this tap's tokens are pooled (`max` unless configured; maps are always maxed).
    pub fn pooling(&self) -> Pooling {
        self.pooling.unwrap_or_default()
    }

    /// The same tap with maps of `[H, W]`.
    pub fn with_spatial(self, spatial: [usize; 2]) -> TapConfig {
        TapConfig { spatial: Some(spatial), ..self }
    }
}

fn default_true() -> bool {
    true
}
fn default_workers() -> usize {
    1
}
/// The threshold of a head with neither `threshold` nor `calibration`.
pub const DEFAULT_THRESHOLD: f32 = 0.5;
fn default_copy_budget() -> usize {
    256 << 20
}
fn default_listen() -> String {
    "127.0.0.1:9464".into()
}

/// Records what the auditor received and scored, for `mint conformance check` to compare with
/// a conformance kit's expectations: the records (the features, or the map, that the head
/// scores) and scores of the first `max_samples` samples, written as JSON to `record` when the
/// auditor closes. Meant for a vendor's CI, never for production traffic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ConformanceConfig {
    /// The file written at close (relative to the configuration's folder).
    pub record: PathBuf,
    /// Samples recorded at most; later ones are counted, not kept.
    #[serde(default = "default_conformance_samples")]
    pub max_samples: usize,
}

/// The signed evidence log (`mint_audit::evidence::log`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EvidenceLogConfig {
    /// The log (one DSSE envelope per line), appended to; created if missing. Relative to the
    /// configuration's folder.
    pub path: PathBuf,
    /// The operator's ed25519 key, PKCS#8 PEM (`mint keygen`); relative to the configuration's
    /// folder. A log is only ever extended by the key that wrote it.
    pub signing_key: PathBuf,
    /// Seconds between snapshots (one more at creation and at close).
    #[serde(default = "default_evidence_log_interval")]
    pub interval_seconds: f64,
}

fn default_evidence_log_interval() -> f64 {
    60.0
}

fn default_conformance_samples() -> usize {
    1024
}

impl Config {
    /// Parses and validates a JSON configuration. Relative paths are resolved against `base_dir`.
    pub fn from_json(json: &str, base_dir: &Path) -> Result<Config> {
        let de = &mut serde_json::Deserializer::from_str(json);
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "config".to_string() } else { path };
            Error::config(field, e.into_inner().to_string())
        })?;
        config.resolve_paths(base_dir);
        config.base_dir = base_dir.to_owned();
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a configuration file; relative paths in it are resolved
    /// against the file's directory.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let json = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_json(&json, base)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(onnx) = &mut self.model.onnx {
            resolve(onnx);
        }
        if let Some(library) = &mut self.model.onnxruntime_library {
            resolve(library);
        }
        if let Some(http) = &mut self.metrics.http {
            if let Some(tls) = &mut http.tls {
                resolve(&mut tls.cert_file);
                resolve(&mut tls.key_file);
            }
            if let Some(token) = &mut http.bearer_token_file {
                resolve(token);
            }
        }
        if let Some(conformance) = &mut self.conformance {
            resolve(&mut conformance.record);
        }
        if let Some(log) = &mut self.evidence_log {
            resolve(&mut log.path);
            resolve(&mut log.signing_key);
        }
        match &mut self.head {
            HeadConfig::Vanilla { path, .. } => resolve(path),
            // A bare file name ("libmint_backend_cpu.so") is looked up by the loader instead.
            HeadConfig::Cnn { backend, .. } if backend.library.components().count() > 1 => {
                resolve(&mut backend.library)
            }
            HeadConfig::Cnn { .. } => {}
        }
    }

    /// Checks every value; the error names the first bad field.
    pub fn validate(&self) -> Result<()> {
        if self.model.id.is_empty() {
            return Err(Error::config("model.id", "must not be empty"));
        }
        if let Some(shape) = &self.model.input_shape {
            if shape.is_empty() || shape.contains(&0) {
                return Err(Error::config("model.input_shape", "must list non-zero dimensions"));
            }
        }
        if self.model.onnx.is_some() && self.model.input_shape.is_none() {
            return Err(Error::config("model.input_shape", "is needed with model.onnx"));
        }
        if let Some(log) = &self.evidence_log {
            if !(1.0..=86_400.0).contains(&log.interval_seconds) {
                return Err(Error::config(
                    "evidence_log.interval_seconds",
                    format!("must be between 1 and 86400, not {}", log.interval_seconds),
                ));
            }
        }
        if !self.model.runtime.available() {
            return Err(self.model.runtime.not_built());
        }
        if self.taps.is_empty() || self.taps.len() > MAX_TAPS {
            return Err(Error::config("taps", format!("between 1 and {MAX_TAPS} taps are needed")));
        }
        let mut names = HashSet::new();
        for (i, tap) in self.taps.iter().enumerate() {
            if tap.name.is_empty() {
                return Err(Error::config(format!("taps[{i}].name"), "must not be empty"));
            }
            if !names.insert(tap.name.as_str()) {
                return Err(Error::config(format!("taps[{i}].name"), format!("'{}' is used twice", tap.name)));
            }
            let most = if tap.kind == TapKind::TokenLogits { MAX_VOCABULARY } else { MAX_CHANNELS };
            within(&format!("taps[{i}].channels"), tap.channels, 1, most)?;
            let only = |given: bool, field: &str, kind: TapKind| -> Result<()> {
                let shared = match field {
                    "max_tokens" => tap.kind.has_tokens(),
                    "features" => tap.kind.is_language_model(),
                    _ => false,
                };
                if given && tap.kind != kind && !shared {
                    return Err(Error::config(
                        format!("taps[{i}].{field}"),
                        format!("only a {} tap has it", kind.label()),
                    ));
                }
                Ok(())
            };
            only(tap.pooling.is_some(), "pooling", TapKind::TokenSequence)?;
            only(tap.max_tokens.is_some(), "max_tokens", TapKind::TokenSequence)?;
            only(tap.features.is_some(), "features", TapKind::TokenLogprobs)?;
            if tap.kind.is_language_model() {
                if tap.kind == TapKind::TokenLogprobs && tap.channels != 1 && tap.channels != 3 {
                    return Err(Error::config(
                        format!("taps[{i}].channels"),
                        "token log-probabilities have 1 channel (log p of each token) or 3 (with the mean and \
                         standard deviation at its position)",
                    ));
                }
                let features = tap.lm_features();
                if features.is_empty() || features.len() > MAX_CHANNELS {
                    return Err(Error::config(format!("taps[{i}].features"), "must list at least one feature"));
                }
                if tap.kind == TapKind::TokenLogprobs
                    && tap.channels == 1
                    && features.iter().any(|f| matches!(f, LmFeature::MinKpp(_)))
                {
                    return Err(Error::config(
                        format!("taps[{i}].features"),
                        "min_kpp needs each position's mean and standard deviation: a tap of 3 channels",
                    ));
                }
            }
            if let Some(t) = tap.max_tokens {
                within(&format!("taps[{i}].max_tokens"), t, 1, MAX_MAP_ELEMENTS / tap.channels)?;
            }
            if let Some(spatial) = tap.spatial {
                if tap.kind != TapKind::ActivationMap {
                    return Err(Error::config(
                        format!("taps[{i}].spatial"),
                        format!("only an activation map has a spatial size, not a {}", tap.kind.label()),
                    ));
                }
                if spatial.contains(&0) {
                    return Err(Error::config(format!("taps[{i}].spatial"), "must be at least 1×1"));
                }
                let elements = spatial[0].saturating_mul(spatial[1]).saturating_mul(tap.channels);
                if elements > MAX_MAP_ELEMENTS {
                    return Err(Error::config(
                        format!("taps[{i}].spatial"),
                        format!(
                            "maps of {}×{}×{} exceed {MAX_MAP_ELEMENTS} elements",
                            tap.channels, spatial[0], spatial[1]
                        ),
                    ));
                }
            }
        }
        match &self.head {
            HeadConfig::Vanilla { sha256, taps, .. } => {
                check_sha256("head.sha256", sha256)?;
                if let Some(list) = taps {
                    if list.is_empty() {
                        return Err(Error::config("head.taps", "must list at least one tap when given"));
                    }
                    let mut seen = HashSet::new();
                    for (i, name) in list.iter().enumerate() {
                        if !names.contains(name.as_str()) {
                            return Err(Error::config(format!("head.taps[{i}]"), format!("no tap is named '{name}'")));
                        }
                        if !seen.insert(name) {
                            return Err(Error::config(format!("head.taps[{i}]"), format!("'{name}' is listed twice")));
                        }
                    }
                }
            }
            HeadConfig::Cnn { tap, copy_budget_bytes, backend, .. } => {
                match self.taps.iter().find(|t| &t.name == tap) {
                    None => return Err(Error::config("head.tap", format!("no tap is named '{tap}'"))),
                    Some(t) if t.kind != TapKind::ActivationMap => {
                        return Err(Error::config("head.tap", format!("tap '{tap}' is not an activation map")))
                    }
                    Some(t) if t.spatial.is_none() => {
                        return Err(Error::config(
                            "head.tap",
                            format!("tap '{tap}' feeds a CNN head, so it needs \"spatial\": [H, W]"),
                        ))
                    }
                    _ => {}
                }
                within("head.copy_budget_bytes", *copy_budget_bytes, 1, MAX_COPY_BUDGET_BYTES)?;
                if let Some(sha) = &backend.sha256 {
                    check_sha256("head.backend.sha256", sha)?;
                }
            }
        }
        self.validate_threshold()?;
        self.validate_cohorts()?;
        if let Some(conformance) = &self.conformance {
            within("conformance.max_samples", conformance.max_samples, 1, MAX_CONFORMANCE_SAMPLES)?;
        }
        within("queue.capacity", self.queue.capacity, 1, MAX_QUEUE_CAPACITY)?;
        within("batching.max_batch", self.batching.max_batch, 1, MAX_BATCH)?;
        if self.batching.max_wait_ms > 60_000 {
            return Err(Error::config("batching.max_wait_ms", "must be at most 60000"));
        }
        if self.sampling.one_in == 0 {
            return Err(Error::config("sampling.one_in", "must be at least 1"));
        }
        within("workers", self.workers, 1, MAX_WORKERS)?;
        if let Some(buckets) = &self.metrics.score_buckets {
            if buckets.is_empty() || buckets.windows(2).any(|w| w[0] >= w[1]) || buckets.iter().any(|b| !b.is_finite())
            {
                return Err(Error::config(
                    "metrics.score_buckets",
                    "must be finite and strictly increasing, with at least one bound",
                ));
            }
        }
        if let Some(http) = &self.metrics.http {
            within("metrics.http.max_connections", http.max_connections, 1, MAX_HTTP_CONNECTIONS)?;
            let timeout = usize::try_from(http.header_timeout_ms).unwrap_or(usize::MAX);
            within("metrics.http.header_timeout_ms", timeout, 100, 60_000)?;
            if http.listen.parse::<std::net::SocketAddr>().is_err() {
                return Err(Error::config(
                    "metrics.http.listen",
                    format!("'{}' is not an IP address and port, such as 127.0.0.1:9464", http.listen),
                ));
            }
        }
        Ok(())
    }

    /// Index of the tap named `name`.
    pub fn tap_index(&self, name: &str) -> Option<usize> {
        self.taps.iter().position(|t| t.name == name)
    }

    /// Indices of the taps feeding the head, in feature order (the CNN head's one tap). An
    /// error names a tap the configuration lists but does not declare.
    pub fn head_taps(&self) -> Result<Vec<usize>> {
        let index = |field: String, name: &str| {
            self.tap_index(name).ok_or_else(|| Error::config(field, format!("no tap is named '{name}'")))
        };
        match &self.head {
            HeadConfig::Vanilla { taps: Some(list), .. } => {
                list.iter().enumerate().map(|(i, n)| index(format!("head.taps[{i}]"), n)).collect()
            }
            HeadConfig::Vanilla { taps: None, .. } => Ok((0..self.taps.len()).collect()),
            HeadConfig::Cnn { tap, .. } => Ok(vec![index("head.tap".into(), tap)?]),
        }
    }

    /// Decision threshold on the membership score: the calibration's, the configured one, or
    /// [`DEFAULT_THRESHOLD`].
    pub fn threshold(&self) -> f32 {
        let (threshold, calibration) = self.head.threshold_parts();
        calibration.map(|c| c.threshold).or(threshold).unwrap_or(DEFAULT_THRESHOLD)
    }

    /// The head's calibration, when it has one.
    pub fn calibration(&self) -> Option<&Calibration> {
        self.head.threshold_parts().1
    }

    /// Every cohort, `default` first, in index order.
    pub fn cohort_names(&self) -> Vec<&str> {
        std::iter::once(DEFAULT_COHORT).chain(self.cohorts.iter().map(String::as_str)).collect()
    }

    fn validate_threshold(&self) -> Result<()> {
        let (threshold, calibration) = self.head.threshold_parts();
        if let Some(t) = threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(Error::config("head.threshold", format!("{t} is outside [0, 1]")));
            }
        }
        let Some(c) = calibration else { return Ok(()) };
        if let Some(t) = threshold.filter(|&t| t != c.threshold) {
            return Err(Error::config(
                "head.threshold",
                format!("{t} differs from head.calibration.threshold {}; keep one of them", c.threshold),
            ));
        }
        let field = |f: &str| format!("head.calibration.{f}");
        if !(0.0..=1.0).contains(&c.threshold) {
            return Err(Error::config(field("threshold"), format!("{} is outside [0, 1]", c.threshold)));
        }
        if !(c.target_fpr > 0.0 && c.target_fpr < 1.0) {
            return Err(Error::config(field("target_fpr"), "must lie strictly between 0 and 1"));
        }
        for (name, r) in [("fpr", c.fpr), ("tpr", c.tpr)] {
            let ordered = 0.0 <= r.low && r.low <= r.estimate && r.estimate <= r.high && r.high <= 1.0;
            if !ordered {
                return Err(Error::config(field(name), "needs 0 <= low <= estimate <= high <= 1"));
            }
        }
        if c.non_members == 0 {
            return Err(Error::config(field("non_members"), "must be at least 1"));
        }
        check_sha256(&field("digest"), &c.digest)?;
        if c.quantiles.len() > MAX_CALIBRATION_QUANTILES {
            return Err(Error::config(field("quantiles"), format!("at most {MAX_CALIBRATION_QUANTILES} are allowed")));
        }
        let valid = c.quantiles.iter().all(|q| q.q > 0.0 && q.q < 1.0 && (0.0..=1.0).contains(&q.score));
        let sorted = c.quantiles.windows(2).all(|w| w[0].q < w[1].q && w[0].score <= w[1].score);
        if !valid || !sorted {
            return Err(Error::config(
                field("quantiles"),
                "need q in (0, 1) strictly increasing and scores in [0, 1], non-decreasing",
            ));
        }
        Ok(())
    }

    fn validate_cohorts(&self) -> Result<()> {
        if self.cohorts.len() + 1 > MAX_COHORTS {
            return Err(Error::config("cohorts", format!("at most {} cohorts besides default", MAX_COHORTS - 1)));
        }
        let mut seen = HashSet::new();
        for (i, name) in self.cohorts.iter().enumerate() {
            let field = format!("cohorts[{i}]");
            let fits = !name.is_empty()
                && name.len() <= MAX_COHORT_NAME
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
            if !fits {
                return Err(Error::config(
                    field,
                    format!("'{name}' must be 1 to {MAX_COHORT_NAME} letters, digits, '_', '-', '.' or ':'"),
                ));
            }
            if name == DEFAULT_COHORT {
                return Err(Error::config(field, "'default' is always there: list only the others"));
            }
            if !seen.insert(name.as_str()) {
                return Err(Error::config(field, format!("'{name}' is listed twice")));
            }
        }
        let e = &self.evidence;
        let window = usize::try_from(e.window).unwrap_or(usize::MAX);
        within("evidence.window", window, 10, MAX_EVIDENCE_WINDOW as usize)?;
        if !(e.alpha > 0.0 && e.alpha < 0.5) {
            return Err(Error::config("evidence.alpha", format!("{} must lie in (0, 0.5)", e.alpha)));
        }
        let min_reference = usize::try_from(e.min_reference).unwrap_or(usize::MAX);
        within("evidence.min_reference", min_reference, 1, MAX_EVIDENCE_WINDOW as usize)?;
        Ok(())
    }
}

impl HeadConfig {
    fn threshold_parts(&self) -> (Option<f32>, Option<&Calibration>) {
        match self {
            HeadConfig::Vanilla { threshold, calibration, .. } | HeadConfig::Cnn { threshold, calibration, .. } => {
                (*threshold, calibration.as_ref())
            }
        }
    }
}

fn check_sha256(field: &str, sha: &str) -> Result<()> {
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::config(field, "must be 64 hexadecimal digits"));
    }
    Ok(())
}

/// Checks that `value` lies in `lo..=hi`, naming `field` when it does not.
fn within(field: &str, value: usize, lo: usize, hi: usize) -> Result<()> {
    if (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(Error::config(field, format!("must be between {lo} and {hi}, not {value}")))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"{
        "model": {"id": "m", "version": "3"},
        "taps": [
            {"name": "stage1", "channels": 16, "kind": "activation_map"},
            {"name": "logits", "channels": 10, "kind": "outcome"}
        ],
        "head": {"kind": "vanilla", "path": "head.onnx",
                 "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}
    }"#;

    fn err(json: &str) -> String {
        Config::from_json(json, Path::new("/cfg")).unwrap_err().to_string()
    }

    #[test]
    fn runtimes_have_one_name_in_configurations_and_on_command_lines() {
        for runtime in ModelRuntime::ALL {
            let configured: ModelRuntime = serde_json::from_str(&format!("\"{}\"", runtime.name())).unwrap();
            assert_eq!(configured, runtime);
            assert_eq!(runtime.name().parse::<ModelRuntime>(), Ok(runtime));
        }
        assert_eq!("ort".parse::<ModelRuntime>().unwrap_err(), "'ort' is not a runtime (tract, onnxruntime)");
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = Config::from_json(GOOD, Path::new("/cfg")).unwrap();
        assert_eq!(c.queue.capacity, 4096);
        assert_eq!(c.batching.max_batch, 64);
        assert_eq!(c.sampling.one_in, 1);
        assert_eq!(c.threshold(), 0.5);
        assert_eq!(c.head_taps().unwrap(), vec![0, 1]);
        match c.head {
            HeadConfig::Vanilla { path, .. } => assert_eq!(path, Path::new("/cfg/head.onnx")),
            _ => unreachable!(),
        }
    }

    #[test]
    fn unknown_keys_name_their_place() {
        let e = err(&GOOD.replace(r#""version": "3""#, r#""version": "3", "colour": 1"#));
        assert!(e.contains("model") && e.contains("unknown field `colour`"), "{e}");
        let e = err(&GOOD.replace(r#""kind": "outcome""#, r#""kind": "outcome", "x": 2"#));
        assert!(e.contains("taps[1]") && e.contains("unknown field `x`"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field() {
        assert!(err(&GOOD.replace(r#""channels": 16"#, r#""channels": 0"#)).contains("taps[0].channels"));
        assert!(err(&GOOD.replace(r#""channels": 16"#, r#""channels": "x""#)).contains("taps[0].channels"));
        assert!(err(&GOOD.replace("\"activation_map\"", "\"map\"")).contains("taps[0].kind"));
        assert!(err(&GOOD.replace("0000000000", "zz")).contains("head.sha256"));
        let with = |extra: &str| GOOD.replacen('{', &format!("{{{extra},"), 1);
        assert!(err(&with(r#""queue": {"capacity": 0}"#)).contains("queue.capacity"));
        assert!(err(&with(r#""sampling": {"one_in": 0}"#)).contains("sampling.one_in"));
        assert!(err(&with(r#""workers": 0"#)).contains("workers"));
        // Numbers that size allocations are bounded: an error naming the field, never an abort.
        let e = err(&with(r#""queue": {"capacity": 1000000000000}"#));
        assert!(e.contains("queue.capacity") && e.contains("1048576"), "{e}");
        assert!(err(&with(r#""batching": {"max_batch": 100000, "max_wait_ms": 2}"#)).contains("batching.max_batch"));
        assert!(err(&with(r#""workers": 65"#)).contains("workers"));
        assert!(err(&GOOD.replace(r#""channels": 16"#, r#""channels": 100000"#)).contains("taps[0].channels"));
        let huge = GOOD.replace(r#""channels": 16,"#, r#""channels": 16, "spatial": [100000, 100000],"#);
        assert!(err(&huge).contains("taps[0].spatial"));
        assert!(err(&with(r#""metrics": {"http": {"listen": "localhost"}}"#)).contains("metrics.http.listen"));
        assert!(err(&with(r#""metrics": {"score_buckets": [0.5, 0.2]}"#)).contains("metrics.score_buckets"));
        let e = err(&GOOD.replace(r#""kind": "vanilla""#, r#""kind": "vanilla", "threshold": 1.5"#));
        assert!(e.contains("head.threshold"), "{e}");
        let e = err(&GOOD.replace(r#""kind": "vanilla""#, r#""kind": "vanilla", "taps": ["nope"]"#));
        assert!(e.contains("head.taps[0]") && e.contains("nope"), "{e}");
        let e = err(&GOOD.replace(r#""name": "logits""#, r#""name": "stage1""#));
        assert!(e.contains("taps[1].name"), "{e}");
    }

    /// A calibration block as `mint eval --calibrate` writes it, at `threshold`.
    pub(crate) fn calibration_json(threshold: f32) -> String {
        format!(
            r#""calibration": {{"target_fpr": 0.01, "threshold": {threshold},
                "fpr": {{"estimate": 0.01, "low": 0.005, "high": 0.016}},
                "tpr": {{"estimate": 0.6, "low": 0.55, "high": 0.65}},
                "non_members": 2000, "members": 2000, "digest": "{}",
                "quantiles": [{{"q": 0.5, "score": 0.2}}, {{"q": 0.99, "score": {threshold}}}]}}"#,
            "ab".repeat(32)
        )
    }

    #[test]
    fn token_taps_are_checked_field_by_field() {
        let taps = |t: &str| GOOD.replace(r#"{"name": "stage1", "channels": 16, "kind": "activation_map"}"#, t);
        let ok = Config::from_json(
            &taps(r#"{"name": "h", "channels": 16, "kind": "token_sequence", "pooling": "last", "max_tokens": 512}"#),
            Path::new("/cfg"),
        )
        .unwrap();
        assert_eq!((ok.taps[0].pooling(), ok.taps[0].feature_width()), (Pooling::Last, 16));
        let lp = Config::from_json(
            &taps(r#"{"name": "lp", "channels": 3, "kind": "token_logprobs", "features": ["mean", "min_kpp:0.2", "quantile:0"]}"#),
            Path::new("/cfg"),
        )
        .unwrap();
        assert_eq!(lp.taps[0].feature_width(), 3);
        assert_eq!(lp.taps[0].lm_features()[1], LmFeature::MinKpp(0.2));
        let defaults =
            Config::from_json(&taps(r#"{"name": "lp", "channels": 1, "kind": "token_logprobs"}"#), Path::new("/cfg"));
        assert_eq!(defaults.unwrap().taps[0].feature_width(), 10, "mean, five Min-K%, four quantiles");
        let logits = Config::from_json(
            &taps(r#"{"name": "next", "channels": 50257, "kind": "token_logits", "max_tokens": 1024}"#),
            Path::new("/cfg"),
        );
        assert_eq!(logits.unwrap().taps[0].feature_width(), 15, "with the five Min-K%++");
        for (tap, needle) in [
            (r#"{"name": "h", "channels": 16, "kind": "token_sequence", "pooling": "median"}"#, "taps[0].pooling"),
            (
                r#"{"name": "h", "channels": 16, "kind": "activation_map", "pooling": "max"}"#,
                "only a token_sequence tap",
            ),
            (r#"{"name": "h", "channels": 16, "kind": "token_sequence", "spatial": [2, 2]}"#, "only an activation map"),
            (r#"{"name": "h", "channels": 16, "kind": "token_sequence", "max_tokens": 0}"#, "taps[0].max_tokens"),
            (r#"{"name": "lp", "channels": 2, "kind": "token_logprobs"}"#, "1 channel"),
            (r#"{"name": "lp", "channels": 1, "kind": "token_logprobs", "features": ["min_kpp:0.2"]}"#, "3 channels"),
            (r#"{"name": "lp", "channels": 1, "kind": "token_logprobs", "features": ["min_k:0"]}"#, "(0, 1]"),
            (r#"{"name": "lp", "channels": 1, "kind": "token_logprobs", "features": ["median"]}"#, "is not a feature"),
            (r#"{"name": "lp", "channels": 1, "kind": "token_logprobs", "features": []}"#, "at least one feature"),
            (
                r#"{"name": "h", "channels": 4, "kind": "token_sequence", "features": ["mean"]}"#,
                "only a token_logprobs",
            ),
            (r#"{"name": "v", "channels": 300000, "kind": "token_logits"}"#, "taps[0].channels"),
            (r#"{"name": "v", "channels": 50257, "kind": "token_logits", "max_tokens": 2000}"#, "taps[0].max_tokens"),
        ] {
            let e = err(&taps(tap));
            assert!(e.contains(needle), "{tap}: {e}");
        }
    }

    #[test]
    fn cohorts_are_a_closed_set_of_names() {
        let with = |extra: &str| GOOD.replacen('{', &format!("{{{extra},"), 1);
        let c = Config::from_json(&with(r#""cohorts": ["reference", "owner-17"]"#), Path::new("/c")).unwrap();
        assert_eq!(c.cohort_names(), vec!["default", "reference", "owner-17"]);
        assert_eq!(Config::from_json(GOOD, Path::new("/c")).unwrap().cohort_names(), vec!["default"]);
        assert!(err(&with(r#""cohorts": ["default"]"#)).contains("cohorts[0]"));
        assert!(err(&with(r#""cohorts": ["a", "a"]"#)).contains("cohorts[1]"));
        assert!(err(&with(r#""cohorts": ["a b"]"#)).contains("cohorts[0]"));
        assert!(err(&with(r#""cohorts": [""]"#)).contains("cohorts[0]"));
        let many: Vec<String> = (0..MAX_COHORTS).map(|i| format!("\"c{i}\"")).collect();
        assert!(err(&with(&format!(r#""cohorts": [{}]"#, many.join(",")))).contains("cohorts"));
        assert!(err(&with(r#""evidence": {"window": 1}"#)).contains("evidence.window"));
        assert!(err(&with(r#""evidence": {"alpha": 0.7}"#)).contains("evidence.alpha"));
    }

    #[test]
    fn a_calibration_sets_the_threshold_and_must_agree_with_an_explicit_one() {
        let vanilla = r#""kind": "vanilla","#;
        let calibrated = GOOD.replace(vanilla, &format!("{vanilla} {},", calibration_json(0.731)));
        let c = Config::from_json(&calibrated, Path::new("/c")).unwrap();
        assert_eq!(c.threshold(), 0.731);
        assert_eq!(c.calibration().unwrap().non_members, 2000);
        let agreeing = calibrated.replace(vanilla, &format!("{vanilla} \"threshold\": 0.731,"));
        assert_eq!(Config::from_json(&agreeing, Path::new("/c")).unwrap().threshold(), 0.731);
        let e = err(&calibrated.replace(vanilla, &format!("{vanilla} \"threshold\": 0.5,")));
        assert!(e.contains("head.threshold") && e.contains("calibration"), "{e}");
        let e = err(&calibrated.replace(r#""low": 0.005"#, r#""low": 0.05"#));
        assert!(e.contains("head.calibration.fpr"), "{e}");
        let e = err(&calibrated.replace(r#""q": 0.5"#, r#""q": 0.995"#));
        assert!(e.contains("head.calibration.quantiles"), "{e}");
        let e = err(&calibrated.replace(&"ab".repeat(32), "abc"));
        assert!(e.contains("head.calibration.digest"), "{e}");
    }

    #[test]
    fn cnn_heads_need_a_map_tap() {
        let cnn = GOOD.replace(
            r#""head": {"kind": "vanilla", "path": "head.onnx","#,
            r#""head": {"kind": "cnn", "tap": "logits", "backend": {"library": "libx.so"}, "unused": 1,"#,
        );
        let e = err(&cnn);
        assert!(e.contains("head") && e.contains("unused"), "{e}");
        let cnn = GOOD.replace(
            r#""head": {"kind": "vanilla", "path": "head.onnx",
                 "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}"#,
            r#""head": {"kind": "cnn", "tap": "logits", "backend": {"library": "libx.so"}}"#,
        );
        assert!(err(&cnn).contains("not an activation map"));
        let e = err(&cnn.replace(r#""tap": "logits""#, r#""tap": "stage1""#));
        assert!(e.contains("spatial"), "{e}");
        let cnn = cnn.replace(r#""channels": 16,"#, r#""channels": 16, "spatial": [28, 28],"#);
        let ok = Config::from_json(&cnn.replace(r#""tap": "logits""#, r#""tap": "stage1""#), Path::new("/c")).unwrap();
        assert_eq!(ok.head_taps().unwrap(), vec![0]);
    }
}
