//! MINT heads as ONNX models, compiled once with tract and run by any number of threads.
//!
//! A head takes a batch of samples (`[N, F]` features for a Vanilla head, `[N, C, H, W]` maps
//! for a CNN head) and returns one membership score per sample (`[N]` or `[N, 1]`). The batch
//! axis is a symbol, so one compiled plan serves every batch size; each thread runs it through
//! its own cheap [`HeadRunner`] state. Beside it, plans compiled for a few exact batch sizes
//! (the worker's full batch, and 1) let tract pick matrix kernels for a known N, which it
//! cannot for a symbol (16×6 FMA tiles instead of 32×1 and 32×3 here). The file is hashed
//! from the very bytes that are parsed, so what runs is what was checked.
//!
//! This crate is shared by mint-audit (Vanilla heads, on its worker threads) and by the CPU
//! backend plugin (CNN heads), so that a plugin does not carry a copy of the host that loads it.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::bail;

pub use mint_backend_abi::score::ScoreOutput;

/// Why a head could not be loaded or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeadError {
    /// The file's sha256 differs from the expected one.
    #[error("head file {}: sha256 is {actual}, but the configuration expects {expected}; refusing to start", path.display())]
    DigestMismatch {
        /// The head file.
        path: PathBuf,
        /// The configured digest, lower case.
        expected: String,
        /// The file's digest.
        actual: String,
    },
    /// The ONNX could not be parsed or compiled, does not fit the input shape, or failed to run.
    #[error("head {}: {message}", path.display())]
    Load {
        /// The head file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The head file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The result of head operations.
pub type Result<T, E = HeadError> = std::result::Result<T, E>;

fn io(path: &Path, source: std::io::Error) -> HeadError {
    HeadError::Io { path: path.to_owned(), source }
}

/// A compiled head, shared by every worker.
#[derive(Clone)]
pub struct HeadModel {
    plan: Arc<TypedRunnableModel>,
    /// Plans compiled for one exact batch size each.
    fixed: Vec<(usize, Arc<TypedRunnableModel>)>,
    sample_shape: Vec<usize>,
    output: ScoreOutput,
    path: PathBuf,
    sha256: String,
}

impl std::fmt::Debug for HeadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadModel")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("sample_shape", &self.sample_shape)
            .finish()
    }
}

/// Hex sha256 of a byte string.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex sha256 of a file.
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    Ok(sha256_hex(&bytes))
}

impl HeadModel {
    /// Loads the head at `path`, refusing it when its sha256 differs from `expected_sha256`.
    /// `sample_shape` is one sample's input shape without the batch axis (`[F]` or `[C, H, W]`).
    pub fn load(
        path: &Path,
        expected_sha256: Option<&str>,
        sample_shape: &[usize],
        output: ScoreOutput,
    ) -> Result<HeadModel> {
        let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
        let sha256 = sha256_hex(&bytes);
        if let Some(expected) = expected_sha256 {
            if !expected.eq_ignore_ascii_case(&sha256) {
                return Err(HeadError::DigestMismatch {
                    path: path.to_owned(),
                    expected: expected.to_ascii_lowercase(),
                    actual: sha256,
                });
            }
        }
        let fail = |message: String| HeadError::Load { path: path.to_owned(), message };
        let plan = compile(&bytes, sample_shape, None).map_err(|e| fail(format!("{e:#}")))?;
        check_output(&plan).map_err(fail)?;
        Ok(HeadModel {
            plan,
            fixed: Vec::new(),
            sample_shape: sample_shape.to_vec(),
            output,
            path: path.to_owned(),
            sha256,
        })
    }

    /// Also compiles plans for these exact batch sizes; batches of those sizes then run on
    /// them, all others on the symbolic plan.
    pub fn with_batch_plans(mut self, sizes: &[usize]) -> Result<HeadModel> {
        let bytes = std::fs::read(&self.path).map_err(|e| io(&self.path, e))?;
        if sha256_hex(&bytes) != self.sha256 {
            return Err(HeadError::Load { path: self.path.clone(), message: "the file changed while loading".into() });
        }
        for &n in sizes {
            if n == 0 || self.fixed.iter().any(|(m, _)| *m == n) {
                continue;
            }
            let plan = compile(&bytes, &self.sample_shape, Some(n))
                .map_err(|e| HeadError::Load { path: self.path.clone(), message: format!("{e:#}") })?;
            self.fixed.push((n, plan));
        }
        Ok(self)
    }

    /// The head file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lower-case hex sha256 of the loaded file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// One sample's input shape, without the batch axis.
    pub fn sample_shape(&self) -> &[usize] {
        &self.sample_shape
    }

    /// Number of f32 values per sample.
    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// A state to run the head from one thread.
    pub fn runner(&self) -> Result<HeadRunner> {
        let spawn = |plan: &Arc<TypedRunnableModel>| {
            plan.spawn().map_err(|e| HeadError::Load { path: self.path.clone(), message: format!("{e:#}") })
        };
        let state = spawn(&self.plan)?;
        let fixed = self.fixed.iter().map(|(n, plan)| Ok((*n, spawn(plan)?))).collect::<Result<_>>()?;
        Ok(HeadRunner {
            state,
            fixed,
            sample_shape: self.sample_shape.clone(),
            output: self.output,
            path: self.path.clone(),
        })
    }
}

/// Compiles the head for a symbolic batch (`batch: None`) or an exact one.
fn compile(bytes: &[u8], sample_shape: &[usize], batch: Option<usize>) -> TractResult<Arc<TypedRunnableModel>> {
    let mut model = tract_onnx::onnx().model_for_read(&mut &bytes[..])?;
    if model.inputs.len() != 1 {
        bail!("a head must have exactly one input, this one has {}", model.inputs.len());
    }
    if model.outputs.is_empty() {
        bail!("the model has no output");
    }
    // Only the first output is a score; others (if an exporter left any) are not computed.
    let first = model.outputs[0];
    model.select_output_outlets(&[first])?;
    let n: TDim = match batch {
        Some(n) => n.into(),
        None => model.symbols.sym("N").into(),
    };
    let shape: TVec<TDim> = std::iter::once(n).chain(sample_shape.iter().map(|&d| d.into())).collect();
    model.set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))?;
    let typed = model
        .into_typed()
        .map_err(|e| e.context(format!("the head does not accept input [N, {}]", join(sample_shape))))?;
    typed.into_optimized()?.into_runnable()
}

fn check_output(plan: &Arc<TypedRunnableModel>) -> Result<(), String> {
    let fact = plan.model().output_fact(0).map_err(|e| format!("{e:#}"))?;
    if fact.datum_type != f32::datum_type() {
        return Err(format!("the head's output is {:?}, not f32", fact.datum_type));
    }
    let dims: Vec<String> = fact.shape.iter().map(|d| d.to_string()).collect();
    let ok = match fact.shape.rank() {
        1 => true,
        2 => fact.shape[1] == 1.to_dim(),
        _ => false,
    };
    if !ok {
        return Err(format!("the head's output must be [N] or [N, 1], it is [{}]", dims.join(", ")));
    }
    Ok(())
}

fn join(dims: &[usize]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}

/// One thread's state for running a [`HeadModel`].
pub struct HeadRunner {
    state: TypedSimpleState,
    fixed: Vec<(usize, TypedSimpleState)>,
    sample_shape: Vec<usize>,
    output: ScoreOutput,
    path: PathBuf,
}

impl HeadRunner {
    /// Scores `n` samples stored back to back in `input`, appending `n` scores in [0, 1] to `out`.
    /// An `input` whose length is not `n ×` the sample length is refused.
    pub fn score(&mut self, input: &[f32], n: usize, out: &mut Vec<f32>) -> Result<()> {
        let per_sample: usize = self.sample_shape.iter().product();
        if n.checked_mul(per_sample) != Some(input.len()) {
            return Err(HeadError::Load {
                path: self.path.clone(),
                message: format!("{} input values given for {n} samples of {per_sample}", input.len()),
            });
        }
        if n == 0 {
            return Ok(());
        }
        let mut shape = Vec::with_capacity(self.sample_shape.len() + 1);
        shape.push(n);
        shape.extend_from_slice(&self.sample_shape);
        let mut run = || -> TractResult<()> {
            let tensor = Tensor::from_shape(&shape, input)?;
            let state = match self.fixed.iter_mut().find(|(m, _)| *m == n) {
                Some((_, state)) => state,
                None => &mut self.state,
            };
            let outputs = state.run(tvec!(tensor.into_tvalue()))?;
            let scores = outputs[0].to_plain_array_view::<f32>()?;
            if scores.len() != n {
                bail!("the head returned {} scores for {n} samples", scores.len());
            }
            let output = self.output;
            out.extend(scores.iter().map(|&s| output.to_probability(s)));
            Ok(())
        };
        run().map_err(|e| HeadError::Load { path: self.path.clone(), message: format!("run failed: {e:#}") })
    }
}
