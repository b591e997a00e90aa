//! The audited model run over a data set: batches on several threads, each batch's tapped
//! tensors handed to a callback (what `mint extract`, `mint eval` and the console build on), the
//! records of every sample, and the NPY files features are kept in.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use mint_audit::{FeatureExtractor, TappedModel, TensorView};

use crate::data::Images;
use crate::progress;

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
