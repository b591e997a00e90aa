//! The head, chosen from the configuration: the only place that knows which kinds of head
//! there are (a Vanilla head on tract, or a CNN head through a backend plugin). Above the
//! plans it builds, so that they never reach back to it.

use std::sync::Arc;

use crate::backend::BackendPlan;
use crate::capture::Assembly;
use crate::config::{Config, HeadConfig};
use crate::error::Result;
use crate::plan::HeadPlan;
use crate::vanilla::VanillaPlan;

/// Loads the configured head: a bad head file or plugin fails here, before any thread starts.
pub(crate) fn load(config: &Config) -> Result<Arc<dyn HeadPlan>> {
    let taps = config.head_taps()?;
    Ok(match &config.head {
        HeadConfig::Vanilla { path, sha256, output, .. } => {
            let assembly = Assembly::features(&config.taps, &taps, config.capture.check_finite);
            Arc::new(VanillaPlan::load(path, sha256, *output, assembly, config.batching.max_batch)?)
        }
        HeadConfig::Cnn { backend, copy_budget_bytes, .. } => {
            let assembly = Assembly::full_map(&config.taps, taps[0])?;
            Arc::new(BackendPlan::load(backend, assembly, *copy_budget_bytes, config)?)
        }
    })
}
