//! Turning one submit call's tensors into compact per-sample records, on the vendor's thread.
//!
//! Checks come first and read no data (ranks, shapes, channel counts); then only the samples
//! chosen by sampling are read, once: each map is reduced in place to its per-channel max
//! (Vanilla) or copied as NCHW f32 (CNN), each token sequence pooled over its valid tokens.
//! Samples holding NaN or infinities are left out of the records and reported back, so the
//! rest of the batch is not lost.

use crate::config::{LmFeature, Pooling, TapConfig, TapKind, MAX_MAP_ELEMENTS};
use crate::error::{Error, Result};
use crate::reduce::{self, all_finite, element};
use crate::tensor::{Arrangement, Form, TensorView, Tokens};

/// How a record is built from a sample's taps.
#[derive(Debug, Clone)]
pub(crate) enum Assembly {
    /// Vanilla head: per-channel maxima (maps) or vectors (outcomes) of some taps, concatenated.
    /// `check_finite`: whether full maps are scanned for NaN and infinities.
    Features { parts: Vec<Part>, width: usize, check_finite: bool },
    /// CNN head: one tap's full map, as `[C, H, W]` f32.
    Map { tap: usize, chw: [usize; 3] },
}

#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub tap: usize,
    pub offset: usize,
    /// Values the tap adds to the row.
    pub channels: usize,
    /// How a token sequence is pooled (maps are always maxed).
    pub pooling: Pooling,
    /// For token log-probabilities: the features computed from them (empty otherwise).
    pub lm: Vec<LmFeature>,
}

impl Assembly {
    pub(crate) fn features(taps: &[TapConfig], used: &[usize], check_finite: bool) -> Assembly {
        let mut parts = Vec::with_capacity(used.len());
        let mut offset = 0;
        for &tap in used {
            let channels = taps[tap].feature_width();
            parts.push(Part { tap, offset, channels, pooling: taps[tap].pooling(), lm: taps[tap].lm_features() });
            offset += channels;
        }
        Assembly::Features { parts, width: offset, check_finite }
    }

    /// The full map of tap `tap`, which must declare its spatial size.
    pub(crate) fn full_map(taps: &[TapConfig], tap: usize) -> Result<Assembly> {
        let t = &taps[tap];
        let [h, w] = t.spatial.ok_or_else(|| {
            Error::config("head.tap", format!("tap '{}' feeds a CNN head, so it needs \"spatial\": [H, W]", t.name))
        })?;
        Ok(Assembly::Map { tap, chw: [t.channels, h, w] })
    }

    /// f32 values per record.
    pub(crate) fn width(&self) -> usize {
        match self {
            Assembly::Features { width, .. } => *width,
            Assembly::Map { chw, .. } => chw.iter().product(),
        }
    }
}

/// Builds MINT records from tapped tensors with exactly the code the auditor runs on submit:
/// the same checks, the same reduction kernels, the same feature order.
#[derive(Debug, Clone)]
pub struct FeatureExtractor {
    taps: Vec<TapConfig>,
    assembly: Assembly,
}

impl FeatureExtractor {
    /// Vanilla features: the per-channel maxima (or vectors) of taps `used`, concatenated.
    pub fn vanilla(taps: Vec<TapConfig>, used: &[usize]) -> FeatureExtractor {
        let assembly = Assembly::features(&taps, used, true);
        FeatureExtractor { taps, assembly }
    }

    /// CNN input: the full map of tap `tap` as `[C, H, W]` f32.
    pub fn full_map(taps: Vec<TapConfig>, tap: usize, chw: [usize; 3]) -> FeatureExtractor {
        FeatureExtractor { taps, assembly: Assembly::Map { tap, chw } }
    }

    /// f32 values per record.
    pub fn width(&self) -> usize {
        self.assembly.width()
    }

    /// Appends one record per sample of `views` to `records`. Samples holding NaN or
    /// infinities get no record; their indices in the batch are returned.
    pub fn extract(&self, views: &[TensorView<'_>], records: &mut Vec<f32>) -> Result<Vec<usize>> {
        let n = views.first().map_or(0, |v| v.batch());
        check_views(&self.taps, views, n, &self.assembly)?;
        let ids: Vec<u64> = (0..n as u64).collect();
        let chosen: Vec<usize> = (0..n).collect();
        let mut kept = Vec::with_capacity(n);
        assemble(&self.assembly, views, &ids, &chosen, records, &mut kept);
        let mut kept = kept.into_iter().peekable();
        Ok((0..n)
            .filter(|&i| {
                if kept.peek() == Some(&(i as u64)) {
                    kept.next();
                    false
                } else {
                    true
                }
            })
            .collect())
    }
}

/// Samples left out of the records because they held NaN or infinities.
#[derive(Debug, Clone)]
pub(crate) struct Rejected {
    pub count: usize,
    pub first_id: u64,
    pub tap: usize,
}

/// Checks the shape of every tensor of a submit call against the configured taps.
pub(crate) fn check_views(
    taps: &[TapConfig],
    views: &[TensorView<'_>],
    samples: usize,
    assembly: &Assembly,
) -> Result<()> {
    if views.len() != taps.len() {
        return Err(Error::InvalidInput(format!(
            "{} tensors were given, but {} taps are configured ({}), in that order",
            views.len(),
            taps.len(),
            taps.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    for (i, (tap, view)) in taps.iter().zip(views).enumerate() {
        let bad = |what: String| Err(Error::InvalidInput(format!("tap '{}' (index {i}): {what}", tap.name)));
        if view.batch() != samples {
            return bad(format!("batch of {} samples, but {samples} sample ids were given", view.batch()));
        }
        match (tap.kind, view.form()) {
            (TapKind::ActivationMap, Form::Vector) => {
                return bad(
                    "an activation map needs a [N, C, H, W] tensor, or a [N, C] tensor of form channel-max".into()
                )
            }
            (TapKind::ActivationMap, Form::Sequence) => {
                return bad("an activation map needs a [N, C, H, W] tensor, not a token sequence".into())
            }
            (TapKind::Outcome, Form::Map | Form::Sequence | Form::ChannelMax) => {
                return bad(format!("an outcome is a [N, {}] vector tensor", tap.channels))
            }
            (TapKind::TokenSequence, Form::Map | Form::Vector) => {
                return bad(format!(
                "a token sequence needs a [N, T, C] or [N, C, T] tensor, or its {} pooling [N, C] of form channel-max",
                tap.pooling().label()
            ))
            }
            (TapKind::TokenLogits, Form::Map | Form::Vector | Form::ChannelMax) => {
                return bad("logits need a [N, T, V] or [N, V, T] tensor with the token ids the model read".into())
            }
            _ => {}
        }
        if tap.kind != TapKind::TokenLogits && view.targets().is_some() {
            return bad("token ids apply to token_logits taps only".into());
        }
        if view.form() != Form::Sequence && view.tokens() != Tokens::All {
            return bad("lengths or a mask apply to token sequences only".into());
        }
        if view.channels() != tap.channels {
            return bad(format!(
                "expected {} channels, got {} (shape {:?})",
                tap.channels,
                view.channels(),
                view.shape()
            ));
        }
        if view.form() == Form::Map {
            let (h, w) = (view.shape()[2], view.shape()[3]);
            if let Some([eh, ew]) = tap.spatial {
                if (h, w) != (eh, ew) {
                    return bad(format!("expected maps of {eh}×{ew}, got {h}×{w}"));
                }
            }
            // An empty map has no maximum; a huge one would hold the vendor's thread (whatever
            // its strides: zero strides let a tiny buffer describe a huge map).
            let hw = h.saturating_mul(w);
            if hw == 0 {
                return bad(format!("empty maps ({h}×{w}) have no per-channel maximum"));
            }
            if hw.saturating_mul(view.channels()) > MAX_MAP_ELEMENTS {
                return bad(format!(
                    "maps of {}×{h}×{w} exceed {MAX_MAP_ELEMENTS} elements per sample; declare the tap's \"spatial\" size",
                    view.channels()
                ));
            }
        }
        if view.form() == Form::Sequence {
            let t = view.spatial();
            if let Some(most) = tap.max_tokens {
                if t > most {
                    return bad(format!("sequences of {t} positions exceed the configured max_tokens {most}"));
                }
            }
            if t.saturating_mul(view.channels()) > MAX_MAP_ELEMENTS {
                return bad(format!(
                    "sequences of {t}×{} exceed {MAX_MAP_ELEMENTS} elements per sample",
                    view.channels()
                ));
            }
            reduce::check_tokens(view).or_else(|e| bad(e.to_string()))?;
            if tap.kind == TapKind::TokenLogits {
                reduce::check_targets(view).or_else(|e| bad(e.to_string()))?;
            }
        }
        if let Assembly::Map { tap: cnn_tap, .. } = assembly {
            if *cnn_tap == i && view.form() != Form::Map {
                return bad("the CNN head needs the full map [N, C, H, W], not its channel max".into());
            }
        }
    }
    Ok(())
}

/// Appends the records of samples `chosen` (indices into the call's batch) to `records`, and
/// their ids to `ids`, leaving out samples with non-finite values.
pub(crate) fn assemble(
    assembly: &Assembly,
    views: &[TensorView<'_>],
    call_ids: &[u64],
    chosen: &[usize],
    records: &mut Vec<f32>,
    ids: &mut Vec<u64>,
) -> Option<Rejected> {
    let width = assembly.width();
    let mut rejected: Option<Rejected> = None;
    records.reserve(chosen.len() * width);
    for &s in chosen {
        let start = records.len();
        let bad_tap = match assembly {
            Assembly::Features { parts, check_finite, .. } => {
                // Feature rows are small: zero them, then let each tap fill its columns.
                records.resize(start + width, 0.0);
                let out = &mut records[start..];
                parts.iter().find_map(|p| {
                    let v = &views[p.tap];
                    let dst = &mut out[p.offset..p.offset + p.channels];
                    let finite = match v.form() {
                        Form::Map if *check_finite => reduce::channel_max(v, s, dst),
                        Form::Map => {
                            reduce::channel_max_unchecked(v, s, dst);
                            true
                        }
                        Form::Sequence if !p.lm.is_empty() => reduce::lm_features(v, s, &p.lm, dst),
                        Form::Sequence => reduce::pool(v, s, p.pooling, dst, *check_finite),
                        Form::ChannelMax | Form::Vector => reduce::copy_vector(v, s, dst),
                    };
                    (!finite).then_some(p.tap)
                })
            }
            Assembly::Map { tap, .. } => (!append_map_chw(&views[*tap], s, records)).then_some(*tap),
        };
        match bad_tap {
            None => ids.push(call_ids[s]),
            Some(tap) => {
                records.truncate(start);
                let r = rejected.get_or_insert(Rejected { count: 0, first_id: call_ids[s], tap });
                r.count += 1;
            }
        }
    }
    rejected
}

/// Appends sample `n`'s map as `[C, H, W]` f32 (the layout CNN heads take), reading the
/// vendor's buffer once with the reduction's SIMD kernels (widening halves and transposing
/// channels-last maps on the way) and checking finiteness.
/// Returns `false` when it holds NaN or infinities.
pub(crate) fn append_map_chw(view: &TensorView<'_>, n: usize, out: &mut Vec<f32>) -> bool {
    let (c, hw) = (view.channels(), view.spatial());
    let len = c * hw;
    let base = view.sample_offset(n);
    let start = out.len();
    let finite_hint = match view.arrangement() {
        Arrangement::Planar | Arrangement::ChannelsLast => {
            out.reserve(len);
            let dst = &mut out.spare_capacity_mut()[..len];
            let hint = if view.arrangement() == Arrangement::Planar {
                reduce::copy_to_f32(view.elements(), base, dst)
            } else {
                reduce::rows_to_planes(view.elements(), base, c, hw, dst)
            };
            // SAFETY: both kernels write every one of the `len` elements past the old length.
            unsafe { out.set_len(start + len) };
            hint
        }
        Arrangement::Strided => {
            out.resize(start + len, 0.0);
            let dst = &mut out[start..];
            let (h, w) = (view.shape()[2], view.shape()[3]);
            let st = view.strides();
            let e = view.elements();
            for ch in 0..c {
                for y in 0..h {
                    let src = base + ch * st[1] + y * st[2];
                    for (x, d) in dst[(ch * h + y) * w..(ch * h + y + 1) * w].iter_mut().enumerate() {
                        *d = element(e, src + x * st[3]);
                    }
                }
            }
            false
        }
    };
    // The hint is a sum; confirm exactly before calling a sample bad.
    finite_hint || all_finite(&out[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Layout;

    fn taps() -> Vec<TapConfig> {
        vec![TapConfig::new("a", 3, TapKind::ActivationMap), TapConfig::new("out", 2, TapKind::Outcome)]
    }

    #[test]
    fn shape_errors_name_the_tap() {
        let taps = taps();
        let asm = Assembly::features(&taps, &[0, 1], true);
        let map = vec![0f32; 2 * 3 * 4];
        let out = vec![0f32; 4];
        let m = TensorView::map(&map, Layout::Nchw, [2, 3, 2, 2]).unwrap();
        let o = TensorView::vectors(&out, Form::Vector, 2, 2).unwrap();
        assert!(check_views(&taps, &[m, o], 2, &asm).is_ok());
        let e = check_views(&taps, &[m], 2, &asm).unwrap_err().to_string();
        assert!(e.contains("1 tensors were given, but 2 taps"), "{e}");
        let e = check_views(&taps, &[m, o], 3, &asm).unwrap_err().to_string();
        assert!(e.contains("tap 'a'") && e.contains("3 sample ids"), "{e}");
        let e = check_views(&taps, &[o, o], 2, &asm).unwrap_err().to_string();
        assert!(e.contains("tap 'a'") && e.contains("[N, C, H, W]"), "{e}");
        let wrong = TensorView::map(&map, Layout::Nchw, [2, 2, 3, 2]).unwrap();
        let e = check_views(&taps, &[wrong, o], 2, &asm).unwrap_err().to_string();
        assert!(e.contains("expected 3 channels, got 2"), "{e}");
        let e = check_views(&taps, &[m, m], 2, &asm).unwrap_err().to_string();
        assert!(e.contains("tap 'out'"), "{e}");
    }

    #[test]
    fn records_are_compact_and_skip_non_finite_samples() {
        let taps = taps();
        let asm = Assembly::features(&taps, &[1, 0], true);
        let mut map: Vec<f32> = (0..3 * 3 * 4).map(|i| i as f32).collect();
        map[12 + 5] = f32::NAN; // sample 1
        let out: Vec<f32> = (0..6).map(|i| -(i as f32)).collect();
        let views = [
            TensorView::map(&map, Layout::Nchw, [3, 3, 2, 2]).unwrap(),
            TensorView::vectors(&out, Form::Vector, 3, 2).unwrap(),
        ];
        let (mut rec, mut ids) = (Vec::new(), Vec::new());
        let rej = assemble(&asm, &views, &[10, 11, 12], &[0, 1, 2], &mut rec, &mut ids).unwrap();
        assert_eq!((rej.count, rej.first_id, rej.tap), (1, 11, 0));
        assert_eq!(ids, vec![10, 12]);
        // Outcome first (head order), then the map's channel maxima.
        assert_eq!(rec, vec![0., -1., 3., 7., 11., -4., -5., 27., 31., 35.]);
    }

    #[test]
    fn map_copies_are_nchw_whatever_the_layout() {
        let (c, h, w) = (3, 2, 4);
        let nchw: Vec<f32> = (0..c * h * w).map(|i| i as f32).collect();
        let mut nhwc = vec![0f32; nchw.len()];
        for ch in 0..c {
            for p in 0..h * w {
                nhwc[p * c + ch] = nchw[ch * h * w + p];
            }
        }
        let v = TensorView::map(&nhwc, Layout::Nhwc, [1, h, w, c]).unwrap();
        let mut out = vec![-1.0];
        assert!(append_map_chw(&v, 0, &mut out));
        assert_eq!(out[1..], nchw[..]);
        let planar = TensorView::map(&nchw, Layout::Nchw, [1, c, h, w]).unwrap();
        let mut out = Vec::new();
        assert!(append_map_chw(&planar, 0, &mut out));
        assert_eq!(out, nchw);
        let mut bad = nchw.clone();
        bad[7] = f32::INFINITY;
        let v = TensorView::map(&bad, Layout::Nchw, [1, c, h, w]).unwrap();
        assert!(!append_map_chw(&v, 0, &mut out));
    }
}
