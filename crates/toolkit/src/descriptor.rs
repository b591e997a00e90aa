//! The audited model as the toolkit reads it: the `model` and `taps` sections of an auditor
//! configuration (any other keys, such as training notes, are ignored).
//!
//! `research/mint_research/train_audited.py` writes one (`model.json`) beside each shipped model;
//! `mint inspect --write-descriptor` writes one for any ONNX model.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{ensure, Context, Result};
use mint_audit::config::{ModelInfo, ModelRuntime, TapConfig, TapKind};
use mint_audit::{Runtime, TappedModel};
use serde::Deserialize;

/// A runtime chosen for every model, over each one's `model.runtime` (the CLI's `--runtime`
/// and `--onnxruntime-library`).
#[derive(Debug, Default, Clone)]
pub struct RuntimeChoice {
    /// What runs the audited model's forward pass; by default the configuration's
    /// `model.runtime` (tract when absent).
    pub runtime: Option<ModelRuntime>,
    /// onnxruntime's shared library; by default `model.onnxruntime_library`, then
    /// $ORT_DYLIB_PATH.
    pub onnxruntime_library: Option<PathBuf>,
}

static RUNTIME: OnceLock<RuntimeChoice> = OnceLock::new();

/// Sets the runtime choice for every model compiled after (once per process; later calls are
/// ignored).
pub fn choose_runtime(choice: RuntimeChoice) {
    let _ = RUNTIME.set(choice);
}

#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    pub model: ModelInfo,
    pub taps: Vec<TapConfig>,
}

impl Descriptor {
    /// Reads a descriptor, resolving the ONNX path against the file's folder.
    pub fn load(path: &Path) -> Result<Descriptor> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut d: Descriptor = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for path in [d.model.onnx.as_mut(), d.model.onnxruntime_library.as_mut()].into_iter().flatten() {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        d.check()?;
        Ok(d)
    }

    /// From an auditor configuration, which carries the same two sections.
    pub fn from_config(config: &mint_audit::Config) -> Result<Descriptor> {
        let d = Descriptor { model: config.model.clone(), taps: config.taps.clone() };
        d.check()?;
        Ok(d)
    }

    fn check(&self) -> Result<()> {
        ensure!(self.model.onnx.is_some(), "the audited model has no `model.onnx` path");
        let shape = self.model.input_shape.as_ref().context("the audited model has no `model.input_shape`")?;
        ensure!(shape.len() == 3, "`model.input_shape` must be [C, H, W], it is {shape:?}");
        for t in &self.taps {
            ensure!(t.tensor.is_some(), "tap '{}' has no `tensor` (its name in the ONNX model)", t.name);
        }
        Ok(())
    }

    pub fn onnx(&self) -> &PathBuf {
        self.model.onnx.as_ref().expect("checked")
    }

    pub fn input_shape(&self) -> [usize; 3] {
        let s = self.model.input_shape.as_ref().expect("checked");
        [s[0], s[1], s[2]]
    }

    /// Index of the tap named `name`.
    pub fn tap(&self, name: &str) -> Result<usize> {
        self.taps.iter().position(|t| t.name == name).with_context(|| {
            let names: Vec<&str> = self.taps.iter().map(|t| t.name.as_str()).collect();
            format!("no tap named '{name}' (taps: {})", names.join(", "))
        })
    }

    /// Indices of comma-separated tap names; `all` for every tap.
    pub fn taps_named(&self, list: &str) -> Result<Vec<usize>> {
        if list == "all" {
            return Ok((0..self.taps.len()).collect());
        }
        list.split(',').map(|n| self.tap(n.trim())).collect()
    }

    /// Column range of tap `tap` among the features of taps `used`, when it is the outcome.
    pub fn outcome_columns(&self, used: &[usize]) -> Option<(usize, usize)> {
        let mut offset = 0;
        for &i in used {
            let t = &self.taps[i];
            if t.kind == TapKind::Outcome {
                return Some((offset, offset + t.channels));
            }
            offset += t.feature_width();
        }
        None
    }

    /// Compiles the audited model with every tap exposed, in descriptor order, on the runtime
    /// of [`choose_runtime`] when given, else of `model.runtime`.
    pub fn compile(&self) -> Result<TappedModel> {
        let tensors: Vec<&str> = self.taps.iter().map(|t| t.tensor.as_deref().expect("checked")).collect();
        let shape = self.input_shape();
        let chosen = RUNTIME.get();
        let runtime = Runtime::named(
            chosen.and_then(|c| c.runtime).unwrap_or(self.model.runtime),
            chosen.and_then(|c| c.onnxruntime_library.as_deref()).or(self.model.onnxruntime_library.as_deref()),
        )?;
        TappedModel::load_with(self.onnx(), &tensors, &shape, &runtime)
            .with_context(|| format!("loading {} on {}", self.onnx().display(), runtime.name()))
    }
}
