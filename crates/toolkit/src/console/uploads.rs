//! Uploaded files, decoded in memory into the model's input: PNG and JPEG images (converted
//! and resized as `mint eval` does image folders, and saying so), and the toolkit's array
//! formats (IDX, NPY), which hold many images of the model's own size. Nothing is written
//! anywhere; every refusal says, in words a person understands, which file and why.

use std::io::Cursor;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::data::{self, Images};

/// One uploaded file, as received.
pub struct Upload {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// What a console accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Images in one request, counting each image of an IDX or NPY file.
    pub max_images: usize,
    /// Width and height of a PNG or JPEG, each.
    pub max_side: u32,
    /// Bytes one image may take while decoding.
    pub max_decode_bytes: u64,
    /// Pixels of the PNG and JPEG images of one request together (from their headers, before
    /// any is decoded): what bounds the decoding work of a request.
    pub max_pixels: u64,
    /// The longest one request's images may take to decode, checked between images.
    pub max_work: Duration,
}

/// One image of an upload.
#[derive(Debug, Clone)]
pub struct Sample {
    pub file: String,
    /// sha256 of the whole file (shared by the images of an IDX or NPY file).
    pub sha256: String,
    /// Position in its file, for files that hold several images.
    pub index: Option<usize>,
    /// What was done to fit the model's input, if anything.
    pub note: Option<String>,
}

/// Every image of a request, in upload order.
#[derive(Debug)]
pub struct Decoded {
    pub samples: Vec<Sample>,
    pub images: Images,
}

/// Decodes `uploads` for a model whose input is `[C, H, W]`.
pub fn decode(uploads: &[Upload], input: [usize; 3], limits: &Limits) -> Result<Decoded, String> {
    if uploads.is_empty() {
        return Err("No images were uploaded: choose one or more image files.".into());
    }
    let per = input.iter().product::<usize>();
    let pixels = declared_pixels(uploads);
    if pixels > limits.max_pixels {
        return Err(format!(
            "These images hold {:.1} million pixels together; this console analyses at most {:.1} million per \
             request. Send fewer or smaller images per request.",
            pixels as f64 / 1e6,
            limits.max_pixels as f64 / 1e6
        ));
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut data = Vec::new();
    for upload in uploads {
        if started.elapsed() > limits.max_work {
            return Err(format!(
                "These images took longer than {} seconds to read; send fewer or smaller images per request.",
                limits.max_work.as_secs()
            ));
        }
        let sha256 = format!("{:x}", Sha256::digest(&upload.bytes));
        let name = display_name(&upload.name);
        let room = limits.max_images.saturating_sub(samples.len());
        if room == 0 {
            return Err(too_many(limits));
        }
        let kind = sniff(&upload.bytes);
        match kind {
            Kind::Image => {
                let note = decode_image(&upload.bytes, input, limits, &mut data).map_err(|e| format!("{name}: {e}"))?;
                samples.push(Sample { file: name, sha256, index: None, note });
            }
            Kind::Idx | Kind::Npy => {
                let images = decode_array(upload, kind, input, room, per).map_err(|e| format!("{name}: {e}"))?;
                for i in 0..images.len() {
                    samples.push(Sample { file: name.clone(), sha256: sha256.clone(), index: Some(i), note: None });
                }
                data.extend_from_slice(&images.data);
            }
            Kind::Unknown => {
                return Err(format!(
                    "{name}: this is not an image this console can read. Upload PNG or JPEG photos \
                     (or the toolkit's IDX and NPY image arrays)."
                ))
            }
        }
    }
    Ok(Decoded { samples, images: Images { data, shape: input, labels: None } })
}

/// The pixels of the request's PNG and JPEG images, read from their headers (a header that
/// cannot be read counts nothing here: decoding refuses the file with its reason): the
/// decoding work a request asks for.
pub fn declared_pixels(uploads: &[Upload]) -> u64 {
    let mut total = 0u64;
    for upload in uploads.iter().filter(|u| sniff(&u.bytes) == Kind::Image) {
        let dimensions = image::ImageReader::new(Cursor::new(&upload.bytes))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok());
        if let Some((w, h)) = dimensions {
            total = total.saturating_add(u64::from(w) * u64::from(h));
        }
    }
    total
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Image,
    Idx,
    Npy,
    Unknown,
}

/// The format, from the file's first bytes (never from its name or declared type).
fn sniff(bytes: &[u8]) -> Kind {
    match bytes {
        [0x89, b'P', b'N', b'G', ..] | [0xff, 0xd8, 0xff, ..] => Kind::Image,
        [0x93, b'N', b'U', b'M', b'P', b'Y', ..] => Kind::Npy,
        [0, 0, 0x08, 1..=4, ..] | [0x1f, 0x8b, ..] => Kind::Idx,
        _ => Kind::Unknown,
    }
}

/// A file name fit for a report: its last path component, printable, at most 120 characters.
fn display_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let clean: String = last.chars().filter(|c| !c.is_control()).take(120).collect();
    if clean.is_empty() {
        "(unnamed file)".into()
    } else {
        clean
    }
}

fn too_many(limits: &Limits) -> String {
    format!(
        "Too many images: this console takes at most {} per request. Split them into several requests.",
        limits.max_images
    )
}

/// Decodes a PNG or JPEG within the limits, appending it as the model's input; returns what
/// was done to fit it.
fn decode_image(
    bytes: &[u8],
    [c, h, w]: [usize; 3],
    limits: &Limits,
    data: &mut Vec<f32>,
) -> Result<Option<String>, String> {
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| "the file could not be read as an image.".to_string())?;
    let mut decode_limits = image::Limits::default();
    decode_limits.max_image_width = Some(limits.max_side);
    decode_limits.max_image_height = Some(limits.max_side);
    decode_limits.max_alloc = Some(limits.max_decode_bytes);
    reader.limits(decode_limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => format!(
            "the image is too large: at most {0}×{0} pixels are accepted. Shrink it and try again.",
            limits.max_side
        ),
        image::ImageError::Unsupported(_) => {
            "this image format or variant is not supported; save it as PNG or JPEG.".into()
        }
        _ => "the image is damaged or incomplete and could not be decoded.".into(),
    })?;
    let mut notes = Vec::new();
    if img.width() as usize != w || img.height() as usize != h {
        notes.push(format!("resized from {}×{} to {w}×{h}", img.width(), img.height()));
    }
    if c == 1 && img.color().has_color() {
        notes.push("converted from colour to grey".into());
    }
    if img.color().has_alpha() {
        notes.push("transparency dropped".into());
    }
    data::push_as_input(&img, [c, h, w], data);
    Ok((!notes.is_empty()).then(|| notes.join(", ")))
}

/// The images of an IDX or NPY upload, which must already be the model's size.
fn decode_array(upload: &Upload, kind: Kind, input: [usize; 3], room: usize, per: usize) -> Result<Images, String> {
    let max_elements = room.saturating_mul(per);
    let images = match kind {
        Kind::Idx => {
            let (dims, bytes) =
                data::parse_idx(upload.bytes.clone(), max_elements).map_err(|e| too_many_or(e, room))?;
            let shape = match dims.as_slice() {
                [_, h, w] => [1, *h, *w],
                [_, c, h, w] => [*c, *h, *w],
                _ => {
                    return Err(format!(
                        "an IDX file of images must be [n, H, W] or [n, C, H, W]; this one is {dims:?}."
                    ))
                }
            };
            Images { data: bytes.iter().map(|&b| b as f32 / 255.0).collect(), shape, labels: None }
        }
        _ => data::parse_npy(Cursor::new(&upload.bytes), max_elements).map_err(|e| too_many_or(e, room))?,
    };
    if images.shape != input {
        return Err(format!(
            "its images are {:?} ([C, H, W]) but this model takes {input:?}. Array files are not resized: upload PNG or JPEG images to have them resized.",
            images.shape
        ));
    }
    if images.is_empty() {
        return Err("the file holds no images.".into());
    }
    Ok(images)
}

fn too_many_or(e: anyhow::Error, room: usize) -> String {
    let text = format!("{e:#}");
    if text.contains("decompression bomb") {
        "it unpacks to far more data than its header declares: a decompression bomb, or a damaged file. It was not read."
            .into()
    } else if text.contains("allowed") || text.contains("larger than") {
        format!("it holds more images than this request has room for ({room}). Split it into several requests.")
    } else {
        format!("not a readable IDX or NPY image file ({text}).")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_images: 4,
        max_side: 64,
        max_decode_bytes: 1 << 20,
        max_pixels: 10_000,
        max_work: Duration::from_secs(60),
    };

    fn png(w: u32, h: u32, colour: bool) -> Vec<u8> {
        let img: image::DynamicImage = if colour {
            image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7])).into()
        } else {
            image::GrayImage::from_fn(w, h, |x, _| image::Luma([(x as u8).wrapping_mul(9)])).into()
        };
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn images_are_converted_and_the_report_says_how() {
        let uploads = [
            Upload { name: "a.png".into(), bytes: png(28, 28, false) },
            Upload { name: "C:\\photos\\b.png".into(), bytes: png(40, 30, true) },
        ];
        let d = decode(&uploads, [1, 28, 28], &LIMITS).unwrap();
        assert_eq!(d.images.len(), 2);
        assert_eq!(d.samples[0].note, None);
        assert_eq!(d.samples[1].file, "b.png");
        assert_eq!(d.samples[1].note.as_deref(), Some("resized from 40×30 to 28×28, converted from colour to grey"));
        assert_eq!(d.samples[0].sha256, format!("{:x}", Sha256::digest(&uploads[0].bytes)));
    }

    #[test]
    fn bad_uploads_are_refused_in_plain_words() {
        let text = Upload { name: "notes.txt".into(), bytes: b"hello".to_vec() };
        assert!(decode(&[text], [1, 28, 28], &LIMITS).unwrap_err().contains("notes.txt: this is not an image"));
        let big = Upload { name: "big.png".into(), bytes: png(65, 10, false) };
        assert!(decode(&[big], [1, 28, 28], &LIMITS).unwrap_err().contains("too large"));
        let mut cut = png(28, 28, false);
        cut.truncate(cut.len() / 2);
        let cut = Upload { name: "cut.png".into(), bytes: cut };
        assert!(decode(&[cut], [1, 28, 28], &LIMITS).unwrap_err().contains("damaged"));
        let many: Vec<Upload> =
            (0..5).map(|i| Upload { name: format!("{i}.png"), bytes: png(28, 28, false) }).collect();
        assert!(decode(&many, [1, 28, 28], &LIMITS).unwrap_err().starts_with("Too many images"));
        assert!(decode(&[], [1, 28, 28], &LIMITS).unwrap_err().starts_with("No images"));
    }

    #[test]
    fn a_request_is_bounded_in_pixels_before_anything_is_decoded() {
        // Three 60×60 images: each within the side limit, 10,800 pixels together.
        let three: Vec<Upload> =
            (0..3).map(|i| Upload { name: format!("{i}.png"), bytes: png(60, 60, true) }).collect();
        let e = decode(&three, [1, 28, 28], &LIMITS).unwrap_err();
        assert!(e.contains("0.0 million pixels together") && e.contains("at most 0.0 million"), "{e}");
        assert_eq!(declared_pixels(&three), 10_800);
        assert_eq!(decode(&three[..2], [1, 28, 28], &LIMITS).unwrap().samples.len(), 2);
        // And in time: nothing is decoded once the budget is spent.
        let spent = Limits { max_work: Duration::ZERO, ..LIMITS };
        std::thread::sleep(Duration::from_millis(2));
        let e = decode(&three[..2], [1, 28, 28], &spent).unwrap_err();
        assert!(e.contains("took longer than 0 seconds"), "{e}");
    }

    #[test]
    fn idx_files_count_against_the_limit_and_must_fit_the_model() {
        let idx = |n: u32, side: u32| {
            let mut b = vec![0, 0, 8, 3];
            for d in [n, side, side] {
                b.extend(d.to_be_bytes());
            }
            b.extend(std::iter::repeat_n(9u8, (n * side * side) as usize));
            b
        };
        let d = decode(&[Upload { name: "x-idx3-ubyte".into(), bytes: idx(3, 28) }], [1, 28, 28], &LIMITS).unwrap();
        assert_eq!(d.samples.len(), 3);
        assert_eq!(d.samples[2].index, Some(2));
        let e = decode(&[Upload { name: "x".into(), bytes: idx(5, 28) }], [1, 28, 28], &LIMITS).unwrap_err();
        assert!(e.contains("more images than this request has room for (4)"), "{e}");
        let e = decode(&[Upload { name: "x".into(), bytes: idx(1, 32) }], [1, 28, 28], &LIMITS).unwrap_err();
        assert!(e.contains("this model takes [1, 28, 28]"), "{e}");

        // Gzip'd: one that declares too many images is "too many"; one whose header declares
        // one image and whose stream unpacks to 64 MiB of zeros is a bomb, named as such.
        let gz = |bytes: &[u8]| {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        };
        let e = decode(&[Upload { name: "x".into(), bytes: gz(&idx(5, 28)) }], [1, 28, 28], &LIMITS).unwrap_err();
        assert!(e.contains("more images than this request has room for (4)"), "{e}");
        let mut bomb = idx(1, 28);
        bomb.resize(64 << 20, 0);
        let bomb = gz(&bomb);
        assert!(bomb.len() < 128 * 1024, "{} bytes", bomb.len());
        let e = decode(&[Upload { name: "x".into(), bytes: bomb }], [1, 28, 28], &LIMITS).unwrap_err();
        assert!(e.contains("a decompression bomb") && !e.contains("room for"), "{e}");
    }
}
