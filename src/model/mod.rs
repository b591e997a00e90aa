//! Running an audited ONNX model in-process, tapping internal tensors.
//!
//! For vendors who let the library run the model, and for the auditor's toolkit (`mint
//! extract`, `mint eval`). A [`TappedModel`] is compiled once and shared; each thread runs it
//! through its own [`TappedRunner`]. The runtime is tract ([`tract`], the default) or, in builds
//! with the `onnxruntime` feature, onnxruntime ([`onnxruntime`]) from a library loaded at run
//! time: `model.runtime` in the configuration.

#[cfg(feature = "onnxruntime")]
mod onnxruntime;
mod tract;

use std::path::{Path, PathBuf};

use crate::config::{ModelInfo, ModelRuntime};
use crate::error::{Error, Result};
use crate::tensor::{Form, Layout, SeqLayout, TensorView};

/// Which runtime runs a [`TappedModel`], with what it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// tract, built in.
    Tract,
    /// onnxruntime from this shared library (builds with the `onnxruntime` feature only).
    Onnxruntime {
        /// `libonnxruntime.so.1.x`, 1.24 or newer.
        library: PathBuf,
    },
}

impl Runtime {
    /// The runtime a model section asks for; onnxruntime's library from
    /// `model.onnxruntime_library`, else from the `ORT_DYLIB_PATH` environment variable.
    pub fn of(model: &ModelInfo) -> Result<Runtime> {
        Runtime::named(model.runtime, model.onnxruntime_library.as_deref())
    }

    /// `runtime`, with onnxruntime's library from `library`, else from `ORT_DYLIB_PATH`.
    pub fn named(runtime: ModelRuntime, library: Option<&Path>) -> Result<Runtime> {
        match runtime {
            ModelRuntime::Tract => Ok(Runtime::Tract),
            ModelRuntime::Onnxruntime if !runtime.available() => Err(runtime.not_built()),
            ModelRuntime::Onnxruntime => {
                let library =
                    library.map(Path::to_owned).or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from));
                let library = library.ok_or_else(|| {
                    Error::config(
                        "model.onnxruntime_library",
                        "is needed with model.runtime \"onnxruntime\" (or set ORT_DYLIB_PATH): the path of \
                         libonnxruntime.so.1.x, 1.24 or newer; pip's onnxruntime has one under onnxruntime/capi/",
                    )
                })?;
                Ok(Runtime::Onnxruntime { library })
            }
        }
    }

    /// The onnxruntime library of the `onnxruntime` wheel installed in a Python environment
    /// (`venv/lib/python3.*/site-packages/onnxruntime/capi/libonnxruntime.so.*`), if any: the
    /// library a Python vendor already has.
    pub fn onnxruntime_in_venv(venv: &Path) -> Option<PathBuf> {
        let pythons = std::fs::read_dir(venv.join("lib")).ok()?;
        pythons.flatten().find_map(|python| {
            let capi = python.path().join("site-packages/onnxruntime/capi");
            std::fs::read_dir(capi)
                .ok()?
                .flatten()
                .map(|f| f.path())
                .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so.")))
        })
    }

    /// The name used in configurations.
    pub fn name(&self) -> &'static str {
        match self {
            Runtime::Tract => "tract",
            Runtime::Onnxruntime { .. } => "onnxruntime",
        }
    }
}

/// The compiled model of one runtime.
enum Engine {
    Tract(tract::TractModel),
    #[cfg(feature = "onnxruntime")]
    Onnxruntime(onnxruntime::OrtModel),
}

/// An audited model compiled with some of its tensors exposed as outputs.
#[derive(Clone)]
pub struct TappedModel {
    engine: std::sync::Arc<Engine>,
    runtime: Runtime,
    sample_shape: Vec<usize>,
    taps: Vec<String>,
    /// Output holding each tap; the model's own outputs come first, and taps that are model
    /// outputs share them.
    tap_slots: Vec<usize>,
    path: PathBuf,
}

impl TappedModel {
    /// Loads `path` on tract and exposes `taps` (ONNX tensor names, or node names for a node's
    /// first output) as outputs, in that order. `sample_shape` is one input sample's shape,
    /// without the batch axis (e.g. `[1, 28, 28]`).
    pub fn load(path: &Path, taps: &[&str], sample_shape: &[usize]) -> Result<TappedModel> {
        TappedModel::load_with(path, taps, sample_shape, &Runtime::Tract)
    }

    /// As [`TappedModel::load`], on `runtime`.
    pub fn load_with(path: &Path, taps: &[&str], sample_shape: &[usize], runtime: &Runtime) -> Result<TappedModel> {
        let fail = |message: String| Error::HeadLoad { path: path.to_owned(), message };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (engine, tap_slots) = match runtime {
            Runtime::Tract => {
                let (model, slots) =
                    tract::TractModel::compile(&bytes, taps, sample_shape).map_err(|e| fail(format!("{e:#}")))?;
                (Engine::Tract(model), slots)
            }
            #[cfg(feature = "onnxruntime")]
            Runtime::Onnxruntime { library } => {
                let (model, slots) =
                    onnxruntime::OrtModel::compile(&bytes, taps, sample_shape, library).map_err(fail)?;
                (Engine::Onnxruntime(model), slots)
            }
            #[cfg(not(feature = "onnxruntime"))]
            Runtime::Onnxruntime { .. } => return Err(ModelRuntime::Onnxruntime.not_built()),
        };
        Ok(TappedModel {
            engine: std::sync::Arc::new(engine),
            runtime: runtime.clone(),
            sample_shape: sample_shape.to_vec(),
            taps: taps.iter().map(|s| s.to_string()).collect(),
            tap_slots,
            path: path.to_owned(),
        })
    }

    /// The ONNX file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The runtime that runs it.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The tapped tensors' names, in tap order.
    pub fn taps(&self) -> &[String] {
        &self.taps
    }

    /// Shape of tap `i` for one sample (without the batch axis).
    pub fn tap_shape(&self, i: usize) -> Result<Vec<usize>> {
        self.output_shape(self.tap_slots[i])
    }

    /// Shape of the model's own first output for one sample (without the batch axis).
    pub fn model_output_shape(&self) -> Result<Vec<usize>> {
        self.output_shape(0)
    }

    /// One input sample's shape, without the batch axis.
    pub fn sample_shape(&self) -> &[usize] {
        &self.sample_shape
    }

    fn output_shape(&self, slot: usize) -> Result<Vec<usize>> {
        match &*self.engine {
            Engine::Tract(model) => model.output_shape(slot).map_err(|e| self.error(format!("{e:#}"))),
            #[cfg(feature = "onnxruntime")]
            Engine::Onnxruntime(model) => Ok(model.output_shape(slot).to_vec()),
        }
    }

    /// A state to run the model from one thread.
    pub fn runner(&self) -> Result<TappedRunner> {
        let engine = match &*self.engine {
            Engine::Tract(model) => {
                RunnerEngine::Tract(Box::new(model.runner().map_err(|e| self.error(format!("{e:#}")))?))
            }
            #[cfg(feature = "onnxruntime")]
            Engine::Onnxruntime(model) => RunnerEngine::Onnxruntime(model.runner().map_err(|e| self.error(e))?),
        };
        Ok(TappedRunner {
            engine,
            sample_shape: self.sample_shape.clone(),
            path: self.path.clone(),
            tap_slots: self.tap_slots.clone(),
        })
    }

    fn error(&self, message: String) -> Error {
        Error::HeadLoad { path: self.path.clone(), message }
    }
}

/// One thread's state of one runtime.
enum RunnerEngine {
    Tract(Box<tract::TractRunner>),
    #[cfg(feature = "onnxruntime")]
    Onnxruntime(onnxruntime::OrtRunner),
}

/// One thread's state for running a [`TappedModel`].
pub struct TappedRunner {
    engine: RunnerEngine,
    sample_shape: Vec<usize>,
    path: PathBuf,
    tap_slots: Vec<usize>,
}

impl TappedRunner {
    /// Runs `n` input samples stored back to back in `input`; the tapped tensors are then
    /// available through [`TappedRunner::views`].
    pub fn run(&mut self, input: &[f32], n: usize) -> Result<()> {
        let per_sample: usize = self.sample_shape.iter().product();
        if n == 0 {
            return Err(Error::InvalidInput("no samples to run the model on (n = 0)".into()));
        }
        if n.checked_mul(per_sample) != Some(input.len()) {
            return Err(Error::InvalidInput(format!(
                "{} input values for {n} samples of shape {:?}",
                input.len(),
                self.sample_shape
            )));
        }
        let outcome = match &mut self.engine {
            RunnerEngine::Tract(runner) => runner.run(input, n, &self.sample_shape).map_err(|e| format!("{e:#}")),
            #[cfg(feature = "onnxruntime")]
            RunnerEngine::Onnxruntime(runner) => runner.run(input, n, &self.sample_shape),
        };
        outcome
            .map_err(|message| Error::HeadLoad { path: self.path.clone(), message: format!("run failed: {message}") })
    }

    /// How batches of more than one sample run: "per-sample" (tract's default) or "batched"
    /// (onnxruntime always; tract when pinned so).
    pub fn strategy(&self) -> &'static str {
        match &self.engine {
            RunnerEngine::Tract(runner) => runner.strategy(),
            #[cfg(feature = "onnxruntime")]
            RunnerEngine::Onnxruntime(_) => "batched",
        }
    }

    /// Sets how batches of more than one sample run on tract: sample by sample (the default,
    /// faster on the models measured) or as whole batches. The two give features equal to a
    /// few ulps, not bit for bit, so the choice is the caller's and never made by timing.
    /// onnxruntime always runs whole batches.
    pub fn pin_strategy(&mut self, per_sample: bool) {
        match &mut self.engine {
            RunnerEngine::Tract(runner) => runner.pin(per_sample),
            #[cfg(feature = "onnxruntime")]
            RunnerEngine::Onnxruntime(_) => {}
        }
    }

    /// Output `slot` of the last run: its shape and values.
    fn output(&self, slot: usize) -> Result<(Vec<usize>, &[f32])> {
        let outcome = match &self.engine {
            RunnerEngine::Tract(runner) => runner.output(slot).map_err(|e| format!("{e:#}")),
            #[cfg(feature = "onnxruntime")]
            RunnerEngine::Onnxruntime(runner) => runner.output(slot),
        };
        outcome.map_err(|message| Error::HeadLoad { path: self.path.clone(), message })
    }

    /// The model's own first output of the last run, row-major.
    pub fn model_output(&self) -> Result<&[f32]> {
        Ok(self.output(0)?.1)
    }

    /// The tapped tensors of the last run as views, in tap order: rank-4 outputs as NCHW maps,
    /// rank-3 outputs as `[N, T, C]` token sequences (every token valid), rank-2 outputs as
    /// vectors.
    pub fn views(&self) -> Result<Vec<TensorView<'_>>> {
        self.tap_slots
            .iter()
            .enumerate()
            .map(|(i, &slot)| {
                let (shape, slice) = self.output(slot)?;
                match *shape {
                    [n, c, h, w] => TensorView::map(slice, Layout::Nchw, [n, c, h, w]),
                    [n, t, c] => TensorView::sequence(slice, SeqLayout::Ntc, [n, t, c]),
                    [n, c] => TensorView::vectors(slice, Form::Vector, n, c),
                    ref other => Err(Error::InvalidInput(format!(
                        "tap {i} has shape {other:?}; only [N, C, H, W] maps, [N, T, C] sequences and [N, C] vectors can be tapped"
                    ))),
                }
            })
            .collect()
    }
}

/// The audited model of a configuration, compiled on first use, with one runner per calling
/// thread: what [`Auditor::infer`](crate::Auditor::infer) runs.
pub(crate) struct ServedModel {
    compiled: std::sync::OnceLock<std::result::Result<TappedModel, String>>,
    runners: thread_local::ThreadLocal<std::cell::RefCell<Option<TappedRunner>>>,
}

impl ServedModel {
    pub(crate) fn new() -> ServedModel {
        ServedModel { compiled: std::sync::OnceLock::new(), runners: thread_local::ThreadLocal::new() }
    }

    /// The model, compiled from the configuration the first time.
    pub(crate) fn model(&self, config: &crate::config::Config) -> Result<&TappedModel> {
        let compiled = self.compiled.get_or_init(|| {
            let (Some(onnx), Some(shape)) = (&config.model.onnx, &config.model.input_shape) else {
                return Err("model.onnx and model.input_shape are needed to run the audited model".into());
            };
            let tensors: Option<Vec<&str>> = config.taps.iter().map(|t| t.tensor.as_deref()).collect();
            let Some(tensors) = tensors else {
                return Err("every tap needs a `tensor` (its name in the ONNX model) to run the audited model".into());
            };
            let runtime = Runtime::of(&config.model).map_err(|e| e.to_string())?;
            TappedModel::load_with(onnx, &tensors, shape, &runtime).map_err(|e| e.to_string())
        });
        compiled.as_ref().map_err(|message| Error::config("model.onnx", message.clone()))
    }

    /// Runs the model on `n` samples from this thread's runner and hands `f` the runner.
    pub(crate) fn run<T>(
        &self,
        config: &crate::config::Config,
        input: &[f32],
        n: usize,
        f: impl FnOnce(&TappedRunner) -> Result<T>,
    ) -> Result<T> {
        let model = self.model(config)?;
        let cell = self.runners.get_or(|| std::cell::RefCell::new(None));
        let mut slot = cell.borrow_mut();
        let runner = match &mut *slot {
            Some(runner) => runner,
            empty => empty.insert(model.runner()?),
        };
        runner.run(input, n)?;
        f(runner)
    }
}
