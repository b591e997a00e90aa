//! CNN heads through backend plugins (see `include/mint_backend.h`).

use crate::capture::Assembly;
use crate::config::{BackendConfig, Config};
use crate::error::{Error, Result};
use crate::worker::Scorer;

pub(crate) fn scorers(
    backend: &BackendConfig,
    _config: &Config,
    _assembly: &Assembly,
) -> Result<(String, Vec<Box<dyn Scorer>>)> {
    Err(Error::Backend { library: backend.library.clone(), message: "backend plugins are not built yet".into() })
}
