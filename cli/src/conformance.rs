//! `mint conformance`: a kit for a vendor's CI that shows its integration hands the auditor
//! what the auditor was built for.
//!
//! - `mint conformance write` runs the audited model over a few inputs through the toolkit
//!   (the library's own capture code, as `mint extract`) and writes the inputs, the records the
//!   head should receive per tap, and the scores it should give: golden vectors.
//! - The vendor feeds those inputs, with sample ids 0..N−1, through its own serving path
//!   (C API, Python, PyTorch hooks), with `"conformance": {"record": FILE}` in the auditor's
//!   configuration: the library then writes what it received and scored at close.
//! - `mint conformance check` compares the two and names the tap, channel and sample that
//!   differ, with the likely cause (wrong layer, layout or dtype, input preprocessing, a stale
//!   head, missing samples); JUnit for CI; exit 1 when anything differs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use mint_audit::config::HeadConfig;
use mint_audit::{Config, FeatureExtractor, Recording, RecordingPart};
use serde_json::Value;

use mint_toolkit::conformance::{Kit, KitExpected, KitHead, KitInputs, KitModel, KitSource, Tolerance, KIT_FORMAT};
use mint_toolkit::data::{self, Images};
use mint_toolkit::descriptor::Descriptor;
use mint_toolkit::extract::{extract, read_npy, write_npy};
use mint_toolkit::report::{self, Check};
use mint_toolkit::score::score_sets_with;

#[derive(clap::Args)]
/// Golden vectors for a vendor's CI: write a kit from an auditor configuration, check what an integration recorded.
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Write(WriteArgs),
    Check(CheckArgs),
}

#[derive(clap::Args)]
/// Write a conformance kit: inputs, the records the head should receive, the scores it should give.
struct WriteArgs {
    /// The auditor configuration (with `model.onnx`, `model.input_shape` and tap `tensor`s).
    #[arg(long)]
    config: PathBuf,
    /// The inputs: IDX file, NPY array or folder of images (the first --samples are used).
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value_t = 32)]
    samples: usize,
    /// The kit's folder.
    #[arg(long)]
    out: PathBuf,
    /// Tolerance on each record value: |received − expected| ≤ abs + rel·|expected|.
    #[arg(long, default_value_t = 1e-3)]
    record_rel: f64,
    #[arg(long, default_value_t = 1e-4)]
    record_abs: f64,
    /// Tolerance on each score (absolute).
    #[arg(long, default_value_t = 1e-3)]
    score_abs: f64,
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

#[derive(clap::Args)]
/// Check an integration's recording against a kit; exit 1 when anything differs.
struct CheckArgs {
    /// The kit's folder (kit.json).
    #[arg(long)]
    kit: PathBuf,
    /// The file the library wrote (`conformance.record` in the auditor's configuration).
    #[arg(long)]
    recording: PathBuf,
    /// Write a JUnit report here.
    #[arg(long)]
    junit: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::Write(a) => write(a),
        Command::Check(a) => check(a),
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

fn write(args: WriteArgs) -> Result<ExitCode> {
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
    let layout_len = layout.len();
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
        tolerance: Tolerance { record_rel: args.record_rel, record_abs: args.record_abs, score_abs: args.score_abs },
        how: vec![
            "Add \"conformance\": {\"record\": \"received.json\"} to the auditor configuration your CI serves with, and sampling.one_in = 1.".into(),
            "Feed the kit's inputs through your serving path (sample i with sample id i), as your users' requests arrive: from images-idx3-ubyte with your own preprocessing, or inputs.npy when you feed model inputs directly.".into(),
            "Close the auditor (it writes the recording), then run: mint conformance check --kit KIT --recording received.json --junit conformance.xml".into(),
        ],
        source: KitSource { config: args.config.clone(), data: args.data.clone() },
    };
    kit.write(out)?;
    println!(
        "conformance kit for {} ({} head {}): {n} samples, records of {width} values ({} taps), in {}",
        config.model.id,
        config.head.kind(),
        &scored.head_sha256[..12],
        layout_len,
        out.display()
    );
    Ok(ExitCode::SUCCESS)
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

fn check(args: CheckArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let kit_path = args.kit.join("kit.json");
    let kit = Kit::load(&kit_path)?;
    let rec: Value = read_json(&args.recording)?;
    ensure!(
        rec["format"] == mint_audit::RECORDING_FORMAT,
        "{}: not a {} file (the library writes it at close when `conformance.record` is configured)",
        args.recording.display(),
        mint_audit::RECORDING_FORMAT
    );
    let rec: Recording = serde_path_to_error::deserialize(rec)
        .map_err(|e| anyhow::anyhow!("{}: {}: {}", args.recording.display(), e.path(), e.inner()))?;
    let (n, width, layout) = (kit.samples, kit.expected.width, &kit.layout);
    let (shape, expected) = read_npy(&args.kit.join("expected_records.npy"))?;
    ensure!(shape == [n, width], "expected_records.npy is {shape:?}, kit.json says [{n}, {width}]");
    let (_, expected_scores) = read_npy(&args.kit.join("expected_scores.npy"))?;
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

    let passed = checks.iter().all(|c| c.passed);
    let model = &kit.model.id;
    let summary = format!(
        "conformance of {model}: {} ({} checks, {} failed)",
        if passed { "PASS" } else { "FAIL" },
        checks.len(),
        checks.iter().filter(|c| !c.passed).count()
    );
    println!("{summary}");
    for c in &checks {
        println!("  [{}] {}: {}", if c.passed { "pass" } else { "FAIL" }, c.name, c.message);
    }
    if let Some(path) = &args.junit {
        let xml = report::junit(&format!("{model} conformance"), &checks, started.elapsed().as_secs_f64(), &summary);
        std::fs::write(path, xml).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
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
