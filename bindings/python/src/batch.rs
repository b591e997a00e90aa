//! One call's tensors from Python: the configuration, the taps (a sequence in configuration
//! order or a dict by name), and which tokens of their sequences count, read into views.

use std::path::PathBuf;

use mint_audit::config::TapKind;
use mint_audit::{Config, TensorView};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::errors::{invalid_input, to_py};
use crate::tensors::{self, Borrowed};

/// A configuration from a path, or from a dict whose relative paths resolve against `base_dir`
/// (default: the current directory).
pub(crate) fn config_of(py: Python<'_>, config: &Bound<'_, PyAny>, base_dir: Option<PathBuf>) -> PyResult<Config> {
    let config = if config.is_instance_of::<PyDict>() {
        let json: String = py.import("json")?.call_method1("dumps", (config,))?.extract()?;
        let base = match base_dir {
            Some(dir) => dir,
            None => std::env::current_dir()?,
        };
        Config::from_json(&json, &base).map_err(to_py)?
    } else {
        let path: PathBuf = config.extract().map_err(|_| {
            invalid_input(format!(
                "config: expected a path or a dict, got {}",
                config.get_type().name().map(|n| n.to_string()).unwrap_or_default()
            ))
        })?;
        Config::from_path(&path).map_err(to_py)?
    };
    Ok(config)
}

/// Reads every tap of one call: a sequence in configuration order, or a dict by name.
pub(crate) fn borrow_taps<'py>(
    taps: &Bound<'py, PyAny>,
    configured: &[(String, TapKind)],
) -> PyResult<Vec<Borrowed<'py>>> {
    let names = || configured.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
    let objects: Vec<Bound<'py, PyAny>> = if let Ok(by_name) = taps.cast::<PyDict>() {
        for key in by_name.keys() {
            let key: String = key.extract()?;
            if !configured.iter().any(|(n, _)| *n == key) {
                return Err(invalid_input(format!("taps: no tap is named '{key}'; configured: {}", names())));
            }
        }
        configured
            .iter()
            .map(|(name, _)| {
                by_name.get_item(name)?.ok_or_else(|| invalid_input(format!("taps: tap '{name}' is missing")))
            })
            .collect::<PyResult<_>>()?
    } else if let Ok(list) = taps.cast::<PyList>() {
        list.iter().collect()
    } else if let Ok(tuple) = taps.cast::<PyTuple>() {
        tuple.iter().collect()
    } else {
        return Err(invalid_input(
            "taps: expected a list or tuple in configuration order, or a dict by tap name".into(),
        ));
    };
    if objects.len() != configured.len() {
        return Err(invalid_input(format!(
            "taps: {} given, but the configuration has {} ({})",
            objects.len(),
            configured.len(),
            names()
        )));
    }
    objects.iter().zip(configured).map(|(o, (name, _))| tensors::borrow(o, name)).collect()
}

/// Which tokens of each configured tap count: `lengths` or `mask` given once for every
/// sequence tap, or as a dict by tap name (a language model's token log-probabilities score
/// one position fewer than its hidden states hold).
pub(crate) fn tokens_of<'py>(
    lengths: Option<&Bound<'py, PyAny>>,
    mask: Option<&Bound<'py, PyAny>>,
    configured: &[(String, TapKind)],
) -> PyResult<Vec<Tokens>> {
    let by_tap = |object: Option<&Bound<'py, PyAny>>| -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(dict) = object.and_then(|o| o.cast::<PyDict>().ok()) else { return Ok(None) };
        for key in dict.keys() {
            let key: String = key.extract()?;
            if !configured.iter().any(|(n, _)| *n == key) {
                return Err(invalid_input(format!("no tap is named '{key}' (lengths and mask are given by tap name)")));
            }
        }
        Ok(Some(dict.clone()))
    };
    let (lengths_by_tap, mask_by_tap) = (by_tap(lengths)?, by_tap(mask)?);
    // Given once for every sequence tap: read once.
    let shared = match (
        lengths_by_tap.is_none().then_some(lengths).flatten(),
        mask_by_tap.is_none().then_some(mask).flatten(),
    ) {
        (Some(_), Some(_)) => return Err(invalid_input("give lengths or mask, not both".into())),
        (Some(l), None) => Some(Tokens::Lengths(integers_of(l, "lengths", 1)?)),
        (None, Some(m)) => Some(mask_of(m, "mask")?),
        (None, None) => None,
    };
    configured
        .iter()
        .map(|(name, kind)| {
            let own = |dict: &Option<Bound<'py, PyDict>>| -> PyResult<Option<Bound<'py, PyAny>>> {
                Ok(match dict {
                    Some(d) => d.get_item(name)?,
                    None => None,
                })
            };
            match (own(&lengths_by_tap)?, own(&mask_by_tap)?) {
                (Some(_), Some(_)) => Err(invalid_input(format!("tap '{name}': give lengths or mask, not both"))),
                (Some(l), None) => Ok(Tokens::Lengths(integers_of(&l, &format!("lengths['{name}']"), 1)?)),
                (None, Some(m)) => mask_of(&m, &format!("mask['{name}']")),
                (None, None) => Ok(match (&shared, kind.has_tokens()) {
                    (Some(t), true) => t.clone(),
                    _ => Tokens::All,
                }),
            }
        })
        .collect()
}

fn mask_of(object: &Bound<'_, PyAny>, label: &str) -> PyResult<Tokens> {
    Ok(Tokens::Mask(integers_of(object, label, 2)?.into_iter().map(|x| u8::from(x != 0)).collect()))
}

/// The token ids of each configured tap (`None` but for `token_logits` taps): `targets`
/// (`[N, T]` integers, the ids the model read) given once for every `token_logits` tap, or as
/// a dict by tap name.
pub(crate) fn targets_of<'py>(
    targets: Option<&Bound<'py, PyAny>>,
    configured: &[(String, TapKind)],
) -> PyResult<Vec<Option<Vec<i64>>>> {
    let mut out = vec![None; configured.len()];
    let Some(targets) = targets else { return Ok(out) };
    if let Ok(by_tap) = targets.cast::<PyDict>() {
        for (key, value) in by_tap.iter() {
            let key: String = key.extract()?;
            let at = configured
                .iter()
                .position(|(n, _)| *n == key)
                .ok_or_else(|| invalid_input(format!("no tap is named '{key}' (targets are given by tap name)")))?;
            out[at] = Some(integers_of(&value, &format!("targets['{key}']"), 2)?);
        }
        return Ok(out);
    }
    let logits: Vec<usize> =
        configured.iter().enumerate().filter(|(_, (_, k))| *k == TapKind::TokenLogits).map(|(i, _)| i).collect();
    if logits.is_empty() {
        return Err(invalid_input("targets: token ids are for token_logits taps, and none is configured".into()));
    }
    let ids = integers_of(targets, "targets", 2)?;
    for i in logits {
        out[i] = Some(ids.clone());
    }
    Ok(out)
}

/// The views of one call's taps, each with its tokens (which only sequences take) and, for
/// logits, the token ids.
pub(crate) fn views<'a>(
    held: &'a [Borrowed<'_>],
    configured: &[(String, TapKind)],
    tokens: &'a [Tokens],
    targets: &'a [Option<Vec<i64>>],
) -> PyResult<Vec<TensorView<'a>>> {
    held.iter()
        .zip(configured)
        .zip(tokens.iter().zip(targets))
        .map(|((b, (name, kind)), (tokens, targets))| {
            let view = b.view(*kind, name)?;
            let view = match tokens {
                Tokens::Lengths(l) => view.with_lengths(l),
                Tokens::Mask(m) => view.with_mask(m),
                Tokens::All => view,
            };
            Ok(match targets {
                Some(ids) => view.with_targets(ids),
                None => view,
            })
        })
        .collect()
}

/// The values of `object`, an integer or boolean tensor (numpy, torch) or nested lists, of
/// `rank` dimensions, in row-major order.
pub(crate) fn integers_of(object: &Bound<'_, PyAny>, label: &str, rank: usize) -> PyResult<Vec<i64>> {
    let shape_error = || invalid_input(format!("{label}: give [N{}] values", if rank == 2 { ", T" } else { "" }));
    if object.is_instance_of::<PyList>() || object.is_instance_of::<PyTuple>() {
        return match rank {
            1 => object.extract::<Vec<i64>>().map_err(|_| shape_error()),
            _ => {
                let rows = object.extract::<Vec<Vec<i64>>>().map_err(|_| shape_error())?;
                if rows.windows(2).any(|w| w[0].len() != w[1].len()) {
                    return Err(invalid_input(format!("{label}: rows of different lengths")));
                }
                Ok(rows.concat())
            }
        };
    }
    // A torch tensor is read through its numpy view (shared memory): DLPack carries no
    // booleans in every torch release, and attention masks often are.
    let object = if !object.hasattr("__array_interface__")? && object.hasattr("numpy")? {
        object
            .call_method0("numpy")
            .map_err(|e| invalid_input(format!("{label}: {e} (give a CPU tensor, or a list)")))?
    } else {
        object.clone()
    };
    let held = tensors::borrow_labelled(&object, label)?;
    if held.shape().len() != rank {
        return Err(shape_error());
    }
    held.integers(label)
}

/// The tokens a submit call selects, owned for the call.
#[derive(Clone)]
pub(crate) enum Tokens {
    All,
    Lengths(Vec<i64>),
    Mask(Vec<u8>),
}
