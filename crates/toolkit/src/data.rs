//! Data sets the toolkit reads: IDX files (as Debian's dataset packages install them, gzip'd
//! or not), NPY arrays, and folders of images; and class labels (IDX or NPY). Split files,
//! which name subsets of them, are `split.rs`'s.
//!
//! Everything becomes f32 images `[C, H, W]` scaled to [0, 1]:
//! - IDX / NPY of unsigned bytes: value / 255.
//! - NPY of float32: taken as they are (already preprocessed).
//! - Image folders (PNG, JPEG; sorted by file name): converted to grey (C = 1) or RGB (C = 3)
//!   as the model's input has it, resized to its H × W with a triangle filter, value / 255.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

/// A set of images in f32, `[n, C, H, W]`, with optional class labels.
#[derive(Debug, Clone)]
pub struct Images {
    pub data: Vec<f32>,
    pub shape: [usize; 3],
    pub labels: Option<Vec<u8>>,
}

impl Images {
    /// How many images.
    pub fn len(&self) -> usize {
        let per: usize = self.shape.iter().product();
        self.data.len().checked_div(per).unwrap_or(0)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn per_sample(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn sample(&self, i: usize) -> &[f32] {
        let per = self.per_sample();
        &self.data[i * per..(i + 1) * per]
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Result<Images> {
        let n = self.len();
        let mut data = Vec::with_capacity(indices.len() * self.per_sample());
        for &i in indices {
            ensure!(i < n, "index {i} is out of range for a set of {n} samples");
            data.extend_from_slice(self.sample(i));
        }
        let labels = self.labels.as_ref().map(|l| indices.iter().map(|&i| l[i]).collect());
        Ok(Images { data, shape: self.shape, labels })
    }

    /// The first `n` samples (all when `n` is larger).
    pub fn truncated(mut self, n: usize) -> Images {
        let keep = n.min(self.len());
        self.data.truncate(keep * self.per_sample());
        if let Some(l) = &mut self.labels {
            l.truncate(keep);
        }
        self
    }
}

/// Loads a data set for a model whose input sample shape is `input` (`[C, H, W]`).
pub fn load(path: &Path, input: [usize; 3]) -> Result<Images> {
    let name = path.to_string_lossy();
    let images = if path.is_dir() {
        load_image_dir(path, input)
    } else if name.ends_with(".npy") {
        load_npy(path)
    } else if name.contains("idx") || name.ends_with(".gz") {
        let (dims, bytes) = read_idx(path)?;
        match dims.as_slice() {
            [_, h, w] => Ok(Images { data: scale(&bytes), shape: [1, *h, *w], labels: None }),
            [_, c, h, w] => Ok(Images { data: scale(&bytes), shape: [*c, *h, *w], labels: None }),
            other => bail!("IDX images must be [n, H, W] or [n, C, H, W], this file is {other:?}"),
        }
    } else {
        bail!("don't know how to read it: expected a .npy file, an IDX file (…idx…, optionally .gz) or a folder of images")
    }
    .with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        images.shape == input,
        "{}: samples are {:?} but the model takes {:?}",
        path.display(),
        images.shape,
        input
    );
    Ok(images)
}

fn scale(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&b| b as f32 / 255.0).collect()
}

/// Reads an IDX file of unsigned bytes: its dimensions and data.
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_idx(raw, usize::MAX)
}

/// Parses an IDX file of unsigned bytes held in memory (gzip'd or not) into its dimensions and
/// data; a file whose data would exceed `max_bytes` is refused before it is unpacked.
pub fn parse_idx(raw: Vec<u8>, max_bytes: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        // One byte past the limit tells a file that is too large from one that fits exactly.
        let limit = u64::try_from(max_bytes).unwrap_or(u64::MAX).saturating_add(64);
        flate2::read::GzDecoder::new(&raw[..]).take(limit).read_to_end(&mut out).context("gunzip")?;
        if out.len() as u64 >= limit {
            // Past the limit: a header that asks for that much is a large file; one that asks
            // for less, but whose stream goes on, is a bomb (or damaged), named as such.
            let declared = idx_declared_bytes(&out);
            match declared {
                Some(declared) if declared <= max_bytes as u64 => bail!(
                    "the gzip'd IDX file unpacks past {limit} bytes although its header declares {declared}: \
                     a decompression bomb, or a damaged file"
                ),
                _ => bail!("the unpacked IDX file is larger than {max_bytes} bytes"),
            }
        }
        out
    } else {
        raw
    };
    ensure!(bytes.len() >= 4 && bytes[0] == 0 && bytes[1] == 0, "not an IDX file");
    ensure!(bytes[2] == 0x08, "IDX element type 0x{:02x} is not unsigned byte", bytes[2]);
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    ensure!(bytes.len() >= header, "truncated IDX header");
    let dims: Vec<usize> =
        (0..rank).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let len = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).context("IDX dimensions overflow")?;
    ensure!(len <= max_bytes, "IDX data of {len} bytes is more than the {max_bytes} allowed");
    ensure!(bytes.len() == header + len, "IDX data is {} bytes, dimensions {dims:?} need {len}", bytes.len() - header);
    Ok((dims, bytes[header..].to_vec()))
}

/// The bytes an IDX file's header declares (header and data), if its start is an IDX header.
fn idx_declared_bytes(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return None;
    }
    let rank = bytes[3] as usize;
    let header = bytes.get(4..4 + 4 * rank)?;
    let data = header
        .chunks_exact(4)
        .try_fold(1u64, |a, d| a.checked_mul(u64::from(u32::from_be_bytes(d.try_into().ok()?))))?;
    data.checked_add(4 + 4 * rank as u64)
}

/// Class labels for `n` samples: an IDX file of unsigned bytes, or an NPY array `[n]` of any
/// integer type (as numpy keeps them) with values 0–255.
pub fn load_labels(path: &Path, n: usize) -> Result<Vec<u8>> {
    let labels: Vec<u8> = if path.to_string_lossy().ends_with(".npy") {
        let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
            .with_context(|| format!("reading {} as NPY", path.display()))?;
        let wide = npy_integers(npy, path)?;
        wide.iter()
            .enumerate()
            .map(|(i, &v)| {
                u8::try_from(v).map_err(|_| anyhow::anyhow!("{}: label {i} is {v}, not a class 0–255", path.display()))
            })
            .collect::<Result<_>>()?
    } else {
        let (dims, bytes) = read_idx(path).with_context(|| {
            format!("reading {}: expected an IDX file of unsigned bytes or a .npy array of integers", path.display())
        })?;
        ensure!(dims.len() == 1, "{}: labels must be [n], this IDX file is {dims:?}", path.display());
        bytes
    };
    ensure!(labels.len() == n, "{}: {} labels for {n} samples", path.display(), labels.len());
    Ok(labels)
}

/// A 1-D NPY array of any integer type, widened to i64 (a u64 past i64::MAX becomes -1, which
/// every caller refuses as out of range): class labels, index lists.
pub fn npy_integers<R: std::io::Read>(npy: npyz::NpyFile<R>, path: &Path) -> Result<Vec<i64>> {
    ensure!(npy.shape().len() == 1, "{}: must be a 1-D array [n], this one is {:?}", path.display(), npy.shape());
    Ok(match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Uint => match t.size_field() {
            1 => npy.into_vec::<u8>()?.into_iter().map(i64::from).collect(),
            2 => npy.into_vec::<u16>()?.into_iter().map(i64::from).collect(),
            4 => npy.into_vec::<u32>()?.into_iter().map(i64::from).collect(),
            _ => npy.into_vec::<u64>()?.into_iter().map(|v| i64::try_from(v).unwrap_or(-1)).collect(),
        },
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Int => match t.size_field() {
            1 => npy.into_vec::<i8>()?.into_iter().map(i64::from).collect(),
            2 => npy.into_vec::<i16>()?.into_iter().map(i64::from).collect(),
            4 => npy.into_vec::<i32>()?.into_iter().map(i64::from).collect(),
            _ => npy.into_vec::<i64>()?,
        },
        other => bail!("{}: NPY element type {other:?}: expected integers", path.display()),
    })
}

fn load_npy(path: &Path) -> Result<Images> {
    let file = std::fs::File::open(path)?;
    parse_npy(std::io::BufReader::new(file), usize::MAX)
}

/// Reads NPY images from `reader`; an array of more than `max_elements` is refused before
/// its data is read.
pub fn parse_npy(reader: impl Read, max_elements: usize) -> Result<Images> {
    let npy = npyz::NpyFile::new(reader)?;
    let elements = npy.shape().iter().try_fold(1u64, |a, &d| a.checked_mul(d)).context("NPY shape overflows")?;
    ensure!(
        elements <= max_elements as u64,
        "an NPY array of {elements} elements is more than the {max_elements} allowed"
    );
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let chw = match shape.as_slice() {
        [_, h, w] => [1, *h, *w],
        [_, c, h, w] => [*c, *h, *w],
        other => bail!("NPY images must be [n, H, W] or [n, C, H, W], this array is {other:?}"),
    };
    let data = match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Uint && t.size_field() == 1 => {
            scale(&npy.into_vec::<u8>()?)
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => {
            npy.into_vec::<f32>()?
        }
        other => bail!("NPY element type {other:?}: expected uint8 (pixels) or float32 (preprocessed)"),
    };
    Ok(Images { data, shape: chw, labels: None })
}

/// How many samples a source holds (IDX, NPY, or an image folder), without decoding images.
pub fn count(path: &Path) -> Result<usize> {
    let counted = if path.is_dir() {
        image_files(path).map(|f| f.len())
    } else if path.to_string_lossy().ends_with(".npy") {
        std::fs::File::open(path)
            .map_err(anyhow::Error::from)
            .and_then(|f| Ok(npyz::NpyFile::new(std::io::BufReader::new(f))?))
            .and_then(|npy| npy.shape().first().map(|&d| d as usize).context("a 0-D array holds no samples"))
    } else {
        read_idx(path).and_then(|(dims, _)| dims.first().copied().context("an IDX file of rank 0"))
    };
    counted.with_context(|| format!("counting the samples of {}", path.display()))
}

/// The PNG and JPEG files of a folder, sorted by name.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(),
                Some("png" | "jpg" | "jpeg")
            )
        })
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "no .png, .jpg or .jpeg files");
    Ok(files)
}

fn load_image_dir(dir: &Path, [c, h, w]: [usize; 3]) -> Result<Images> {
    ensure!(c == 1 || c == 3, "image folders feed models of 1 or 3 channels, not {c}");
    let files = image_files(dir)?;
    let mut data = Vec::with_capacity(files.len() * c * h * w);
    for file in &files {
        let img = image::open(file).with_context(|| format!("decoding {}", file.display()))?;
        push_as_input(&img, [c, h, w], &mut data);
    }
    Ok(Images { data, shape: [c, h, w], labels: None })
}

/// Appends `img` as the model's input `[C, H, W]`: grey or RGB, resized with a triangle
/// filter, scaled to [0, 1]. The one conversion of images, for folders and uploads alike.
pub fn push_as_input(img: &image::DynamicImage, [c, h, w]: [usize; 3], data: &mut Vec<f32>) {
    let img = img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle);
    if c == 1 {
        data.extend(img.to_luma8().as_raw().iter().map(|&b| b as f32 / 255.0));
    } else {
        let rgb = img.to_rgb8();
        for ch in 0..3 {
            data.extend(rgb.pixels().map(|p| p.0[ch] as f32 / 255.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idx_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-idx3-ubyte");
        let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        bytes.extend(0..12u8);
        std::fs::write(&path, &bytes).unwrap();
        let images = load(&path, [1, 2, 3]).unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(images.sample(1)[0], 6.0 / 255.0);
        let err = load(&path, [1, 3, 2]).unwrap_err().to_string();
        assert!(err.contains("model takes"), "{err}");
    }
}
