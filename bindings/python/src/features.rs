//! `mint_audit.features`: the feature rows the library builds from one batch of taps, with the
//! code `submit` runs, for auditors' experiments (training and evaluating heads offline on
//! exactly what the live path would score).

use std::path::PathBuf;

use mint_audit::FeatureExtractor;
use pyo3::prelude::*;
use pyo3::types::PyByteArray;

use crate::batch;
use crate::errors::{invalid_input, to_py};

/// ``features(config, taps, lengths=None, mask=None, base_dir=None, targets=None)``: the Vanilla head's
/// feature rows of one batch, as ``submit`` would build them from the same arguments (the
/// configuration's ``head.taps``, their order, pooling and features): a ``bytearray`` of
/// ``N × F`` float32 values and the list of batch indices left out for NaN or infinite values
/// (their rows are absent). ``config`` is a path or a dict, as for ``Auditor``; its head file
/// is not read.
#[pyfunction]
#[pyo3(signature = (config, taps, lengths=None, mask=None, base_dir=None, targets=None))]
pub(crate) fn features<'py>(
    py: Python<'py>,
    config: &Bound<'py, PyAny>,
    taps: &Bound<'py, PyAny>,
    lengths: Option<&Bound<'py, PyAny>>,
    mask: Option<&Bound<'py, PyAny>>,
    base_dir: Option<PathBuf>,
    targets: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyByteArray>, Vec<usize>)> {
    let config = batch::config_of(py, config, base_dir)?;
    let configured: Vec<_> = config.taps.iter().map(|t| (t.name.clone(), t.kind)).collect();
    let used = config.head_taps().map_err(to_py)?;
    if matches!(config.head, mint_audit::config::HeadConfig::Cnn { .. }) {
        return Err(invalid_input(
            "features: the configuration's head is a CNN head; rows are for Vanilla heads".into(),
        ));
    }
    let extractor = FeatureExtractor::vanilla(config.taps.clone(), &used);
    let held = batch::borrow_taps(taps, &configured)?;
    let tokens = batch::tokens_of(lengths, mask, &configured)?;
    let targets = batch::targets_of(targets, &configured)?;
    let views = batch::views(&held, &configured, &tokens, &targets)?;
    let mut rows = Vec::new();
    let left_out = py.detach(|| extractor.extract(&views, &mut rows)).map_err(to_py)?;
    // SAFETY: `rows` is a live Vec<f32>; its bytes are read as plain bytes for the copy.
    let bytes = unsafe { std::slice::from_raw_parts(rows.as_ptr().cast::<u8>(), rows.len() * 4) };
    Ok((PyByteArray::new(py, bytes), left_out))
}
