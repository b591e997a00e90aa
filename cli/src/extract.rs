//! `mint extract`: the audited model's auxiliary auditable data (AAD), as NPY.
//!
//! The model runs in tract with its tap tensors exposed; each batch's tensors then go through
//! [`mint_audit::FeatureExtractor`], the very checks and reduction kernels the auditor runs on
//! a vendor's submit, so features seen in training are the features served.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use mint_audit::{FeatureExtractor, TappedModel, TensorView};
use serde_json::json;

use crate::progress;
use mint_toolkit::data::{self, Images};
use mint_toolkit::descriptor::Descriptor;
use mint_toolkit::split::{SourceCache, Split};

#[derive(clap::Args)]
/// Run the audited model over a data set and write MINT features (NPY).
pub struct Args {
    /// The audited model's descriptor (`model.json`: its ONNX file, input shape and taps).
    #[arg(long)]
    model_json: PathBuf,
    /// A data set: IDX file, NPY array or folder of images.
    #[arg(long, conflicts_with = "split")]
    data: Option<PathBuf>,
    /// A split file; writes the four sets of --protocol into the --out folder.
    #[arg(long, requires = "protocol")]
    split: Option<PathBuf>,
    /// Protocol of the split file (e.g. same_distribution, cross_dataset).
    #[arg(long)]
    protocol: Option<String>,
    /// Taps whose per-channel maxima (or vectors) form the features, comma-separated, or `all`.
    #[arg(long, default_value = "all", conflicts_with = "full_map")]
    taps: String,
    /// Write the full maps of this tap (`[n, C, H, W]`, the input of CNN heads) instead.
    #[arg(long)]
    full_map: Option<String>,
    /// Output: an .npy file with --data, a folder with --split.
    #[arg(long)]
    out: PathBuf,
    /// Samples per model run.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Threads running the model (each with its own state of one compiled plan).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Use at most this many samples of each set (the first ones).
    #[arg(long)]
    limit: Option<usize>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let desc = Descriptor::load(&args.model_json)?;
    let model = desc.compile()?;
    let (extractor, kind, used) = match &args.full_map {
        Some(tap) => {
            let i = desc.tap(tap)?;
            let shape = model.tap_shape(i)?;
            let chw: [usize; 3] = shape.as_slice().try_into().with_context(|| format!("tap '{tap}' is not a map"))?;
            (FeatureExtractor::full_map(desc.taps.clone(), i, chw), "full_map", vec![i])
        }
        None => {
            let used = desc.taps_named(&args.taps)?;
            (FeatureExtractor::vanilla(desc.taps.clone(), &used), "vanilla", used)
        }
    };
    let record_shape: Vec<usize> = match &args.full_map {
        Some(_) => model.tap_shape(used[0])?,
        None => vec![extractor.width()],
    };
    let mut sets: Vec<(String, Images)> = Vec::new();
    match (&args.data, &args.split) {
        (Some(path), None) => sets.push((String::new(), data::load(path, desc.input_shape())?)),
        (None, Some(split_path)) => {
            let split = Split::load(split_path)?;
            let protocol = split.protocol(args.protocol.as_deref().expect("required by clap"))?;
            let mut cache = SourceCache::default();
            for (phase_name, phase) in [("head_train", &protocol.head_train), ("eval", &protocol.eval)] {
                for (class, subset) in [("members", &phase.members), ("non_members", &phase.non_members)] {
                    let images = split.load_subset(subset, desc.input_shape(), &mut cache)?;
                    sets.push((format!("{phase_name}_{class}"), images));
                }
            }
        }
        _ => bail!("give either --data or --split"),
    }

    if let Some(limit) = args.limit {
        sets = sets.into_iter().map(|(name, images)| (name, images.truncated(limit))).collect();
    }
    let mut counts = serde_json::Map::new();
    for (name, images) in &sets {
        let records = extract(&model, &extractor, images, args.batch, args.threads, name)?;
        let path = if name.is_empty() { args.out.clone() } else { args.out.join(format!("{name}.npy")) };
        let mut shape = vec![images.len()];
        shape.extend_from_slice(&record_shape);
        write_npy(&path, &shape, &records)?;
        counts.insert(if name.is_empty() { "samples".into() } else { name.clone() }, json!(images.len()));
        eprintln!("wrote {} ({:?})", path.display(), shape);
    }

    let mut columns = Vec::new();
    let mut offset = 0;
    for &i in &used {
        let t = &desc.taps[i];
        let width = if kind == "vanilla" { t.feature_width() } else { record_shape.iter().product() };
        columns.push(json!({"tap": t.name, "kind": t.kind.label(), "start": offset, "stop": offset + width}));
        offset += width;
    }
    let meta = json!({
        "format": "mint-features",
        "version": crate::train::FEATURES_VERSION,
        "model": desc.model.id,
        "kind": kind,
        "taps": used.iter().map(|&i| desc.taps[i].name.clone()).collect::<Vec<_>>(),
        "record_shape": record_shape,
        "columns": columns,
        "outcome_columns": desc.outcome_columns(&used).map(|(a, b)| vec![a, b]),
        "counts": counts,
        "reduce_isa": mint_audit::reduce_isa(),
    });
    let meta_path = if args.split.is_some() { args.out.join("features.json") } else { args.out.with_extension("json") };
    std::fs::write(&meta_path, serde_json::to_string_pretty(&meta)?)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the model over `images` on `threads` threads, calling `f(first_sample, views)` for
/// every batch (from the thread that ran it).
pub fn for_each_batch(
    model: &TappedModel,
    images: &Images,
    batch: usize,
    threads: usize,
    what: &str,
    f: impl Fn(usize, &[TensorView<'_>]) -> Result<()> + Sync,
) -> Result<()> {
    let n = images.len();
    let batches = n.div_ceil(batch.max(1));
    let next = AtomicUsize::new(0);
    let bar = progress::bar(n as u64, what);
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..threads.clamp(1, batches.max(1)))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    let mut runner = model.runner()?;
                    loop {
                        let b = next.fetch_add(1, Ordering::Relaxed);
                        if b >= batches {
                            return Ok(());
                        }
                        let start = b * batch;
                        let count = batch.min(n - start);
                        let per = images.per_sample();
                        runner.run(&images.data[start * per..(start + count) * per], count)?;
                        f(start, &runner.views()?)?;
                        bar.inc(count as u64);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("extraction thread panicked")?;
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok(())
}

/// The records of every sample of `images`, in order.
pub fn extract(
    model: &TappedModel,
    extractor: &FeatureExtractor,
    images: &Images,
    batch: usize,
    threads: usize,
    what: &str,
) -> Result<Vec<f32>> {
    let width = extractor.width();
    let out = Mutex::new(vec![0f32; images.len() * width]);
    for_each_batch(model, images, batch, threads, what, |start, views| {
        let mut records = Vec::with_capacity(views[0].batch() * width);
        let rejected = extractor.extract(views, &mut records)?;
        if let Some(&first) = rejected.first() {
            bail!("sample {} gave non-finite activations ({} in its batch)", start + first, rejected.len());
        }
        out.lock().unwrap()[start * width..start * width + records.len()].copy_from_slice(&records);
        Ok(())
    })?;
    Ok(out.into_inner().unwrap())
}

/// Writes a little-endian float32 NPY array.
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    use npyz::WriterBuilder;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file =
        std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?);
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(file).begin_nd()?;
    writer.extend(data.iter().copied())?;
    writer.finish()?;
    Ok(())
}

/// Reads a float32 NPY array: its shape and data.
pub fn read_npy(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let file =
        std::io::BufReader::new(std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?);
    let npy = npyz::NpyFile::new(file)?;
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    Ok((shape, npy.into_vec::<f32>().with_context(|| format!("{}: expected float32", path.display()))?))
}
