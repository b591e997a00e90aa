//! The audited models a console serves, each registered by a `console.json` beside its
//! auditor configuration (docs/console.md has the format), loaded in the background so that
//! the page answers while the reference scores are computed.
//!
//! Loading a model compiles it once, scores its reference non-members (the non-members its
//! head was calibrated on) and, for the card, its held-out members, through the library's
//! runtime as `mint eval` does; the reference images flagged at the calibrated threshold are
//! counted again, so the card can say whether the console reproduces the calibration.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{ensure, Context, Result};
use mint_audit::{Config, TappedModel};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::blind::DomainCheck;
use crate::calibrate;
use crate::data::Images;
use crate::descriptor::Descriptor;
use crate::roc;
use crate::score::score_sets_with;
use crate::split::{SourceCache, Split};

/// The shipped models the console serves by default, from the working directory's `models/`
/// or, failing that, the source tree this `mint` was built from.
pub fn shipped_models() -> Vec<PathBuf> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let root = [PathBuf::from("models"), built_from]
        .into_iter()
        .find(|r| r.join("fmnist-memorizing/console.json").is_file())
        .unwrap_or_else(|| PathBuf::from("models"));
    ["fmnist-memorizing", "fmnist-generalizing"].iter().map(|m| root.join(m)).collect()
}

/// `console.json`: how a model is shown and what its reference is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    /// A name a person understands.
    title: String,
    /// What the model is, in a sentence or two.
    description: String,
    /// What its inputs look like: uploads unlike these make any verdict meaningless.
    domain: String,
    /// The auditor configuration, relative to this file.
    config: PathBuf,
    /// The split file whose protocol gives the reference non-members and held-out members.
    split: PathBuf,
    protocol: String,
    /// The calibration's part of the protocol's eval non-members (as `mint eval --calibrate`
    /// drew it): the reference every upload is compared with.
    calibration_fraction: f64,
    calibration_seed: u64,
}

/// A model ready to analyse uploads.
pub struct ConsoleModel {
    pub id: String,
    pub config: Config,
    pub input_shape: [usize; 3],
    pub model: TappedModel,
    pub reference: Reference,
    pub domain: DomainCheck,
    pub card: Value,
}

/// The reference non-members and their scores.
pub struct Reference {
    pub images: Images,
    pub scores: Vec<f64>,
    /// sha256 over the reference images' pixels (f32, little-endian), for the bundle.
    pub sha256: String,
    pub description: String,
}

/// One registered model, loading, ready or failed.
pub enum State {
    Loading,
    Ready(Arc<ConsoleModel>),
    Failed(String),
}

pub struct Entry {
    pub id: String,
    pub path: PathBuf,
    pub state: RwLock<State>,
}

/// The models of a console, in the order given.
pub struct Registry {
    pub entries: Vec<Entry>,
}

impl Registry {
    /// Registers the models (a `console.json`, or a folder holding one) and loads them one
    /// after another on a thread of their own; `card_members` limits the held-out members
    /// scored for the card's AUC.
    pub fn start(paths: &[PathBuf], card_members: usize, threads: usize) -> Result<Arc<Registry>> {
        let mut entries = Vec::new();
        for p in paths {
            let path = if p.is_dir() { p.join("console.json") } else { p.clone() };
            ensure!(path.is_file(), "{}: no console.json (docs/console.md says what it holds)", p.display());
            let id = model_id(&path)?;
            ensure!(entries.iter().all(|e: &Entry| e.id != id), "model '{id}' is registered twice");
            entries.push(Entry { id, path, state: RwLock::new(State::Loading) });
        }
        ensure!(!entries.is_empty(), "no model to serve");
        let registry = Arc::new(Registry { entries });
        let loading = Arc::clone(&registry);
        std::thread::Builder::new().name("mint-console-load".into()).spawn(move || {
            for entry in &loading.entries {
                let state = match ConsoleModel::load(&entry.path, card_members, threads) {
                    Ok(m) => {
                        eprintln!("mint serve: {} ready", entry.id);
                        State::Ready(Arc::new(m))
                    }
                    Err(e) => {
                        eprintln!("mint serve: {} failed to load: {e:#}", entry.id);
                        State::Failed(format!("{e:#}"))
                    }
                };
                *entry.state.write().unwrap() = state;
            }
        })?;
        Ok(registry)
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Loads one model synchronously (for `mint verify-bundle`).
    pub fn load_one(path: &Path, card_members: usize, threads: usize) -> Result<ConsoleModel> {
        let path = if path.is_dir() { path.join("console.json") } else { path.to_owned() };
        ConsoleModel::load(&path, card_members, threads)
    }
}

/// The model id a registration serves, read from its configuration without loading anything.
fn model_id(path: &Path) -> Result<String> {
    let reg = Registration::read(path)?;
    let config = Config::from_path(reg.config_path(path)).with_context(|| format!("{}: config", path.display()))?;
    Ok(config.model.id.clone())
}

impl Registration {
    fn read(path: &Path) -> Result<Registration> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text))
            .map_err(|e| anyhow::anyhow!("{}: {}: {} (docs/console.md)", path.display(), e.path(), e.inner()))
    }

    fn config_path(&self, at: &Path) -> PathBuf {
        at.parent().unwrap_or(Path::new(".")).join(&self.config)
    }
}

impl ConsoleModel {
    fn load(path: &Path, card_members: usize, threads: usize) -> Result<ConsoleModel> {
        let reg = Registration::read(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let config = Config::from_path(reg.config_path(path))?;
        let calibration = config
            .calibration()
            .context("the head is not calibrated: a console verdict needs a calibrated FPR (mint eval --calibrate)")?
            .clone();
        let desc = Descriptor::from_config(&config)?;
        let input_shape = desc.input_shape();
        let model = desc.compile()?;

        let split = Split::load(&base.join(&reg.split))?;
        let protocol = split.protocol(&reg.protocol)?;
        let mut cache = SourceCache::default();
        let non_members = split.load_subset(&protocol.eval.non_members, input_shape, &mut cache)?;
        let (part, _) = calibrate::parts(non_members.len(), reg.calibration_fraction, reg.calibration_seed);
        let reference_images = non_members.subset(&part)?;
        let mut members = split.load_subset(&protocol.eval.members, input_shape, &mut cache)?;
        members = members.truncated(card_members);

        let scored = score_sets_with(&model, threads, 64, &config, &members, &reference_images)?;
        // The threshold lies mid-gap between calibration scores, so scores recomputed here (by
        // kernels that may round the last bit differently) flag the same reference images.
        let threshold = config.threshold() as f64;
        let reference_flagged = scored.neg.iter().filter(|&&s| s >= threshold).count() as u64;
        let calibration_flagged = (calibration.fpr.estimate * calibration.non_members as f64).round() as u64;
        let reproduced = reference_flagged == calibration_flagged && scored.neg.len() as u64 == calibration.non_members;

        let mut sha = Sha256::new();
        for v in &reference_images.data {
            sha.update(v.to_le_bytes());
        }
        let reference = Reference {
            sha256: format!("{:x}", sha.finalize()),
            description: format!(
                "{} images never used in training: the part of {} protocol '{}' eval non-members ({}) the head was calibrated on",
                reference_images.len(),
                reg.split.display(),
                reg.protocol,
                protocol.eval.non_members.source
            ),
            images: reference_images,
            scores: scored.neg.clone(),
        };
        let domain = DomainCheck::fit(&reference.images);
        let auc = roc::auc(&scored.pos, &scored.neg);
        let tpr = scored.pos.iter().filter(|&&s| s >= threshold).count() as f64 / scored.pos.len() as f64;
        let training = read_training_notes(&base.join("model.json"));
        let card = json!({
            "id": config.model.id,
            "version": config.model.version,
            "title": reg.title,
            "description": reg.description,
            "domain": reg.domain,
            "input_shape": input_shape,
            "training": training,
            "head": {"kind": config.head.kind(), "sha256": scored.head_sha256, "threshold": threshold},
            "calibration": {
                "target_fpr": calibration.target_fpr,
                "fpr": {"estimate": calibration.fpr.estimate, "low": calibration.fpr.low, "high": calibration.fpr.high},
                "tpr": {"estimate": calibration.tpr.estimate, "low": calibration.tpr.low, "high": calibration.tpr.high},
                "non_members": calibration.non_members,
                "members": calibration.members,
                "digest": calibration.digest,
                "reproduced": reproduced,
                "reference_flagged": reference_flagged,
            },
            "measured_here": {
                "auc": auc,
                "tpr_at_threshold": tpr,
                "members": scored.pos.len(),
                "non_members": scored.neg.len(),
                "what": format!("the head on {} held-out members against the {} reference non-members, scored by this console at start-up",
                    scored.pos.len(), scored.neg.len()),
            },
            "reference": {"samples": reference.scores.len(), "description": reference.description},
        });
        Ok(ConsoleModel { id: config.model.id.clone(), config, input_shape, model, reference, domain, card })
    }
}

/// The training notes `train_audited.py` writes beside a shipped model (architecture, member
/// count, accuracy), when there are any.
fn read_training_notes(path: &Path) -> Value {
    let Ok(text) = std::fs::read_to_string(path) else { return Value::Null };
    let Ok(v) = serde_json::from_str::<Value>(&text) else { return Value::Null };
    json!({
        "architecture": v["architecture"],
        "members": v["training"]["members"],
        "train_accuracy": v["results"]["train_accuracy"],
        "test_accuracy": v["results"]["test_accuracy"],
    })
}
