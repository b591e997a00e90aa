//! The reference CPU backend of mint-audit (`libmint_backend_cpu.so`): runs a CNN MINT head,
//! an ONNX model taking `[N, C, H, W]` maps to `[N]` or `[N, 1]` scores, with tract, on the
//! host's worker thread that submits the batch. With it every path of the product works on a
//! machine without a GPU, and it is the reference the Triton backend is checked against.
//!
//! Configuration (`backend.config` of the auditor's):
//! `{"head": "cnn_head.onnx", "sha256": "<hex>", "output": "probability" | "logit"}`;
//! a relative `head` is resolved against the auditor configuration's folder, and a head whose
//! sha256 differs is refused, naming the file.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::path::PathBuf;

use mint_backend_abi::score::ScoreOutput;
use mint_backend_abi::{Backend, Batch, Host, Options};
use mint_head::{HeadModel, HeadRunner};
use serde::Deserialize;
use thread_local::ThreadLocal;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CpuConfig {
    head: PathBuf,
    sha256: String,
    #[serde(default)]
    output: ScoreOutput,
}

/// One compiled head shared by every host thread, each running it through its own state.
struct CpuBackend {
    head: HeadModel,
    runners: ThreadLocal<RefCell<HeadRunner>>,
    host: Host,
}

impl Backend for CpuBackend {
    fn create(config: &str, options: &Options, host: Host) -> Result<Self, String> {
        let config: CpuConfig = serde_json::from_str(config).map_err(|e| format!("configuration: {e}"))?;
        let path = if config.head.is_relative() { options.base_dir.join(&config.head) } else { config.head };
        let head = HeadModel::load(&path, Some(&config.sha256), &options.shape(), config.output)
            .and_then(|h| h.with_batch_plans(&[1, options.max_batch]))
            .map_err(|e| e.to_string())?;
        Ok(CpuBackend { head, runners: ThreadLocal::new(), host })
    }

    fn submit(&self, batch: &Batch<'_>) -> Result<(), String> {
        let cell = self.runners.get_or_try(|| self.head.runner().map(RefCell::new)).map_err(|e| e.to_string())?;
        let mut scores = Vec::with_capacity(batch.len());
        cell.borrow_mut().score(batch.maps(), batch.len(), &mut scores).map_err(|e| e.to_string())?;
        // Answered before returning: this backend has nothing outstanding, ever.
        self.host.scores(batch.ids(), &scores);
        Ok(())
    }
}

mint_backend_abi::export_backend!(CpuBackend, "cpu");
