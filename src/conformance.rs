//! Conformance recording: what the auditor received (each sample's record, as the head scores
//! it) and what it scored, kept for the first samples and written as JSON at close, so that
//! `mint conformance check` can compare a vendor's integration with a conformance kit and name
//! the tap, channel and sample that differ.
//!
//! Off unless `conformance.record` is configured. Workers record before scoring, the delivery
//! records scores and drops; both take one lock per batch. Memory is bounded by
//! `conformance.max_samples` records (and [`MAX_CONFORMANCE_VALUES`] values in all).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::capture::Assembly;
use crate::config::{Config, MAX_CONFORMANCE_VALUES};
use crate::error::{Error, Result};

/// The format of the file written.
pub const RECORDING_FORMAT: &str = "mint-conformance-recording/1";

pub(crate) struct Recorder {
    path: PathBuf,
    max_samples: usize,
    width: usize,
    header: Value,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    samples: BTreeMap<u64, Sample>,
    /// Samples seen past `max_samples`.
    not_kept: u64,
    written: bool,
}

#[derive(Default)]
struct Sample {
    record: Vec<f32>,
    score: Option<f32>,
    dropped: Option<&'static str>,
    /// The same id submitted again: a kit's ids are each fed once.
    repeated: bool,
}

impl Recorder {
    /// A recorder for `config`'s `conformance` section, if it has one.
    pub(crate) fn new(
        config: &Config,
        assembly: &Assembly,
        head_kind: &str,
        head_sha256: &str,
    ) -> Result<Option<Recorder>> {
        let Some(c) = &config.conformance else { return Ok(None) };
        let width = assembly.width();
        if width.saturating_mul(c.max_samples) > MAX_CONFORMANCE_VALUES {
            return Err(Error::config(
                "conformance.max_samples",
                format!(
                    "{} records of {width} values exceed the {MAX_CONFORMANCE_VALUES} values a recording may hold",
                    c.max_samples
                ),
            ));
        }
        let layout: Vec<Value> = match assembly {
            Assembly::Features { parts, .. } => parts
                .iter()
                .map(|p| {
                    let tap = &config.taps[p.tap];
                    json!({"tap": tap.name, "kind": tap.kind.label(), "offset": p.offset, "width": p.channels})
                })
                .collect(),
            Assembly::Map { tap, chw } => {
                vec![
                    json!({"tap": config.taps[*tap].name, "kind": "full_map", "offset": 0, "width": width, "chw": chw}),
                ]
            }
        };
        let header = json!({
            "format": RECORDING_FORMAT,
            "mint_version": crate::identity::VERSION,
            "model": {"id": config.model.id, "version": config.model.version},
            "head": {"kind": head_kind, "sha256": head_sha256, "threshold": config.threshold()},
            "sampling_one_in": config.sampling.one_in,
            "width": width,
            "layout": layout,
        });
        Ok(Some(Recorder {
            path: c.record.clone(),
            max_samples: c.max_samples,
            width,
            header,
            state: Default::default(),
        }))
    }

    /// Keeps the records of `ids` (`width` values each) the head is about to score.
    pub(crate) fn records(&self, ids: &[u64], records: &[f32]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (i, &id) in ids.iter().enumerate() {
            let record = records.get(i * self.width..(i + 1) * self.width).unwrap_or_default();
            let room = state.samples.len() < self.max_samples;
            match state.samples.get_mut(&id) {
                Some(sample) => sample.repeated = true,
                None if room => {
                    state.samples.insert(id, Sample { record: record.to_vec(), ..Default::default() });
                }
                None => state.not_kept += 1,
            }
        }
    }

    /// Keeps the scores the head gave.
    pub(crate) fn scores(&self, ids: &[u64], scores: &[f32]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (&id, &score) in ids.iter().zip(scores) {
            if let Some(sample) = state.samples.get_mut(&id) {
                sample.score = Some(score);
            }
        }
    }

    /// Keeps why samples were dropped after their records were taken.
    pub(crate) fn dropped(&self, ids: &[u64], reason: &'static str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for &id in ids {
            if let Some(sample) = state.samples.get_mut(&id) {
                sample.dropped = Some(reason);
            }
        }
    }

    /// Writes the recording (once; later calls do nothing).
    pub(crate) fn write(&self) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.written {
            return Ok(());
        }
        state.written = true;
        let samples: Vec<Value> = state
            .samples
            .iter()
            .map(|(id, s)| {
                json!({"id": id, "score": s.score, "dropped": s.dropped, "repeated": s.repeated, "record": s.record})
            })
            .collect();
        let mut out = self.header.clone();
        out["samples"] = Value::Array(samples);
        out["not_kept"] = json!(state.not_kept);
        let text = serde_json::to_string(&out).map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?;
        std::fs::write(&self.path, text).map_err(|e| Error::io(&self.path, e))
    }
}
