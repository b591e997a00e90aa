//! Per-channel global max of activation maps: the Vanilla MINT feature.
//!
//! Runs on the vendor's inference thread, so it reads each map once, in place, in the order
//! the bytes sit in memory: NCHW maps plane by plane, NHWC maps row by row with the channel
//! maxima held in registers. f16 and bf16 maps are reduced on their bits (kernels/half_bits.rs).
//! The same kernel tables copy maps for the CNN path: contiguous copies, widening, and the
//! channels-last transpose (kernels/transpose.rs).

mod convert;
mod dispatch;
mod kernels;
mod lm;
mod logits;
mod scalar;
mod table;
mod tokens;
mod tune;

use crate::config::Pooling;
use crate::tensor::{Arrangement, Elements, TensorView};
pub(crate) use convert::{copy_to_f32, rows_to_planes};
pub(crate) use lm::lm_features;
pub(crate) use logits::check_targets;
use scalar::as_uninit;
pub(crate) use scalar::{all_finite, element};
pub use table::Isa;
use table::Kernels;
pub(crate) use tokens::check_tokens;

/// The best instruction set this CPU has, whose kernels the reduction uses except where
/// another measured faster at start-up (see [`picks`]).
pub fn isa() -> Isa {
    dispatch::best().isa
}

/// The instruction set of each reduction's kernel, as `(reduction, ISA)`: `planes_*` for
/// NCHW maps and `rows_*` for NHWC, per element type; chosen by measurement at first use.
pub fn picks() -> [(&'static str, Isa); 6] {
    dispatch::picks().list()
}

/// What the start-up measurement found: per reduction, the time of the other vector ISA's
/// kernel over the best ISA's (below 0.97 it is picked); NaN where nothing was measured.
pub fn pick_ratios() -> [(&'static str, f64); 6] {
    dispatch::picks().ratios()
}

/// Writes the per-channel max of sample `n` of a map view into `out` (length C).
/// Returns `false` when the sample holds a NaN or an infinity.
pub fn channel_max(view: &TensorView<'_>, n: usize, out: &mut [f32]) -> bool {
    channel_max_with(dispatch::best(), view, n, out, true)
}

/// [`channel_max`] without looking for NaN and infinities (about 10% faster; a NaN is then
/// simply never the max). For vendors who guarantee finite activations
/// (`capture.check_finite: false`).
pub fn channel_max_unchecked(view: &TensorView<'_>, n: usize, out: &mut [f32]) {
    channel_max_with(dispatch::best(), view, n, out, false);
}

/// [`channel_max`] (or, without `check`, [`channel_max_unchecked`]) with the kernels of one
/// instruction set, for benchmarks and tests; `None` when this CPU lacks it.
pub fn channel_max_isa(isa: Isa, view: &TensorView<'_>, n: usize, out: &mut [f32], check: bool) -> Option<bool> {
    kernels::for_isa(isa).map(|k| channel_max_with(&k, view, n, out, check))
}

/// Writes sample `n`'s pooling of a token-sequence view over its valid tokens into `out`
/// (length C). Returns `false` when a valid token holds a NaN or an infinity. The view's
/// tokens must have passed the submit checks (one length in `1..=T` per sample, or a mask
/// with a token per sample).
pub fn pool(view: &TensorView<'_>, n: usize, pooling: Pooling, out: &mut [f32], check: bool) -> bool {
    tokens::pool_with(dispatch::best(), view, n, pooling, out, check)
}

/// [`pool`] with the kernels of one instruction set, for benchmarks and tests; `None` when
/// this CPU lacks it.
pub fn pool_isa(
    isa: Isa,
    view: &TensorView<'_>,
    n: usize,
    pooling: Pooling,
    out: &mut [f32],
    check: bool,
) -> Option<bool> {
    kernels::for_isa(isa).map(|k| tokens::pool_with(&k, view, n, pooling, out, check))
}

pub(crate) fn channel_max_with(k: &Kernels, view: &TensorView<'_>, n: usize, out: &mut [f32], check: bool) -> bool {
    let c = view.channels();
    let hw = view.spatial();
    assert_eq!(out.len(), c, "output length must equal the channel count");
    out.fill(f32::NEG_INFINITY);
    if c == 0 || hw == 0 {
        return true;
    }
    let base = view.sample_offset(n);
    let sample = base..base + c * hw;
    let finite_hint = match (view.arrangement(), view.elements()) {
        (Arrangement::Planar, Elements::F32(s)) => (k.planes_f32)(&s[sample], hw, out, check),
        (Arrangement::Planar, Elements::F16(s)) => (k.planes_f16)(&s[sample], hw, out, check),
        (Arrangement::Planar, Elements::BF16(s)) => (k.planes_bf16)(&s[sample], hw, out, check),
        (Arrangement::ChannelsLast, Elements::F32(s)) => (k.rows_f32)(&s[sample], out, check),
        (Arrangement::ChannelsLast, Elements::F16(s)) => (k.rows_f16)(&s[sample], out, check),
        (Arrangement::ChannelsLast, Elements::BF16(s)) => (k.rows_bf16)(&s[sample], out, check),
        (Arrangement::Strided, _) => return strided_channel_max(view, n, out) || !check,
    };
    // The kernels' check is a cheap sum; confirm exactly before calling a sample bad.
    !check || finite_hint || sample_is_finite(view, n)
}

/// Copies sample `n` of a `[N, C]` view into `out`, widened to f32.
/// Returns `false` when it holds a NaN or an infinity.
pub fn copy_vector(view: &TensorView<'_>, n: usize, out: &mut [f32]) -> bool {
    let c = view.channels();
    assert_eq!(out.len(), c, "output length must equal the vector length");
    let base = view.sample_offset(n);
    let stride = view.strides()[1];
    if stride == 1 {
        if copy_to_f32(view.elements(), base, as_uninit(out)) {
            return true;
        }
    } else {
        for (j, o) in out.iter_mut().enumerate() {
            *o = element(view.elements(), base + j * stride);
        }
    }
    all_finite(out)
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
    use half::{bf16, f16};

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
                        let k = kernels::for_isa(isa).unwrap();
                        let mut out = vec![0f32; c];
                        assert!(channel_max_with(&k, v, s, &mut out, true));
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

    /// A measured table mixes ISAs only among those this CPU has, and each of its reductions
    /// gives the reference maxima, for every element type.
    #[test]
    fn measured_kernels_come_from_available_isas_and_agree() {
        let (k, picks) = super::tune::measured();
        for (reduction, isa) in picks.list() {
            assert!(isa.is_available(), "{reduction} picked {isa:?}");
            assert!(isa == Isa::best() || isa != Isa::Baseline, "{reduction}: the baseline is never timed");
        }
        let (n, c, h, w) = (2, 9, 13, 7);
        let nchw = sample_map(n, c, h, w);
        let nhwc = nchw_to_nhwc(&nchw, n, c, h, w);
        let nchw16: Vec<f16> = nchw.iter().map(|&x| f16::from_f32(x)).collect();
        let nhwc16: Vec<f16> = nhwc.iter().map(|&x| f16::from_f32(x)).collect();
        let nchwb: Vec<bf16> = nchw.iter().map(|&x| bf16::from_f32(x)).collect();
        let nhwcb: Vec<bf16> = nhwc.iter().map(|&x| bf16::from_f32(x)).collect();
        let widened16: Vec<f32> = nchw16.iter().map(|x| x.to_f32()).collect();
        let widenedb: Vec<f32> = nchwb.iter().map(|x| x.to_f32()).collect();
        let cases = [
            (TensorView::map(&nchw, Layout::Nchw, [n, c, h, w]).unwrap(), &nchw),
            (TensorView::map(&nhwc, Layout::Nhwc, [n, h, w, c]).unwrap(), &nchw),
            (TensorView::map(&nchw16[..], Layout::Nchw, [n, c, h, w]).unwrap(), &widened16),
            (TensorView::map(&nhwc16[..], Layout::Nhwc, [n, h, w, c]).unwrap(), &widened16),
            (TensorView::map(&nchwb[..], Layout::Nchw, [n, c, h, w]).unwrap(), &widenedb),
            (TensorView::map(&nhwcb[..], Layout::Nhwc, [n, h, w, c]).unwrap(), &widenedb),
        ];
        for (v, values) in &cases {
            for s in 0..n {
                let mut out = vec![0f32; c];
                assert!(channel_max_with(&k, v, s, &mut out, true));
                assert_eq!(out, reference(values, s, c, h * w), "{:?} {:?}", v.arrangement(), v.dtype());
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
