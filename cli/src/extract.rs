//! `mint extract`: the audited model's auxiliary auditable data (AAD), as NPY.
//!
//! The model runs in tract with its tap tensors exposed; each batch's tensors then go through
//! [`mint_audit::FeatureExtractor`], the very checks and reduction kernels the auditor runs on
//! a vendor's submit, so features seen in training are the features served.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use mint_audit::FeatureExtractor;

use mint_toolkit::data::{self, Images};
use mint_toolkit::descriptor::Descriptor;
use mint_toolkit::extract::{extract, write_npy};
use mint_toolkit::formats::features::{Column, FeaturesSidecar, Layout, FEATURES_FORMAT, FEATURES_VERSION};
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
            (FeatureExtractor::full_map(desc.taps.clone(), i, chw), Layout::FullMap, vec![i])
        }
        None => {
            let used = desc.taps_named(&args.taps)?;
            (FeatureExtractor::vanilla(desc.taps.clone(), &used), Layout::Vanilla, used)
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
    let mut counts = std::collections::BTreeMap::new();
    for (name, images) in &sets {
        let records = extract(&model, &extractor, images, args.batch, args.threads, name)?;
        let path = if name.is_empty() { args.out.clone() } else { args.out.join(format!("{name}.npy")) };
        let mut shape = vec![images.len()];
        shape.extend_from_slice(&record_shape);
        write_npy(&path, &shape, &records)?;
        counts.insert(if name.is_empty() { "samples".into() } else { name.clone() }, images.len());
        eprintln!("wrote {} ({:?})", path.display(), shape);
    }

    let mut columns = Vec::new();
    let mut offset = 0;
    for &i in &used {
        let t = &desc.taps[i];
        let width = if kind == Layout::Vanilla { t.feature_width() } else { record_shape.iter().product() };
        columns.push(Column { tap: t.name.clone(), kind: t.kind.into(), start: offset, stop: offset + width });
        offset += width;
    }
    let sidecar = FeaturesSidecar {
        format: FEATURES_FORMAT.into(),
        version: FEATURES_VERSION,
        kind,
        columns,
        record_shape,
        taps: used.iter().map(|&i| desc.taps[i].name.clone()).collect(),
        model: Some(desc.model.id.clone()),
        outcome_columns: desc.outcome_columns(&used).map(|(a, b)| [a, b]),
        counts,
        reduce_isa: Some(mint_audit::reduce_isa().to_string()),
    };
    let meta_path = if args.split.is_some() { args.out.join("features.json") } else { args.out.with_extension("json") };
    sidecar.write(&meta_path)?;
    Ok(ExitCode::SUCCESS)
}
