//! Pooling a token sequence over each sample's valid tokens: the per-channel max (the Vanilla
//! MINT feature), mean, first or last token.
//!
//! A sequence view is `[N, C, T]` over any memory layout. `[N, T, C]` hidden states are rows of
//! C channels, read with the map kernels' channels-last reductions, run by run of valid
//! tokens; `[N, C, T]` sequences are planes of T tokens. Padded positions are never read, so
//! whatever they hold (zeros, stale values, NaN) cannot reach a feature. Nothing is allocated.

use std::ops::Range;

use half::{bf16, f16};

use super::scalar::{all_finite, as_uninit, element};
use super::table::{CopyFn, Kernels, PlanesFn, RowsFn, SumRowsFn, SumRunFn};
use crate::config::Pooling;
use crate::error::{Error, Result};
use crate::tensor::{Arrangement, Elements, TensorView, Tokens};

/// Checks a sequence view's token selection against its batch: one length per sample, each in
/// `1..=T`, or an `N × T` mask with at least one token per sample. Reads the lengths or mask
/// (never the sequence).
pub(crate) fn check_tokens(view: &TensorView<'_>) -> Result<()> {
    let (n, t) = (view.batch(), view.spatial());
    match view.tokens() {
        Tokens::All => {
            if t == 0 {
                return Err(Error::InvalidInput("sequences of 0 tokens have nothing to pool".into()));
            }
        }
        Tokens::Lengths(lengths) => {
            if lengths.len() != n {
                return Err(Error::InvalidInput(format!("{} lengths were given for {n} samples", lengths.len())));
            }
            if let Some((i, &len)) = lengths.iter().enumerate().find(|(_, &len)| len < 1 || len as u64 > t as u64) {
                return Err(Error::InvalidInput(format!(
                    "sample {i} has length {len}; each must be between 1 and the {t} positions given"
                )));
            }
        }
        Tokens::Mask(mask) => {
            if Some(mask.len()) != n.checked_mul(t) {
                return Err(Error::InvalidInput(format!(
                    "a mask of {} values was given for {n} samples of {t} positions",
                    mask.len()
                )));
            }
            if let Some(i) = (0..n).find(|&i| mask[i * t..(i + 1) * t].iter().all(|&m| m == 0)) {
                return Err(Error::InvalidInput(format!("sample {i} has no valid token in its mask")));
            }
        }
    }
    Ok(())
}

/// The runs of valid tokens of one sample, in order.
enum Runs<'a> {
    One(Option<Range<usize>>),
    Mask { mask: &'a [u8], at: usize },
}

impl Iterator for Runs<'_> {
    type Item = Range<usize>;
    fn next(&mut self) -> Option<Range<usize>> {
        match self {
            Runs::One(run) => run.take(),
            Runs::Mask { mask, at } => {
                let start = *at + mask[*at..].iter().position(|&m| m != 0)?;
                let end = start + mask[start..].iter().position(|&m| m == 0).unwrap_or(mask.len() - start);
                *at = end;
                Some(start..end)
            }
        }
    }
}

/// The valid token positions of sample `n`, in order.
pub(crate) fn valid_tokens<'a>(view: &TensorView<'a>, n: usize) -> impl Iterator<Item = usize> + 'a {
    runs(view, n).flatten()
}

fn runs<'a>(view: &TensorView<'a>, n: usize) -> Runs<'a> {
    let t = view.spatial();
    match view.tokens() {
        Tokens::All => Runs::One(Some(0..t)),
        Tokens::Lengths(lengths) => Runs::One(Some(0..lengths[n] as usize)),
        Tokens::Mask(mask) => Runs::Mask { mask: &mask[n * t..(n + 1) * t], at: 0 },
    }
}

/// The kernels of one element type.
struct Typed<E: 'static> {
    planes: PlanesFn<E>,
    rows: RowsFn<E>,
    sum_rows: SumRowsFn<E>,
    sum_run: SumRunFn<E>,
    copy: CopyFn<E>,
}

/// Writes sample `n`'s pooling of a sequence view into `out` (length C), over its valid tokens
/// (which [`check_tokens`] vouched for). Returns `false` when a valid token holds a NaN or an
/// infinity (with `check` off, max pooling does not look; the others always do, for free).
pub(crate) fn pool_with(
    k: &Kernels,
    view: &TensorView<'_>,
    n: usize,
    pooling: Pooling,
    out: &mut [f32],
    check: bool,
) -> bool {
    assert_eq!(out.len(), view.channels(), "output length must equal the channel count");
    let finite = match view.elements() {
        Elements::F32(s) => {
            let typed = Typed {
                planes: k.planes_f32,
                rows: k.rows_f32,
                sum_rows: k.sum_rows_f32,
                sum_run: k.sum_run_f32,
                copy: k.copy_f32,
            };
            pool_typed(&typed, s, view, n, pooling, out, check)
        }
        Elements::F16(s) => {
            let typed = Typed {
                planes: k.planes_f16,
                rows: k.rows_f16,
                sum_rows: k.sum_rows_f16,
                sum_run: k.sum_run_f16,
                copy: k.copy_f16,
            };
            pool_typed::<f16>(&typed, s, view, n, pooling, out, check)
        }
        Elements::BF16(s) => {
            let typed = Typed {
                planes: k.planes_bf16,
                rows: k.rows_bf16,
                sum_rows: k.sum_rows_bf16,
                sum_run: k.sum_run_bf16,
                copy: k.copy_bf16,
            };
            pool_typed::<bf16>(&typed, s, view, n, pooling, out, check)
        }
    };
    match pooling {
        // The max kernels' check is a cheap sum; confirm exactly before calling a sample bad.
        Pooling::Max => !check || finite || valid_tokens_finite(view, n),
        _ => all_finite(out),
    }
}

fn pool_typed<E: Copy>(
    k: &Typed<E>,
    s: &[E],
    view: &TensorView<'_>,
    n: usize,
    pooling: Pooling,
    out: &mut [f32],
    check: bool,
) -> bool {
    let (c, t) = (view.channels(), view.spatial());
    let base = view.sample_offset(n);
    let arrangement = view.arrangement();
    let mut finite = true;
    match pooling {
        Pooling::Max | Pooling::Mean => {
            let max = pooling == Pooling::Max;
            out.fill(if max { f32::NEG_INFINITY } else { 0.0 });
            let mut count = 0usize;
            for run in runs(view, n) {
                count += run.len();
                match arrangement {
                    // Rows of C channels: the run's tokens are one contiguous slice.
                    Arrangement::ChannelsLast => {
                        let rows = &s[base + run.start * c..base + run.end * c];
                        if max {
                            finite &= (k.rows)(rows, out, check);
                        } else {
                            (k.sum_rows)(rows, out);
                        }
                    }
                    // Planes of T tokens: all of them at once, or the run in each plane.
                    Arrangement::Planar if max && run.len() == t => {
                        finite &= (k.planes)(&s[base..base + c * t], t, out, check);
                    }
                    Arrangement::Planar => {
                        for (ch, o) in out.iter_mut().enumerate() {
                            let plane = &s[base + ch * t + run.start..base + ch * t + run.end];
                            if max {
                                finite &= (k.planes)(plane, run.len(), std::slice::from_mut(o), check);
                            } else {
                                *o += (k.sum_run)(plane);
                            }
                        }
                    }
                    Arrangement::Strided => strided(view, n, run, max, out),
                }
            }
            if !max {
                let inv = 1.0 / count as f32;
                out.iter_mut().for_each(|o| *o *= inv);
            }
        }
        Pooling::First | Pooling::Last => {
            let mut all = runs(view, n);
            let token =
                if pooling == Pooling::First { all.next().map(|r| r.start) } else { all.last().map(|r| r.end - 1) }
                    .expect("check_tokens vouched for a valid token");
            if arrangement == Arrangement::ChannelsLast {
                (k.copy)(&s[base + token * c..base + (token + 1) * c], as_uninit(out));
            } else {
                let [_, sc, st] = [view.strides()[0], view.strides()[1], view.strides()[2]];
                for (ch, o) in out.iter_mut().enumerate() {
                    *o = element(view.elements(), base + ch * sc + token * st);
                }
            }
        }
    }
    finite
}

/// Max or sum of one run of tokens of a sequence laid out any other way, element by element.
fn strided(view: &TensorView<'_>, n: usize, run: Range<usize>, max: bool, out: &mut [f32]) {
    let (sc, st) = (view.strides()[1], view.strides()[2]);
    let base = view.sample_offset(n);
    for (ch, o) in out.iter_mut().enumerate() {
        for tok in run.clone() {
            let x = element(view.elements(), base + ch * sc + tok * st);
            *o = if !max {
                *o + x
            } else if x > *o {
                x
            } else {
                *o
            };
        }
    }
}

fn valid_tokens_finite(view: &TensorView<'_>, n: usize) -> bool {
    let (sc, st) = (view.strides()[1], view.strides()[2]);
    let base = view.sample_offset(n);
    runs(view, n).all(|run| {
        (0..view.channels())
            .all(|ch| run.clone().all(|tok| element(view.elements(), base + ch * sc + tok * st).is_finite()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reduce::Isa;
    use crate::tensor::SeqLayout;

    /// `[N, T, C]` values, with NaN at every position `valid` leaves out (padding that must
    /// never be read).
    fn hidden(n: usize, t: usize, c: usize, valid: &dyn Fn(usize, usize) -> bool) -> Vec<f32> {
        (0..n * t * c)
            .map(|i| {
                let (s, tok) = (i / (t * c), i / c % t);
                if valid(s, tok) {
                    ((i * 7919 % 1009) as f32 - 500.0) / 37.0
                } else {
                    f32::NAN
                }
            })
            .collect()
    }

    fn to_nct(src: &[f32], n: usize, t: usize, c: usize) -> Vec<f32> {
        let mut dst = vec![0f32; src.len()];
        for s in 0..n {
            for tok in 0..t {
                for ch in 0..c {
                    dst[(s * c + ch) * t + tok] = src[(s * t + tok) * c + ch];
                }
            }
        }
        dst
    }

    /// What each pooling gives, computed plainly from the `[N, T, C]` values.
    fn reference(src: &[f32], t: usize, c: usize, s: usize, valid: &[usize], pooling: Pooling) -> Vec<f32> {
        let at = |tok: usize, ch: usize| src[(s * t + tok) * c + ch];
        (0..c)
            .map(|ch| match pooling {
                Pooling::Max => valid.iter().map(|&tok| at(tok, ch)).fold(f32::NEG_INFINITY, f32::max),
                Pooling::Mean => valid.iter().map(|&tok| at(tok, ch) as f64).sum::<f64>() as f32 / valid.len() as f32,
                Pooling::First => at(valid[0], ch),
                Pooling::Last => at(*valid.last().unwrap(), ch),
            })
            .collect()
    }

    const POOLINGS: [Pooling; 4] = [Pooling::Max, Pooling::Mean, Pooling::First, Pooling::Last];

    fn close(a: &[f32], b: &[f32], pooling: Pooling) -> bool {
        // Sums in another order differ in the last bits; every other pooling is exact.
        let tol = if pooling == Pooling::Mean { 1e-5 } else { 0.0 };
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
    }

    #[test]
    fn ragged_lengths_and_masks_pool_only_valid_tokens_in_every_layout_and_isa() {
        // Channel counts below, at and above the vector widths; T from 1 to past a block.
        for &(n, t, c) in &[(3, 5, 3), (4, 17, 64), (2, 40, 70), (3, 1, 16), (2, 33, 130)] {
            let lengths: Vec<i64> = (0..n).map(|s| (t - s * t / n).max(1) as i64).collect();
            // Left padding, with a hole: the mask any padding side produces.
            let mask: Vec<u8> =
                (0..n * t).map(|i| ((i % t) >= (i / t) % t && (i % t) % 5 != 3 || i % t == t - 1) as u8).collect();
            type Valid<'v> = Box<dyn Fn(usize, usize) -> bool + 'v>;
            let cases: [(Tokens<'_>, Valid<'_>); 3] = [
                (Tokens::All, Box::new(|_, _| true)),
                (Tokens::Lengths(&lengths), Box::new(|s, tok| tok < lengths[s] as usize)),
                (Tokens::Mask(&mask), Box::new(|s, tok| mask[s * t + tok] != 0)),
            ];
            for (tokens, valid) in &cases {
                let ntc = hidden(n, t, c, valid.as_ref());
                let nct = to_nct(&ntc, n, t, c);
                // Rows of C channels and one value of padding (never read): a strided view.
                let padded: Vec<f32> = ntc.chunks(c).flat_map(|row| row.iter().copied().chain([f32::NAN])).collect();
                let views = [
                    TensorView::sequence(&ntc, SeqLayout::Ntc, [n, t, c]).unwrap(),
                    TensorView::sequence(&nct, SeqLayout::Nct, [n, c, t]).unwrap(),
                    TensorView::strided_sequence(&padded[..], [n, c, t], [t * (c + 1), 1, c + 1]).unwrap(),
                ]
                .map(|v| with_tokens(v, *tokens));
                if t > 1 {
                    let kinds = [Arrangement::ChannelsLast, Arrangement::Planar, Arrangement::Strided];
                    assert_eq!(views.map(|v| v.arrangement()), kinds);
                }
                for v in &views {
                    check_tokens(v).unwrap();
                }
                for s in 0..n {
                    let toks: Vec<usize> = (0..t).filter(|&tok| valid(s, tok)).collect();
                    for pooling in POOLINGS {
                        let expected = reference(&ntc, t, c, s, &toks, pooling);
                        for v in &views {
                            for isa in Isa::available() {
                                let mut out = vec![0f32; c];
                                let finite = pool_isa_for_test(isa, v, s, pooling, &mut out);
                                assert!(finite, "{isa:?} {pooling:?} {:?} {tokens:?}", v.arrangement());
                                assert!(
                                    close(&out, &expected, pooling),
                                    "{isa:?} {pooling:?} {:?} n{s}\n{out:?}\n{expected:?}",
                                    v.arrangement()
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    fn with_tokens<'a>(v: TensorView<'a>, tokens: Tokens<'a>) -> TensorView<'a> {
        match tokens {
            Tokens::All => v,
            Tokens::Lengths(l) => v.with_lengths(l),
            Tokens::Mask(m) => v.with_mask(m),
        }
    }

    fn pool_isa_for_test(isa: Isa, v: &TensorView<'_>, s: usize, pooling: Pooling, out: &mut [f32]) -> bool {
        pool_with(&crate::reduce::kernels::for_isa(isa).unwrap(), v, s, pooling, out, true)
    }

    #[test]
    fn half_precision_sequences_pool_their_rounded_values() {
        let (n, t, c) = (2, 9, 40);
        let lengths = [9i64, 4];
        let ntc = hidden(n, t, c, &|s, tok| tok < lengths[s] as usize);
        let h: Vec<f16> = ntc.iter().map(|&x| f16::from_f32(x)).collect();
        let b: Vec<bf16> = ntc.iter().map(|&x| bf16::from_f32(x)).collect();
        let hw: Vec<f32> = h.iter().map(|x| x.to_f32()).collect();
        let bw: Vec<f32> = b.iter().map(|x| x.to_f32()).collect();
        let views = [
            (TensorView::sequence(&h[..], SeqLayout::Ntc, [n, t, c]).unwrap().with_lengths(&lengths), &hw),
            (TensorView::sequence(&b[..], SeqLayout::Ntc, [n, t, c]).unwrap().with_lengths(&lengths), &bw),
        ];
        for (v, widened) in &views {
            for (s, &len) in lengths.iter().enumerate() {
                let toks: Vec<usize> = (0..len as usize).collect();
                for pooling in POOLINGS {
                    for isa in Isa::available() {
                        let mut out = vec![0f32; c];
                        assert!(pool_isa_for_test(isa, v, s, pooling, &mut out));
                        assert!(
                            close(&out, &reference(widened, t, c, s, &toks, pooling), pooling),
                            "{isa:?} {pooling:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_non_finite_valid_token_is_found_and_padding_is_not_blamed() {
        let (n, t, c) = (2, 6, 20);
        let mut ntc: Vec<f32> = (0..n * t * c).map(|i| i as f32 / 10.0).collect();
        ntc[(t + 5) * c + 3] = f32::INFINITY; // sample 1, token 5: padding for length 4
        let lengths = [6i64, 4];
        let v = TensorView::sequence(&ntc, SeqLayout::Ntc, [n, t, c]).unwrap().with_lengths(&lengths);
        for pooling in POOLINGS {
            let mut out = vec![0f32; c];
            assert!(pool_with(crate::reduce::dispatch::best(), &v, 1, pooling, &mut out, true), "{pooling:?}");
        }
        ntc[(t + 2) * c + 3] = f32::NAN; // sample 1, token 2: valid
        let v = TensorView::sequence(&ntc, SeqLayout::Ntc, [n, t, c]).unwrap().with_lengths(&lengths);
        for pooling in [Pooling::Max, Pooling::Mean] {
            let mut out = vec![0f32; c];
            assert!(!pool_with(crate::reduce::dispatch::best(), &v, 1, pooling, &mut out, true), "{pooling:?}");
            assert!(pool_with(crate::reduce::dispatch::best(), &v, 0, pooling, &mut out, true), "{pooling:?}");
        }
    }

    #[test]
    fn bad_lengths_and_masks_are_refused_before_any_read() {
        let data = vec![0f32; 2 * 4 * 3];
        let v = TensorView::sequence(&data, SeqLayout::Ntc, [2, 4, 3]).unwrap();
        for (lengths, needle) in [
            (&[4i64, 0][..], "sample 1 has length 0"),
            (&[5, 1], "sample 0 has length 5"),
            (&[-1, 2], "sample 0 has length -1"),
            (&[1], "1 lengths were given for 2 samples"),
        ] {
            let e = check_tokens(&v.with_lengths(lengths)).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let e = check_tokens(&v.with_mask(&[1, 0, 0, 0, 0, 0, 0, 0])).unwrap_err().to_string();
        assert!(e.contains("sample 1 has no valid token"), "{e}");
        let e = check_tokens(&v.with_mask(&[1; 7])).unwrap_err().to_string();
        assert!(e.contains("a mask of 7 values"), "{e}");
        let empty = TensorView::sequence(&data[..0], SeqLayout::Ntc, [2, 0, 3]).unwrap();
        assert!(check_tokens(&empty).is_err());
    }
}
