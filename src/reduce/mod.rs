//! Per-channel global max of activation maps: the Vanilla MINT feature.
//!
//! Runs on the vendor's inference thread, so it reads each map once, in place, in the order
//! the bytes sit in memory: NCHW maps plane by plane, NHWC maps row by row with the channel
//! maxima held in registers. f16 and bf16 maps are widened to f32 in small chunks that stay
//! in L1, never as a whole copy.

mod simd;

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::tensor::{Arrangement, Elements, TensorView};
pub use simd::Isa;
pub(crate) use simd::Kernels;

/// Elements widened to f32 per chunk (16 KiB of scratch on the stack).
const CHUNK: usize = 4096;

/// Instruction set the reduction kernels use on this CPU.
pub fn isa() -> Isa {
    Kernels::best().isa
}

/// Writes the per-channel max of sample `n` of a map view into `out` (length C).
/// Returns `false` when the sample holds a NaN or an infinity.
pub fn channel_max(view: &TensorView<'_>, n: usize, out: &mut [f32]) -> bool {
    channel_max_with(Kernels::best(), view, n, out)
}

pub(crate) fn channel_max_with(k: &Kernels, view: &TensorView<'_>, n: usize, out: &mut [f32]) -> bool {
    let c = view.channels();
    let hw = view.spatial();
    assert_eq!(out.len(), c, "output length must equal the channel count");
    out.fill(f32::NEG_INFINITY);
    if c == 0 || hw == 0 {
        return true;
    }
    let base = view.sample_offset(n);
    let len = c * hw;
    let finite_hint = match (view.arrangement(), view.elements()) {
        (Arrangement::Planar, Elements::F32(s)) => (k.planes)(&s[base..base + len], hw, out),
        (Arrangement::ChannelsLast, Elements::F32(s)) => (k.rows)(&s[base..base + len], out),
        (Arrangement::Planar, Elements::F16(s)) => planes_widened(k, &s[base..base + len], hw, out),
        (Arrangement::Planar, Elements::BF16(s)) => planes_widened(k, &s[base..base + len], hw, out),
        (Arrangement::ChannelsLast, Elements::F16(s)) => rows_widened(k, &s[base..base + len], out),
        (Arrangement::ChannelsLast, Elements::BF16(s)) => rows_widened(k, &s[base..base + len], out),
        (Arrangement::Strided, _) => return strided_channel_max(view, n, out),
    };
    // The kernels' check is a cheap sum; confirm exactly before calling a sample bad.
    finite_hint || sample_is_finite(view, n)
}

/// Copies sample `n` of a `[N, C]` view into `out`, widened to f32.
/// Returns `false` when it holds a NaN or an infinity.
pub fn copy_vector(view: &TensorView<'_>, n: usize, out: &mut [f32]) -> bool {
    let c = view.channels();
    assert_eq!(out.len(), c, "output length must equal the vector length");
    let base = view.sample_offset(n);
    let stride = view.strides()[1];
    if stride == 1 {
        match view.elements() {
            Elements::F32(s) => out.copy_from_slice(&s[base..base + c]),
            Elements::F16(s) => s[base..base + c].convert_to_f32_slice(out),
            Elements::BF16(s) => s[base..base + c].convert_to_f32_slice(out),
        }
    } else {
        for (j, o) in out.iter_mut().enumerate() {
            *o = element(view.elements(), base + j * stride);
        }
    }
    out.iter().all(|x| x.is_finite())
}

trait Widen: Copy {
    fn widen(src: &[Self], dst: &mut [f32]);
}
impl Widen for f16 {
    fn widen(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst)
    }
}
impl Widen for bf16 {
    fn widen(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst)
    }
}

fn planes_widened<T: Widen>(k: &Kernels, src: &[T], hw: usize, out: &mut [f32]) -> bool {
    let mut buf = [0f32; CHUNK];
    let mut finite = true;
    if hw <= CHUNK {
        let per_chunk = CHUNK / hw;
        for (planes, acc) in src.chunks(per_chunk * hw).zip(out.chunks_mut(per_chunk)) {
            let dst = &mut buf[..planes.len()];
            T::widen(planes, dst);
            finite &= (k.planes)(dst, hw, acc);
        }
    } else {
        for (plane, acc) in src.chunks_exact(hw).zip(out.iter_mut()) {
            for piece in plane.chunks(CHUNK) {
                let dst = &mut buf[..piece.len()];
                T::widen(piece, dst);
                finite &= (k.planes)(dst, piece.len(), std::slice::from_mut(acc));
            }
        }
    }
    finite
}

fn rows_widened<T: Widen>(k: &Kernels, src: &[T], out: &mut [f32]) -> bool {
    let c = out.len();
    let mut buf = [0f32; CHUNK];
    let mut finite = true;
    if c <= CHUNK {
        let per_chunk = CHUNK / c;
        for rows in src.chunks(per_chunk * c) {
            let dst = &mut buf[..rows.len()];
            T::widen(rows, dst);
            finite &= (k.rows)(dst, out);
        }
    } else {
        for row in src.chunks_exact(c) {
            for (piece, acc) in row.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
                let dst = &mut buf[..piece.len()];
                T::widen(piece, dst);
                finite &= (k.rows)(dst, acc);
            }
        }
    }
    finite
}

#[inline]
fn element(e: Elements<'_>, i: usize) -> f32 {
    match e {
        Elements::F32(s) => s[i],
        Elements::F16(s) => s[i].to_f32(),
        Elements::BF16(s) => s[i].to_f32(),
    }
}

/// Visits every element of sample `n` of a map with its channel index.
fn for_each_element(view: &TensorView<'_>, n: usize, mut f: impl FnMut(usize, f32)) {
    let shape = view.shape();
    let strides = view.strides();
    let (c, h, w) = (shape[1], shape[2], shape[3]);
    let base = view.sample_offset(n);
    let e = view.elements();
    for ch in 0..c {
        for y in 0..h {
            let row = base + ch * strides[1] + y * strides[2];
            for x in 0..w {
                f(ch, element(e, row + x * strides[3]));
            }
        }
    }
}

fn strided_channel_max(view: &TensorView<'_>, n: usize, out: &mut [f32]) -> bool {
    let mut finite = true;
    for_each_element(view, n, |ch, x| {
        finite &= x.is_finite();
        if x > out[ch] {
            out[ch] = x;
        }
    });
    finite
}

fn sample_is_finite(view: &TensorView<'_>, n: usize) -> bool {
    let mut finite = true;
    for_each_element(view, n, |_, x| finite &= x.is_finite());
    finite
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{Form, Layout};

    fn sample_map(n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
        (0..n * c * h * w).map(|i| ((i * 7919 % 1009) as f32 - 500.0) / 37.0).collect()
    }

    fn nchw_to_nhwc(src: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
        let mut dst = vec![0f32; src.len()];
        for s in 0..n {
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        dst[((s * h + y) * w + x) * c + ch] = src[((s * c + ch) * h + y) * w + x];
                    }
                }
            }
        }
        dst
    }

    fn reference(src: &[f32], n: usize, c: usize, hw: usize) -> Vec<f32> {
        src[n * c * hw..(n + 1) * c * hw].chunks(hw).map(|p| p.iter().cloned().fold(f32::MIN, f32::max)).collect()
    }

    #[test]
    fn every_layout_and_dtype_gives_identical_features() {
        for &(n, c, h, w) in &[(2, 3, 4, 5), (3, 64, 7, 7), (1, 70, 3, 11), (2, 5, 70, 70)] {
            let nchw = sample_map(n, c, h, w);
            let nhwc = nchw_to_nhwc(&nchw, n, c, h, w);
            let views = [
                TensorView::map(&nchw, Layout::Nchw, [n, c, h, w]).unwrap(),
                TensorView::map(&nhwc, Layout::Nhwc, [n, h, w, c]).unwrap(),
                // The NCHW buffer walked through explicit strides with W and H swapped:
                // a non-contiguous view of the transposed map.
                TensorView::strided_map(&nchw, [n, c, w, h], [c * h * w, h * w, 1, w]).unwrap(),
            ];
            for s in 0..n {
                let expected = reference(&nchw, s, c, h * w);
                for v in &views {
                    for isa in Isa::available() {
                        let k = Kernels::for_isa(isa).unwrap();
                        let mut out = vec![0f32; c];
                        assert!(channel_max_with(&k, v, s, &mut out));
                        assert_eq!(out, expected, "{isa:?} {:?}", v.arrangement());
                    }
                }
            }
            // Half precision: the max of the rounded values, exactly.
            let nchw16: Vec<f16> = nchw.iter().map(|&x| f16::from_f32(x)).collect();
            let nhwc16: Vec<bf16> = nhwc.iter().map(|&x| bf16::from_f32(x)).collect();
            let v16 = TensorView::map(&nchw16[..], Layout::Nchw, [n, c, h, w]).unwrap();
            let vb16 = TensorView::map(&nhwc16[..], Layout::Nhwc, [n, h, w, c]).unwrap();
            for s in 0..n {
                let mut out = vec![0f32; c];
                assert!(channel_max(&v16, s, &mut out));
                let widened: Vec<f32> = nchw16.iter().map(|x| x.to_f32()).collect();
                assert_eq!(out, reference(&widened, s, c, h * w));
                assert!(channel_max(&vb16, s, &mut out));
                let widened: Vec<f32> = nchw.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
                assert_eq!(out, reference(&widened, s, c, h * w));
            }
        }
    }

    #[test]
    fn non_finite_samples_are_found_and_neighbours_are_not_blamed() {
        let (n, c, h, w) = (3, 8, 5, 5);
        let mut map = sample_map(n, c, h, w);
        map[c * h * w + 17] = f32::NAN; // sample 1 only
        let v = TensorView::map(&map, Layout::Nchw, [n, c, h, w]).unwrap();
        let mut out = vec![0f32; c];
        assert!(channel_max(&v, 0, &mut out));
        assert!(!channel_max(&v, 1, &mut out));
        assert!(channel_max(&v, 2, &mut out));
    }

    #[test]
    fn huge_finite_values_are_not_called_non_finite() {
        // The kernels' sum overflows here; the exact re-scan must clear the sample.
        let map = vec![3.0e38f32; 4 * 64];
        let v = TensorView::map(&map, Layout::Nchw, [1, 4, 8, 8]).unwrap();
        let mut out = vec![0f32; 4];
        assert!(channel_max(&v, 0, &mut out));
        assert_eq!(out, vec![3.0e38; 4]);
    }

    #[test]
    fn vectors_are_copied_and_checked() {
        let data: Vec<bf16> = [1.0f32, -2.0, 3.5, 4.0, 5.0, 6.0].iter().map(|&x| bf16::from_f32(x)).collect();
        let v = TensorView::vectors(&data[..], Form::Vector, 2, 3).unwrap();
        let mut out = vec![0f32; 3];
        assert!(copy_vector(&v, 1, &mut out));
        assert_eq!(out, vec![4.0, 5.0, 6.0]);
        let bad = [1.0f32, f32::INFINITY];
        let v = TensorView::vectors(&bad[..], Form::ChannelMax, 1, 2).unwrap();
        let mut out = vec![0f32; 2];
        assert!(!copy_vector(&v, 0, &mut out));
    }
}
