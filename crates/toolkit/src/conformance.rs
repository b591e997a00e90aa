//! The conformance kit (format [`KIT_FORMAT`]): golden inputs, the records and scores the
//! head must receive and give, and how to compare them. `mint conformance write` makes one,
//! `mint conformance check` reads it beside the library's recording
//! ([`mint_audit::Recording`]); one type for both.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use mint_audit::config::HeadConfig;
use mint_audit::{Config, FeatureExtractor, Recording, RecordingPart};
use serde_json::Value;

use crate::data::{self, Images};
use crate::descriptor::Descriptor;
use crate::extract::{extract, read_npy, write_npy};
use crate::report::Check;
use crate::score::score_sets_with;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The format of `kit.json`.
pub const KIT_FORMAT: &str = "mint-conformance-kit/1";

/// `kit.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Kit {
    /// [`KIT_FORMAT`].
    pub format: String,
    /// The toolkit that made it.
    pub mint_version: String,
    /// The audited model the kit is for.
    pub model: KitModel,
    /// The head whose scores the kit expects.
    pub head: KitHead,
    /// Samples in the kit, ids 0..samples.
    pub samples: usize,
    /// The inputs to feed.
    pub inputs: KitInputs,
    /// What the head must receive and give.
    pub expected: KitExpected,
    /// Where each tap's values sit in a record.
    pub layout: Vec<RecordingPart>,
    /// How close a vendor's records and scores must be.
    #[serde(default)]
    pub tolerance: Tolerance,
    /// The steps a vendor's CI takes, in words.
    #[serde(default)]
    pub how: Vec<String>,
    /// What the kit was made from.
    pub source: KitSource,
}

/// The audited model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KitModel {
    /// `model.id`.
    pub id: String,
    /// `model.version`.
    pub version: String,
    /// `[C, H, W]` of one input.
    pub input_shape: [usize; 3],
}

/// The head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KitHead {
    /// `vanilla` or `cnn`.
    pub kind: String,
    /// The head file's sha256.
    pub sha256: String,
    /// The threshold of its verdicts.
    pub threshold: f32,
}

/// The inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KitInputs {
    /// The model's input tensor, float32 `[N, C, H, W]` (NPY), relative to the kit.
    pub file: String,
    /// What `file` holds, in words.
    pub what: String,
    /// The same inputs as IDX bytes, when they are pixels / 255.
    pub images: Option<String>,
    /// The preprocessing from pixels to `file`, as the model's notes say.
    pub preprocessing: Option<String>,
}

/// What the head must receive and give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KitExpected {
    /// `[N, width]` float32 records (NPY), relative to the kit.
    pub records: String,
    /// `[N]` float32 scores (NPY), relative to the kit.
    pub scores: String,
    /// Values in one record.
    pub width: usize,
}

/// How close is close enough: a record value `r` against the expected `e` when
/// `|r - e| <= record_abs + record_rel * |e|`, a score within `score_abs`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Tolerance {
    /// Relative part of a record value's tolerance.
    pub record_rel: f64,
    /// Absolute part of a record value's tolerance.
    pub record_abs: f64,
    /// A score's tolerance.
    pub score_abs: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { record_rel: 1e-3, record_abs: 1e-4, score_abs: 1e-3 }
    }
}

/// What the kit was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KitSource {
    /// The auditor configuration.
    pub config: PathBuf,
    /// The data its inputs were drawn from.
    pub data: PathBuf,
}

impl Kit {
    /// Reads `kit.json`, naming a bad field by its path.
    pub fn load(path: &Path) -> Result<Kit> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        ensure!(value["format"] == KIT_FORMAT, "{}: not a {KIT_FORMAT} file", path.display());
        serde_path_to_error::deserialize(value)
            .map_err(|e| anyhow::anyhow!("{}: {}: {}", path.display(), e.path(), e.inner()))
    }

    /// Writes it as `kit.json` in `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join("kit.json");
        std::fs::write(&path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// "channel 5" or "channel 5 at (3, 7)" for value `j` of this part.
fn position(part: &RecordingPart, j: usize) -> String {
    match part.chw {
        Some([_, h, w]) => {
            let (c, at) = (j / (h * w), j % (h * w));
            format!("channel {c} at ({}, {})", at / w, at % w)
        }
        None => format!("channel {j}"),
    }
}

/// What a kit is made from.
#[derive(Debug, Clone)]
pub struct KitRequest {
    /// The auditor configuration (with `model.onnx`, `model.input_shape` and tap `tensor`s).
    pub config: PathBuf,
    /// The inputs: IDX file, NPY array or folder of images (the first `samples` are used).
    pub data: PathBuf,
    pub samples: usize,
    /// The kit's folder.
    pub out: PathBuf,
    pub tolerance: Tolerance,
    pub threads: usize,
}

/// Runs the audited model over the inputs through the library's own capture code (as
/// `mint extract`) and writes the kit: inputs, expected records per tap, expected scores.
pub fn write_kit(args: &KitRequest) -> Result<Kit> {
    let config = Config::from_path(&args.config)?;
    ensure!(args.samples > 0, "--samples must be at least 1");
    let desc = Descriptor::from_config(&config)?;
    let input = desc.input_shape();
    let images = data::load(&args.data, input).context("--data")?.truncated(args.samples);
    let model = desc.compile()?;
    let (extractor, layout) = match &config.head {
        HeadConfig::Vanilla { .. } => {
            let used = config.head_taps()?;
            let mut offset = 0;
            let layout: Vec<RecordingPart> = used
                .iter()
                .map(|&i| {
                    let t = &config.taps[i];
                    let part = RecordingPart {
                        tap: t.name.clone(),
                        kind: t.kind.label().into(),
                        offset,
                        width: t.feature_width(),
                        chw: None,
                    };
                    offset += t.feature_width();
                    part
                })
                .collect();
            (FeatureExtractor::vanilla(config.taps.clone(), &used), layout)
        }
        _ => {
            // A CNN head scores one tap's full map.
            let i = config.head_taps()?[0];
            let shape = model.tap_shape(i)?;
            let chw: [usize; 3] = shape.as_slice().try_into().context("the CNN head's tap is not a map")?;
            let part = RecordingPart {
                tap: config.taps[i].name.clone(),
                kind: "full_map".into(),
                offset: 0,
                width: chw.iter().product(),
                chw: Some(chw),
            };
            (FeatureExtractor::full_map(config.taps.clone(), i, chw), vec![part])
        }
    };
    let width = extractor.width();
    let records = extract(&model, &extractor, &images, 64, args.threads, "kit")?;
    let none = Images { data: Vec::new(), shape: input, labels: None };
    let scored = score_sets_with(&model, args.threads, 64, &config, &images, &none)?;

    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let n = images.len();
    write_npy(&out.join("inputs.npy"), &[n, input[0], input[1], input[2]], &images.data)?;
    let pixels = write_idx_if_bytes(&out.join("images-idx3-ubyte"), &images)?;
    write_npy(&out.join("expected_records.npy"), &[n, width], &records)?;
    let scores: Vec<f32> = scored.pos.iter().map(|&s| s as f32).collect();
    write_npy(&out.join("expected_scores.npy"), &[n], &scores)?;
    let preprocessing = config.model.onnx.as_ref().and_then(|onnx| {
        let notes = onnx.parent()?.join("model.json");
        let v: Value = serde_json::from_str(&std::fs::read_to_string(notes).ok()?).ok()?;
        v["preprocessing"].as_str().map(str::to_string)
    });
    let kit = Kit {
        format: KIT_FORMAT.into(),
        mint_version: mint_audit::VERSION.into(),
        model: KitModel { id: config.model.id.clone(), version: config.model.version.clone(), input_shape: input },
        head: KitHead { kind: config.head.kind().into(), sha256: scored.head_sha256.clone(), threshold: config.threshold() },
        samples: n,
        inputs: KitInputs {
            file: "inputs.npy".into(),
            what: "the audited model's input tensor, float32 [N, C, H, W]".into(),
            images: pixels.then(|| "images-idx3-ubyte".into()),
            preprocessing,
        },
        expected: KitExpected { records: "expected_records.npy".into(), scores: "expected_scores.npy".into(), width },
        layout,
        tolerance: args.tolerance,
        how: vec![
            "Add \"conformance\": {\"record\": \"received.json\"} to the auditor configuration your CI serves with, and sampling.one_in = 1.".into(),
            "Feed the kit's inputs through your serving path (sample i with sample id i), as your users' requests arrive: from images-idx3-ubyte with your own preprocessing, or inputs.npy when you feed model inputs directly.".into(),
            "Close the auditor (it writes the recording), then run: mint conformance check --kit KIT --recording received.json --junit conformance.xml".into(),
        ],
        source: KitSource { config: args.config.clone(), data: args.data.clone() },
    };
    kit.write(out)?;
    Ok(kit)
}

/// Writes the inputs as IDX unsigned bytes when they are pixels / 255 (so that a vendor can
/// feed them through its own preprocessing); says whether it did.
fn write_idx_if_bytes(path: &Path, images: &Images) -> Result<bool> {
    let bytes: Option<Vec<u8>> = images
        .data
        .iter()
        .map(|&v| {
            let b = (v * 255.0).round();
            ((0.0..=255.0).contains(&b) && (b / 255.0 - v).abs() < 1e-6).then_some(b as u8)
        })
        .collect();
    let Some(bytes) = bytes else { return Ok(false) };
    let [c, h, w] = images.shape;
    let dims: Vec<usize> = if c == 1 { vec![images.len(), h, w] } else { vec![images.len(), c, h, w] };
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend((d as u32).to_be_bytes());
    }
    out.extend(bytes);
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}

/// How one tap compared.
struct TapOutcome {
    part: RecordingPart,
    /// (sample, value index within the part) pairs out of tolerance.
    bad: usize,
    compared: usize,
    /// The worst: sample, value index, expected, received.
    worst: Option<(usize, usize, f32, f32)>,
}

/// Compares a library's recording with the kit in `kit_dir`: the head, the layout, the
/// samples, each tap's values (naming the likely cause of a difference) and the scores. One
/// [`Check`] per item; the kit is returned for its model's name.
pub fn check(kit_dir: &Path, recording: &Path) -> Result<(Kit, Vec<Check>)> {
    let kit_path = kit_dir.join("kit.json");
    let kit = Kit::load(&kit_path)?;
    let rec: Value = read_json(recording)?;
    ensure!(
        rec["format"] == mint_audit::RECORDING_FORMAT,
        "{}: not a {} file (the library writes it at close when `conformance.record` is configured)",
        recording.display(),
        mint_audit::RECORDING_FORMAT
    );
    let rec: Recording = serde_path_to_error::deserialize(rec)
        .map_err(|e| anyhow::anyhow!("{}: {}: {}", recording.display(), e.path(), e.inner()))?;
    let (n, width, layout) = (kit.samples, kit.expected.width, &kit.layout);
    let (shape, expected) = read_npy(&kit_dir.join("expected_records.npy"))?;
    ensure!(shape == [n, width], "expected_records.npy is {shape:?}, kit.json says [{n}, {width}]");
    let (_, expected_scores) = read_npy(&kit_dir.join("expected_scores.npy"))?;
    let (rel, abs, score_abs) = (kit.tolerance.record_rel, kit.tolerance.record_abs, kit.tolerance.score_abs);

    let mut checks = Vec::new();
    // The head: the same file, or every score is suspect.
    let (kit_head, rec_head) = (kit.head.sha256.as_str(), rec.head.sha256.as_str());
    let same_head = kit_head == rec_head;
    checks.push(Check {
        name: "head: the auditor scores with the kit's head".into(),
        passed: same_head,
        message: if same_head {
            format!("head sha256 {kit_head}")
        } else {
            format!(
                "STALE OR OTHER HEAD: the auditor scored with head sha256 {rec_head}, the kit was made for {kit_head}: \
                 deploy the auditor's current head (or make the kit again from the configuration you serve)"
            )
        },
    });
    // The layout: same taps, same widths.
    let rec_layout = &rec.layout;
    let same_layout = rec_layout.len() == layout.len()
        && rec_layout.iter().zip(layout).all(|(a, b)| a.tap == b.tap && a.width == b.width && a.offset == b.offset);
    let describe =
        |l: &[RecordingPart]| l.iter().map(|p| format!("{} ({})", p.tap, p.width)).collect::<Vec<_>>().join(", ");
    checks.push(Check {
        name: "layout: the auditor's records hold the kit's taps".into(),
        passed: same_layout,
        message: if same_layout {
            format!("taps {}", describe(layout))
        } else {
            format!(
                "the auditor's configuration records taps {}, the kit expects {}: serve the configuration the kit was made from",
                describe(rec_layout),
                describe(layout)
            )
        },
    });

    // The samples: each id 0..n once, audited.
    let mut received: Vec<Option<(Vec<f32>, Option<f32>)>> = vec![None; n];
    let mut problems = Vec::new();
    for s in rec.samples {
        let id = usize::try_from(s.id).unwrap_or(usize::MAX);
        if id >= n {
            problems.push(format!("sample id {} is not in the kit (ids are 0..{})", s.id, n - 1));
            continue;
        }
        if s.repeated {
            problems.push(format!("sample {id} was submitted more than once"));
        }
        if let Some(reason) = &s.dropped {
            problems.push(format!("sample {id} was dropped ({reason})"));
            continue;
        }
        received[id] = Some((s.record, s.score));
    }
    let missing: Vec<usize> = (0..n).filter(|&i| received[i].is_none()).collect();
    if !missing.is_empty() {
        let first: Vec<String> = missing.iter().take(8).map(|i| i.to_string()).collect();
        let mut why = format!("{} of {n} samples did not reach the head (first: {})", missing.len(), first.join(", "));
        if rec.sampling_one_in > 1 {
            why.push_str(&format!("; sampling.one_in is {}: set it to 1 for the kit", rec.sampling_one_in));
        }
        if rec.not_kept > 0 {
            why.push_str("; the recording was full: raise conformance.max_samples");
        }
        problems.push(why);
    }
    checks.push(Check {
        name: "samples: every kit sample reached the head once".into(),
        passed: problems.is_empty(),
        message: if problems.is_empty() { format!("{n} samples, ids 0..{}", n - 1) } else { problems.join("; ") },
    });

    // Each tap's values.
    let close = |e: f32, r: f32| r.is_finite() && ((r - e).abs() as f64) <= abs + rel * (e.abs() as f64);
    let present: Vec<usize> = (0..n).filter(|&i| received[i].as_ref().is_some_and(|(r, _)| r.len() == width)).collect();
    let outcomes: Vec<TapOutcome> = if same_layout {
        layout
            .iter()
            .map(|p| {
                let mut o = TapOutcome { part: p.clone(), bad: 0, compared: 0, worst: None };
                let mut worst_excess = 0.0f64;
                for &i in &present {
                    let r = &received[i].as_ref().unwrap().0;
                    for j in 0..p.width {
                        let (e, g) = (expected[i * width + p.offset + j], r[p.offset + j]);
                        o.compared += 1;
                        if !close(e, g) {
                            o.bad += 1;
                            let excess = if g.is_finite() { (g - e).abs() as f64 } else { f64::INFINITY };
                            if o.worst.is_none() || excess > worst_excess {
                                worst_excess = excess;
                                o.worst = Some((i, j, e, g));
                            }
                        }
                    }
                }
                o
            })
            .collect()
    } else {
        Vec::new()
    };
    let failing: Vec<&TapOutcome> = outcomes.iter().filter(|o| o.bad > 0).collect();
    let all_fail = !outcomes.is_empty() && failing.len() == outcomes.len();
    for (k, o) in outcomes.iter().enumerate() {
        let p = &o.part;
        let message = match o.worst {
            None => format!("{} values of {} samples agree", o.compared, present.len()),
            Some((i, j, e, g)) => {
                let cause = if let Some(other) =
                    swapped_with(o, &outcomes, &present, &received, &expected, width, &close)
                {
                    format!("it holds what tap '{other}' should: taps swapped, or this tap hooked to '{other}''s layer")
                } else if p.kind == "activation_map"
                    && same_overall_max(o, &present, &received, &expected, width, &close)
                {
                    "each sample's largest value over the whole map agrees, the per-channel maxima do not: the \
                     same activations grouped into the wrong channels, a layout or stride mix-up (an NHWC buffer \
                     declared as NCHW, or the reverse)"
                        .to_string()
                } else if all_fail {
                    "every tap differs, the first included: the model's input differs from the kit's \
                     (preprocessing or normalisation, channel order, resizing), or another model is served"
                        .to_string()
                } else {
                    let agreeing: Vec<&str> =
                        outcomes[..k].iter().filter(|x| x.bad == 0).map(|x| x.part.tap.as_str()).collect();
                    let before = if agreeing.is_empty() {
                        String::new()
                    } else {
                        format!(" while earlier taps ({}) agree", agreeing.join(", "))
                    };
                    format!(
                        "only this tap differs{before}: check that it reads the configured layer and that its layout \
                         (NCHW or NHWC), strides and dtype are declared as the buffer holds them"
                    )
                };
                format!(
                    "{} of {} values differ; worst: sample {i}, {}: expected {e}, received {g}. Likely cause: {cause}",
                    o.bad,
                    o.compared,
                    position(p, j)
                )
            }
        };
        checks.push(Check { name: format!("tap '{}' ({})", p.tap, p.kind), passed: o.bad == 0, message });
    }

    // The scores.
    let mut bad_scores = Vec::new();
    for &i in &present {
        let got = received[i].as_ref().unwrap().1;
        let e = expected_scores[i];
        match got {
            Some(g) if ((g - e).abs() as f64) <= score_abs => {}
            Some(g) => bad_scores.push(format!("sample {i}: expected {e}, scored {g}")),
            None => bad_scores.push(format!("sample {i}: no score")),
        }
    }
    let message = if bad_scores.is_empty() {
        format!("{} scores within {score_abs}", present.len())
    } else {
        let cause = if !same_head {
            "the head differs (above)"
        } else if failing.is_empty() {
            "the records agree but the scores do not: the head runtime or its file differs"
        } else {
            "the records differ (above)"
        };
        format!(
            "{} of {} scores differ (first: {}). Likely cause: {cause}",
            bad_scores.len(),
            present.len(),
            bad_scores[0]
        )
    };
    checks.push(Check {
        name: "scores: the head scores as the kit expects".into(),
        passed: bad_scores.is_empty(),
        message,
    });

    Ok((kit, checks))
}

/// Whether, for every sample, the largest of the tap's received channel maxima equals the
/// largest expected one: a map's overall maximum does not depend on how its elements are
/// grouped into channels, so a layout mix-up keeps it, and another layer almost never does.
fn same_overall_max(
    o: &TapOutcome,
    present: &[usize],
    received: &[Option<(Vec<f32>, Option<f32>)>],
    expected: &[f32],
    width: usize,
    close: &dyn Fn(f32, f32) -> bool,
) -> bool {
    let p = &o.part;
    let max = |v: &[f32]| v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    !present.is_empty()
        && present.iter().all(|&i| {
            let r = &received[i].as_ref().unwrap().0[p.offset..p.offset + p.width];
            let e = &expected[i * width + p.offset..i * width + p.offset + p.width];
            close(max(e), max(r))
        })
}

/// The other tap of the same width whose expected values this tap received, if any.
fn swapped_with(
    o: &TapOutcome,
    all: &[TapOutcome],
    present: &[usize],
    received: &[Option<(Vec<f32>, Option<f32>)>],
    expected: &[f32],
    width: usize,
    close: &dyn Fn(f32, f32) -> bool,
) -> Option<String> {
    if present.is_empty() {
        return None;
    }
    all.iter()
        .filter(|u| u.part.tap != o.part.tap && u.part.width == o.part.width)
        .find(|u| {
            present.iter().all(|&i| {
                let r = &received[i].as_ref().unwrap().0;
                (0..o.part.width).all(|j| close(expected[i * width + u.part.offset + j], r[o.part.offset + j]))
            })
        })
        .map(|u| u.part.tap.clone())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kit_reads_back_as_written_and_a_bad_field_is_named() {
        let kit = Kit {
            format: KIT_FORMAT.into(),
            mint_version: "0".into(),
            model: KitModel { id: "m".into(), version: "1".into(), input_shape: [1, 28, 28] },
            head: KitHead { kind: "vanilla".into(), sha256: "ab".into(), threshold: 0.5 },
            samples: 2,
            inputs: KitInputs { file: "inputs.npy".into(), what: "x".into(), images: None, preprocessing: None },
            expected: KitExpected { records: "r.npy".into(), scores: "s.npy".into(), width: 3 },
            layout: vec![RecordingPart { tap: "t".into(), kind: "outcome".into(), offset: 0, width: 3, chw: None }],
            tolerance: Tolerance::default(),
            how: vec![],
            source: KitSource { config: "c.json".into(), data: "d".into() },
        };
        let dir = tempfile::tempdir().unwrap();
        kit.write(dir.path()).unwrap();
        assert_eq!(Kit::load(&dir.path().join("kit.json")).unwrap(), kit);
        let mut bad = serde_json::to_value(&kit).unwrap();
        bad["expected"]["width"] = "three".into();
        std::fs::write(dir.path().join("kit.json"), bad.to_string()).unwrap();
        let e = Kit::load(&dir.path().join("kit.json")).unwrap_err().to_string();
        assert!(e.contains("expected.width"), "{e}");
        // An older kit that wrote "chw": null for feature taps still reads.
        let mut old = serde_json::to_value(&kit).unwrap();
        old["layout"][0]["chw"] = serde_json::Value::Null;
        std::fs::write(dir.path().join("kit.json"), old.to_string()).unwrap();
        assert_eq!(Kit::load(&dir.path().join("kit.json")).unwrap(), kit);
    }
}
