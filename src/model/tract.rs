//! The audited model on tract: taps selected as extra outputs on the raw model *before* it is
//! optimised, so decluttering cannot fuse them away. Two plans are compiled, one for a
//! symbolic batch and one for a single sample.
//!
//! Why two: tract 0.23 runs these convolutional models 1.4–2.4× faster one sample at a time
//! than in batches (`cargo bench --features onnxruntime --bench extract`, docs/benchmarks.md),
//! so runners go sample by sample unless told otherwise ([`Strategy`]). The choice is never
//! made by timing: the two plans sum in different orders, so their features differ in the last
//! bits, and the toolkit's results (calibration digests, evidence bundles re-verified byte for
//! byte) must not depend on how loaded the machine was.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::{bail, DimLike};

/// The compiled plans, shared by every runner.
pub(super) struct TractModel {
    plan: Arc<TypedRunnableModel>,
    /// The same model compiled for a batch of exactly one sample.
    single: Arc<TypedRunnableModel>,
}

impl TractModel {
    /// Compiles `bytes` with `outputs` (tensor or node names) as the plan's outputs, after the
    /// model's own: returns the model and the plan output of each tap.
    pub(super) fn compile(
        bytes: &[u8],
        taps: &[&str],
        sample_shape: &[usize],
    ) -> TractResult<(TractModel, Vec<usize>)> {
        let (plan, tap_slots) = compile(bytes, taps, sample_shape, None)?;
        let (single, _) = compile(bytes, taps, sample_shape, Some(1))?;
        Ok((TractModel { plan, single }, tap_slots))
    }

    /// Shape of plan output `slot` for one sample (without the batch axis).
    pub(super) fn output_shape(&self, slot: usize) -> TractResult<Vec<usize>> {
        let fact = self.plan.model().output_fact(slot)?;
        fact.shape.iter().skip(1).map(|d| Ok(d.to_usize()?)).collect()
    }

    pub(super) fn runner(&self) -> TractResult<TractRunner> {
        Ok(TractRunner {
            state: self.plan.spawn()?,
            single: self.single.spawn()?,
            strategy: Strategy::PerSample,
            outputs: tvec!(),
        })
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

/// How a runner runs batches of more than one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Strategy {
    /// The symbolic plan on the whole batch.
    Batched,
    /// The single-sample plan on each sample (the default).
    PerSample,
}

/// One thread's states of the two plans, and the outputs of its last run.
pub(super) struct TractRunner {
    state: TypedSimpleState,
    single: TypedSimpleState,
    strategy: Strategy,
    outputs: TVec<TValue>,
}

impl TractRunner {
    /// Runs `n` samples of `sample_shape` stored back to back in `input` (checked by the caller).
    pub(super) fn run(&mut self, input: &[f32], n: usize, sample_shape: &[usize]) -> TractResult<()> {
        self.outputs = match (n, self.strategy) {
            (1, _) | (_, Strategy::PerSample) => self.run_per_sample(input, n, sample_shape),
            (_, Strategy::Batched) => self.run_batched(input, n, sample_shape),
        }?;
        Ok(())
    }

    /// Runs batches of more than one sample this way from now on.
    pub(super) fn pin(&mut self, per_sample: bool) {
        self.strategy = if per_sample { Strategy::PerSample } else { Strategy::Batched };
    }

    pub(super) fn strategy(&self) -> &'static str {
        match self.strategy {
            Strategy::Batched => "batched",
            Strategy::PerSample => "per-sample",
        }
    }

    /// Plan output `slot` of the last run: its shape and values.
    pub(super) fn output(&self, slot: usize) -> TractResult<(Vec<usize>, &[f32])> {
        let t = &self.outputs[slot];
        Ok((t.shape().to_vec(), t.try_as_plain_ram()?.as_slice::<f32>()?))
    }

    fn run_batched(&mut self, input: &[f32], n: usize, sample_shape: &[usize]) -> TractResult<TVec<TValue>> {
        let mut shape = vec![n];
        shape.extend_from_slice(sample_shape);
        self.state.run(tvec!(Tensor::from_shape(&shape, input)?.into_tvalue()))
    }

    /// Runs the single-sample plan on each sample and stacks each output along the batch axis.
    fn run_per_sample(&mut self, input: &[f32], n: usize, sample_shape: &[usize]) -> TractResult<TVec<TValue>> {
        let mut shape = vec![1];
        shape.extend_from_slice(sample_shape);
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
}
