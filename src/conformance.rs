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

use serde::{Deserialize, Serialize};

use crate::capture::Assembly;
use crate::config::{Config, MAX_CONFORMANCE_VALUES};
use crate::error::{Error, Result};

/// The format of the file written.
pub const RECORDING_FORMAT: &str = "mint-conformance-recording/1";

/// The recording file (format [`RECORDING_FORMAT`]): what the library writes at close and
/// `mint conformance check` reads, one type for both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Recording {
    /// [`RECORDING_FORMAT`].
    pub format: String,
    /// The library that wrote it.
    pub mint_version: String,
    /// The audited model the recording was made for.
    pub model: RecordingModel,
    /// The head that scored.
    pub head: RecordingHead,
    /// The configuration's `sampling.one_in`: above 1, most samples never reach the head.
    pub sampling_one_in: u64,
    /// Values in one record.
    pub width: usize,
    /// Where each tap's values sit in a record.
    pub layout: Vec<RecordingPart>,
    /// The first `conformance.max_samples` samples, by id.
    pub samples: Vec<RecordingSample>,
    /// Samples seen past `max_samples`.
    pub not_kept: u64,
}

/// The audited model the recording was made for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RecordingModel {
    /// `model.id`.
    pub id: String,
    /// `model.version`.
    pub version: String,
}

/// The head that scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RecordingHead {
    /// `vanilla` or `cnn`.
    pub kind: String,
    /// The head file's sha256: a kit made for another head flags every score.
    pub sha256: String,
    /// The threshold a score was judged at.
    pub threshold: f32,
}

/// One tap's values in a record: `width` values from `offset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RecordingPart {
    /// The tap's name.
    pub tap: String,
    /// The tap's kind (`activation_map`, `outcome`, ...), or `full_map` for a CNN head's map.
    pub kind: String,
    /// Where its values start in a record.
    pub offset: usize,
    /// How many values it has.
    pub width: usize,
    /// `[C, H, W]` of a full map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chw: Option<[usize; 3]>,
}

/// One sample as the head received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RecordingSample {
    /// The id the vendor submitted it with.
    pub id: u64,
    /// None when the sample was dropped (or not scored by close).
    pub score: Option<f32>,
    /// Why it was dropped after its record was taken.
    pub dropped: Option<String>,
    /// The same id was submitted again (a kit's ids are each fed once).
    pub repeated: bool,
    /// The record the head received (`width` values, laid out as `layout` says).
    pub record: Vec<f32>,
}

pub(crate) struct Recorder {
    path: PathBuf,
    max_samples: usize,
    width: usize,
    /// The file's fields other than the samples.
    header: Recording,
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
        let layout: Vec<RecordingPart> = match assembly {
            Assembly::Features { parts, .. } => parts
                .iter()
                .map(|p| {
                    let tap = &config.taps[p.tap];
                    RecordingPart {
                        tap: tap.name.clone(),
                        kind: tap.kind.label().to_string(),
                        offset: p.offset,
                        width: p.channels,
                        chw: None,
                    }
                })
                .collect(),
            Assembly::Map { tap, chw } => vec![RecordingPart {
                tap: config.taps[*tap].name.clone(),
                kind: "full_map".into(),
                offset: 0,
                width,
                chw: Some(*chw),
            }],
        };
        let header = Recording {
            format: RECORDING_FORMAT.into(),
            mint_version: crate::identity::VERSION.into(),
            model: RecordingModel { id: config.model.id.clone(), version: config.model.version.clone() },
            head: RecordingHead { kind: head_kind.into(), sha256: head_sha256.into(), threshold: config.threshold() },
            sampling_one_in: config.sampling.one_in,
            width,
            layout,
            samples: Vec::new(),
            not_kept: 0,
        };
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
        let samples = state
            .samples
            .iter()
            .map(|(&id, s)| RecordingSample {
                id,
                score: s.score,
                dropped: s.dropped.map(str::to_string),
                repeated: s.repeated,
                record: s.record.clone(),
            })
            .collect();
        let out = Recording { samples, not_kept: state.not_kept, ..self.header.clone() };
        let text = serde_json::to_string(&out).map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?;
        std::fs::write(&self.path, text).map_err(|e| Error::io(&self.path, e))
    }
}
