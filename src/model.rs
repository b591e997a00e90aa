//! Running an audited ONNX model in-process with tract, tapping internal tensors.
//!
//! For vendors who let the library run the model, and for the auditor's toolkit (`mint
//! extract`, `mint eval`). Taps are selected as extra outputs on the raw model *before* it is
//! optimised, so decluttering cannot fuse them away. Two plans are compiled, one for a symbolic
//! batch and one for a single sample, and each thread runs them through its own
//! [`TappedRunner`].
//!
//! Why two: tract 0.23 runs these convolutional models much faster one sample at a time than
//! batched. Per sample, on the AVX-512 machine of docs/benchmarks.md, the shipped Fashion-MNIST
//! model took 0.7 ms at N = 1 against 1.7 ms in a batch of 64 (1.4 ms with N fixed at 64), and a
//! ResNet-50 at 112² 34 ms against 63 ms in a batch of 8. A model whose time goes into large
//! dense layers could be the other way round, so each runner times both ways on its first
//! batches and keeps the faster (see [`Strategy`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::{bail, DimLike};

use crate::error::{Error, Result};
use crate::tensor::{Form, Layout, TensorView};

/// An audited model compiled with some of its tensors exposed as outputs.
#[derive(Clone)]
pub struct TappedModel {
    plan: Arc<TypedRunnableModel>,
    /// The same model compiled for a batch of exactly one sample.
    single: Arc<TypedRunnableModel>,
    sample_shape: Vec<usize>,
    taps: Vec<String>,
    /// Plan output holding each tap; the model's own outputs come first, and taps that are
    /// model outputs share them.
    tap_slots: Vec<usize>,
    path: PathBuf,
}

impl TappedModel {
    /// Loads `path` and exposes `taps` (ONNX tensor names, or node names for a node's first
    /// output) as outputs, in that order. `sample_shape` is one input sample's shape, without
    /// the batch axis (e.g. `[1, 28, 28]`).
    pub fn load(path: &Path, taps: &[&str], sample_shape: &[usize]) -> Result<TappedModel> {
        let fail = |e: TractError| Error::HeadLoad { path: path.to_owned(), message: format!("{e:#}") };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (plan, tap_slots) = compile(&bytes, taps, sample_shape, None).map_err(fail)?;
        let (single, _) = compile(&bytes, taps, sample_shape, Some(1)).map_err(fail)?;
        Ok(TappedModel {
            plan,
            single,
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
        let fact = self.plan.model().output_fact(slot).map_err(|e| self.error(e))?;
        fact.shape.iter().skip(1).map(|d| d.to_usize().map_err(|e| self.error(e.into()))).collect()
    }

    /// A state to run the model from one thread.
    pub fn runner(&self) -> Result<TappedRunner> {
        let state = self.plan.spawn().map_err(|e| self.error(e))?;
        let single = self.single.spawn().map_err(|e| self.error(e))?;
        Ok(TappedRunner {
            state,
            single,
            strategy: Strategy::Trying { batched: Duration::ZERO, per_sample: Duration::ZERO, left: TRIALS },
            sample_shape: self.sample_shape.clone(),
            path: self.path.clone(),
            tap_slots: self.tap_slots.clone(),
            outputs: tvec!(),
        })
    }

    fn error(&self, e: TractError) -> Error {
        Error::HeadLoad { path: self.path.clone(), message: format!("{e:#}") }
    }
}

/// The compiled plan, for a symbolic batch (`batch: None`) or an exact one, and the plan
/// output of each tap.
fn compile(
    bytes: &[u8],
    taps: &[&str],
    sample_shape: &[usize],
    batch: Option<usize>,
) -> TractResult<(Arc<TypedRunnableModel>, Vec<usize>)> {
    let mut model = tract_onnx::onnx().model_for_read(&mut &bytes[..])?;
    if model.inputs.len() != 1 {
        bail!("the audited model must have one input, it has {}", model.inputs.len());
    }
    let mut outlets: Vec<OutletId> = model.outputs.clone();
    let mut tap_slots = Vec::with_capacity(taps.len());
    for tap in taps {
        let outlet = match model.find_outlet_label(tap) {
            Some(outlet) => outlet,
            None => match model.node_id_by_name(tap) {
                Ok(node) => OutletId::new(node, 0),
                Err(_) => bail!("no tensor or node is named '{tap}' (see `mint inspect`)"),
            },
        };
        let slot = outlets.iter().position(|&o| o == outlet).unwrap_or_else(|| {
            outlets.push(outlet);
            outlets.len() - 1
        });
        tap_slots.push(slot);
    }
    model.select_output_outlets(&outlets)?;
    let batch: TDim = match batch {
        Some(n) => n.into(),
        None => model.symbols.sym("N").into(),
    };
    let shape: TVec<TDim> = std::iter::once(batch).chain(sample_shape.iter().map(|&d| d.into())).collect();
    model.set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))?;
    Ok((model.into_optimized()?.into_runnable()?, tap_slots))
}

impl TappedRunner {
    /// The model's own first output of the last run, row-major.
    pub fn model_output(&self) -> Result<&[f32]> {
        self.outputs[0]
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>())
            .map_err(|e| Error::HeadLoad { path: self.path.clone(), message: format!("{e:#}") })
    }
}

/// How many batches of more than one sample a runner times both ways before it settles.
/// The first is a warm-up (each plan's first run allocates its scratch); the others count.
const TRIALS: u8 = 3;

/// How a runner runs batches of more than one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Strategy {
    /// Timing both ways: the symbolic plan on the whole batch, and the single-sample plan on
    /// each sample; `left` batches to go, the first of which is not counted.
    Trying {
        batched: Duration,
        per_sample: Duration,
        left: u8,
    },
    Batched,
    PerSample,
}

/// One thread's state for running a [`TappedModel`].
pub struct TappedRunner {
    state: TypedSimpleState,
    single: TypedSimpleState,
    strategy: Strategy,
    sample_shape: Vec<usize>,
    path: PathBuf,
    tap_slots: Vec<usize>,
    outputs: TVec<TValue>,
}

impl TappedRunner {
    /// Runs `n` input samples stored back to back in `input`; the tapped tensors are then
    /// available through [`TappedRunner::views`].
    pub fn run(&mut self, input: &[f32], n: usize) -> Result<()> {
        let per_sample: usize = self.sample_shape.iter().product();
        if input.len() != n * per_sample {
            return Err(Error::InvalidInput(format!(
                "{} input values for {n} samples of shape {:?}",
                input.len(),
                self.sample_shape
            )));
        }
        let outputs = match (n, self.strategy) {
            (1, _) | (_, Strategy::PerSample) => self.run_per_sample(input, n),
            (_, Strategy::Batched) => self.run_batched(input, n),
            (_, Strategy::Trying { batched, per_sample, left }) => self.try_both(input, n, batched, per_sample, left),
        };
        self.outputs =
            outputs.map_err(|e| Error::HeadLoad { path: self.path.clone(), message: format!("run failed: {e:#}") })?;
        Ok(())
    }

    /// Which way batches of more than one sample run: "batched", "per-sample", or "trying"
    /// while the runner is still timing both.
    pub fn strategy(&self) -> &'static str {
        match self.strategy {
            Strategy::Trying { .. } => "trying",
            Strategy::Batched => "batched",
            Strategy::PerSample => "per-sample",
        }
    }

    fn run_batched(&mut self, input: &[f32], n: usize) -> TractResult<TVec<TValue>> {
        let mut shape = vec![n];
        shape.extend_from_slice(&self.sample_shape);
        self.state.run(tvec!(Tensor::from_shape(&shape, input)?.into_tvalue()))
    }

    /// Runs the single-sample plan on each sample and stacks each output along the batch axis.
    fn run_per_sample(&mut self, input: &[f32], n: usize) -> TractResult<TVec<TValue>> {
        let mut shape = vec![1];
        shape.extend_from_slice(&self.sample_shape);
        let per_sample = input.len() / n;
        let mut runs = Vec::with_capacity(n);
        for sample in input.chunks_exact(per_sample) {
            runs.push(self.single.run(tvec!(Tensor::from_shape(&shape, sample)?.into_tvalue()))?);
        }
        if n == 1 {
            return Ok(runs.pop().expect("one run"));
        }
        let slots = runs[0].len();
        (0..slots)
            .map(|slot| {
                let parts: Vec<&Tensor> = runs.iter().map(|run| &*run[slot]).collect();
                Ok(Tensor::stack_tensors(0, &parts)?.into_tvalue())
            })
            .collect()
    }

    /// Runs the batch both ways, keeps the per-sample outputs, and settles on the faster way
    /// after the last trial.
    fn try_both(
        &mut self,
        input: &[f32],
        n: usize,
        batched: Duration,
        per_sample: Duration,
        left: u8,
    ) -> TractResult<TVec<TValue>> {
        let counted = left < TRIALS;
        let started = Instant::now();
        self.run_batched(input, n)?;
        let one_way = started.elapsed();
        let started = Instant::now();
        let outputs = self.run_per_sample(input, n)?;
        let other_way = started.elapsed();
        let (batched, per_sample) =
            if counted { (batched + one_way, per_sample + other_way) } else { (batched, per_sample) };
        self.strategy = match left {
            0 | 1 if per_sample <= batched => Strategy::PerSample,
            0 | 1 => Strategy::Batched,
            _ => Strategy::Trying { batched, per_sample, left: left - 1 },
        };
        Ok(outputs)
    }

    /// The tapped tensors of the last run as views, in tap order: rank-4 outputs as NCHW maps,
    /// rank-2 outputs as vectors.
    pub fn views(&self) -> Result<Vec<TensorView<'_>>> {
        self.tap_slots
            .iter()
            .enumerate()
            .map(|(i, &slot)| {
                let t = &self.outputs[slot];
                let slice = t
                    .try_as_plain_ram()
                    .and_then(|v| v.as_slice::<f32>())
                    .map_err(|e| Error::HeadLoad { path: self.path.clone(), message: format!("{e:#}") })?;
                match *t.shape() {
                    [n, c, h, w] => TensorView::map(slice, Layout::Nchw, [n, c, h, w]),
                    [n, c] => TensorView::vectors(slice, Form::Vector, n, c),
                    ref other => Err(Error::InvalidInput(format!(
                        "tap {i} has shape {other:?}; only [N, C, H, W] maps and [N, C] vectors can be tapped"
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
    pub(crate) fn model(&self, config: &crate::Config) -> Result<&TappedModel> {
        let compiled = self.compiled.get_or_init(|| {
            let (Some(onnx), Some(shape)) = (&config.model.onnx, &config.model.input_shape) else {
                return Err("model.onnx and model.input_shape are needed to run the audited model".into());
            };
            let tensors: Option<Vec<&str>> = config.taps.iter().map(|t| t.tensor.as_deref()).collect();
            let Some(tensors) = tensors else {
                return Err("every tap needs a `tensor` (its name in the ONNX model) to run the audited model".into());
            };
            TappedModel::load(onnx, &tensors, shape).map_err(|e| e.to_string())
        });
        compiled.as_ref().map_err(|message| Error::config("model.onnx", message.clone()))
    }

    /// Runs the model on `n` samples from this thread's runner and hands `f` the runner.
    pub(crate) fn run<T>(
        &self,
        config: &crate::Config,
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
