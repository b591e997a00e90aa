//! Token-sequence taps through the Rust API: ragged batches (lengths and masks), both layouts,
//! every element type, the vendor's own pooling giving the same features, and bad lengths
//! refused and counted.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use half::{bf16, f16};
use mint_audit::config::{Pooling, TapKind};
use mint_audit::{AuditResult, Auditor, DropReason, FeatureExtractor, Form, Outcome, SeqLayout, TensorView};

/// The shipped configuration with its four maps turned into token sequences of the same
/// channel counts (so the shipped head scores them), one pooling each.
fn sequence_config() -> mint_audit::Config {
    let mut config = shipped_auditor_config();
    config.metrics.http = None;
    config.model.onnx = None;
    for (tap, pooling) in config.taps.iter_mut().zip([Pooling::Max, Pooling::Mean, Pooling::First, Pooling::Last]) {
        tap.kind = TapKind::TokenSequence;
        tap.spatial = None;
        tap.tensor = None;
        tap.pooling = Some(pooling);
        tap.max_tokens = Some(64);
    }
    config
}

const POOLINGS: [Pooling; 4] = [Pooling::Max, Pooling::Mean, Pooling::First, Pooling::Last];
const CHANNELS: [usize; 4] = [16, 32, 64, 128];

/// `[N, T, C]` hidden states of one tap; padded positions hold NaN, which must never be read.
fn hidden(n: usize, t: usize, c: usize, valid: impl Fn(usize, usize) -> bool, seed: usize) -> Vec<f32> {
    (0..n * t * c)
        .map(|i| {
            let (s, tok) = (i / (t * c), i / c % t);
            if valid(s, tok) {
                (((i + seed) * 7919 % 2003) as f32 - 1000.0) / 301.0
            } else {
                f32::NAN
            }
        })
        .collect()
}

fn to_nct(src: &[f32], t: usize, c: usize) -> Vec<f32> {
    let mut dst = vec![0f32; src.len()];
    for (i, &x) in src.iter().enumerate() {
        let (s, tok, ch) = (i / (t * c), i / c % t, i % c);
        dst[(s * c + ch) * t + tok] = x;
    }
    dst
}

/// What the vendor would hand over after pooling itself (torch's `amax`/`mean`/indexing):
/// `[N, C]`, computed plainly.
fn vendor_pooled(
    src: &[f32],
    n: usize,
    t: usize,
    c: usize,
    valid: impl Fn(usize, usize) -> bool,
    p: Pooling,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * c);
    for s in 0..n {
        let toks: Vec<usize> = (0..t).filter(|&tok| valid(s, tok)).collect();
        for ch in 0..c {
            let at = |tok: usize| src[(s * t + tok) * c + ch];
            out.push(match p {
                Pooling::Max => toks.iter().map(|&k| at(k)).fold(f32::NEG_INFINITY, f32::max),
                Pooling::Mean => (toks.iter().map(|&k| at(k) as f64).sum::<f64>() / toks.len() as f64) as f32,
                Pooling::First => at(toks[0]),
                Pooling::Last => at(*toks.last().unwrap()),
            });
        }
    }
    out
}

fn logits(n: usize) -> Vec<f32> {
    (0..n * 10).map(|i| (i % 7) as f32 - 3.0).collect()
}

/// Feature rows from full sequences equal those from the vendor's own pooling: exactly for
/// max, first and last, to rounding for the mean; for lengths and masks, in both layouts.
#[test]
fn sequences_give_the_features_of_the_vendors_own_pooling() {
    let config = sequence_config();
    let used = config.head_taps().unwrap();
    let extractor = FeatureExtractor::vanilla(config.taps.clone(), &used);
    let (n, t) = (5, 23);
    let lengths: Vec<i64> = vec![23, 1, 7, 16, 22];
    // Left padding with a gap, as a mask.
    let mask: Vec<u8> = (0..n * t).map(|i| (i % t >= 2 * (i / t) && i % t != 19) as u8).collect();
    let by_length = |s: usize, tok: usize| tok < lengths[s] as usize;
    let by_mask = |s: usize, tok: usize| mask[s * t + tok] != 0;
    for (name, valid) in [("lengths", &by_length as &dyn Fn(usize, usize) -> bool), ("mask", &by_mask)] {
        let ntc: Vec<Vec<f32>> = CHANNELS.iter().enumerate().map(|(k, &c)| hidden(n, t, c, valid, k)).collect();
        let nct: Vec<Vec<f32>> = ntc.iter().zip(CHANNELS).map(|(h, c)| to_nct(h, t, c)).collect();
        let pooled: Vec<Vec<f32>> =
            ntc.iter().zip(CHANNELS).zip(POOLINGS).map(|((h, c), p)| vendor_pooled(h, n, t, c, valid, p)).collect();
        let out = logits(n);
        let outcome = TensorView::vectors(out.as_slice(), Form::Vector, n, 10).unwrap();
        let mut rows = Vec::new();
        for layout in [SeqLayout::Ntc, SeqLayout::Nct] {
            let mut views: Vec<TensorView<'_>> = CHANNELS
                .iter()
                .enumerate()
                .map(|(k, &c)| {
                    let v = match layout {
                        SeqLayout::Ntc => TensorView::sequence(ntc[k].as_slice(), layout, [n, t, c]),
                        SeqLayout::Nct => TensorView::sequence(nct[k].as_slice(), layout, [n, c, t]),
                    }
                    .unwrap();
                    if name == "lengths" {
                        v.with_lengths(&lengths)
                    } else {
                        v.with_mask(&mask)
                    }
                })
                .collect();
            views.push(outcome);
            let mut records = Vec::new();
            assert!(extractor.extract(&views, &mut records).unwrap().is_empty(), "no sample is non-finite");
            rows.push(records);
        }
        let mut views: Vec<TensorView<'_>> = pooled
            .iter()
            .zip(CHANNELS)
            .map(|(p, c)| TensorView::vectors(p.as_slice(), Form::ChannelMax, n, c).unwrap())
            .collect();
        views.push(outcome);
        let mut expected = Vec::new();
        extractor.extract(&views, &mut expected).unwrap();
        let width = extractor.width();
        let mean_columns = 16..16 + 32;
        for records in &rows {
            assert_eq!(records.len(), n * width);
            for (i, (a, b)) in records.iter().zip(&expected).enumerate() {
                if mean_columns.contains(&(i % width)) {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{name}: mean column {i}: {a} vs {b}");
                } else {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{name}: column {} of sample {}: {a} vs {b}",
                        i % width,
                        i / width
                    );
                }
            }
        }
    }
}

type Collected = Arc<Mutex<Vec<AuditResult>>>;

fn auditor() -> (Auditor, Collected) {
    let got: Collected = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    let sink = Arc::new(move |r: &[AuditResult]| sink.lock().unwrap().extend_from_slice(r));
    (Auditor::with_sink(sequence_config(), sink).unwrap(), got)
}

/// A ragged bf16 and f16 batch is scored as the same batch pooled by the vendor (within the
/// head's batch-to-batch bound), and bad lengths lose the batch with a clear error, counted.
#[test]
fn ragged_half_precision_batches_are_audited_and_bad_lengths_counted() {
    let (n, t) = (6, 40);
    let lengths: Vec<i64> = vec![40, 3, 17, 1, 39, 25];
    let valid = |s: usize, tok: usize| tok < lengths[s] as usize;
    // Values exactly representable in bf16 (and so in f16 here), so both routes see the same.
    let ntc: Vec<Vec<f32>> = CHANNELS
        .iter()
        .enumerate()
        .map(|(k, &c)| hidden(n, t, c, valid, k).iter().map(|&x| bf16::from_f32(x).to_f32()).collect())
        .collect();
    let as_bf16: Vec<Vec<bf16>> = ntc.iter().map(|h| h.iter().map(|&x| bf16::from_f32(x)).collect()).collect();
    let as_f16: Vec<Vec<f16>> = ntc.iter().map(|h| h.iter().map(|&x| f16::from_f32(x)).collect()).collect();
    let out = logits(n);
    let outcome = TensorView::vectors(out.as_slice(), Form::Vector, n, 10).unwrap();
    let (full, full_got) = auditor();
    let ids_b: Vec<u64> = (0..n as u64).collect();
    let ids_h: Vec<u64> = (100..100 + n as u64).collect();
    let mut views: Vec<TensorView<'_>> = as_bf16
        .iter()
        .zip(CHANNELS)
        .map(|(h, c)| TensorView::sequence(h.as_slice(), SeqLayout::Ntc, [n, t, c]).unwrap().with_lengths(&lengths))
        .collect();
    views.push(outcome);
    assert_eq!(full.submit(&ids_b, &views).unwrap().accepted, n);
    let mut views: Vec<TensorView<'_>> = as_f16
        .iter()
        .zip(CHANNELS)
        .map(|(h, c)| TensorView::sequence(h.as_slice(), SeqLayout::Ntc, [n, t, c]).unwrap().with_lengths(&lengths))
        .collect();
    views.push(outcome);
    assert_eq!(full.submit(&ids_h, &views).unwrap().accepted, n);

    // Bad lengths: too long, zero, one missing; each loses its whole batch, counted.
    for (bad, needle) in [
        (vec![40i64, 3, 17, 1, 41, 25], "sample 4 has length 41"),
        (vec![40, 3, 0, 1, 39, 25], "sample 2 has length 0"),
        (vec![40, 3, 17, 1, 39], "5 lengths were given for 6 samples"),
    ] {
        let mut views: Vec<TensorView<'_>> = as_bf16
            .iter()
            .zip(CHANNELS)
            .map(|(h, c)| TensorView::sequence(h.as_slice(), SeqLayout::Ntc, [n, t, c]).unwrap())
            .collect();
        views[2] = views[2].with_lengths(&bad);
        views.push(outcome);
        let e = full.submit(&(200..200 + n as u64).collect::<Vec<_>>(), &views).unwrap_err().to_string();
        assert!(e.contains("tap 'stage3'") && e.contains(needle), "{e}");
    }
    // More positions than the configured max_tokens.
    let long = vec![bf16::ZERO; n * 65 * 16];
    let mut views: Vec<TensorView<'_>> = as_bf16
        .iter()
        .zip(CHANNELS)
        .map(|(h, c)| TensorView::sequence(h.as_slice(), SeqLayout::Ntc, [n, t, c]).unwrap())
        .collect();
    views[0] = TensorView::sequence(long.as_slice(), SeqLayout::Ntc, [n, 65, 16]).unwrap();
    views.push(outcome);
    let e = full.submit(&(300..300 + n as u64).collect::<Vec<_>>(), &views).unwrap_err().to_string();
    assert!(e.contains("65 positions exceed the configured max_tokens 64"), "{e}");

    let (pooled, pooled_got) = auditor();
    let vendor: Vec<Vec<f32>> =
        ntc.iter().zip(CHANNELS).zip(POOLINGS).map(|((h, c), p)| vendor_pooled(h, n, t, c, valid, p)).collect();
    let mut views: Vec<TensorView<'_>> = vendor
        .iter()
        .zip(CHANNELS)
        .map(|(p, c)| TensorView::vectors(p.as_slice(), Form::ChannelMax, n, c).unwrap())
        .collect();
    views.push(outcome);
    assert_eq!(pooled.submit(&ids_b, &views).unwrap().accepted, n);

    full.close(Duration::from_secs(10));
    pooled.close(Duration::from_secs(10));
    let stats = full.stats();
    assert_eq!(stats.dropped(DropReason::InvalidInput), 4 * n as u64, "{stats:?}");
    assert_eq!(stats.audited(), 2 * n as u64, "{stats:?}");
    assert_eq!(stats.submitted, stats.audited() + stats.dropped_total(), "{stats:?}");
    let scores = |got: &Collected| -> HashMap<u64, f32> {
        got.lock()
            .unwrap()
            .iter()
            .map(|r| {
                assert!(matches!(r.outcome, Outcome::Audited(_)), "{r:?}");
                (r.sample_id, r.score)
            })
            .collect()
    };
    let (full, pooled) = (scores(&full_got), scores(&pooled_got));
    assert_eq!(full.len(), 2 * n);
    for id in 0..n as u64 {
        // The shipped head's scores move by up to 7e-6 with their batch (batch_invariance.rs).
        for (a, b) in [(full[&id], pooled[&id]), (full[&(id + 100)], pooled[&id])] {
            assert!((a - b).abs() <= 5e-5, "sample {id}: {a} from the sequence, {b} pooled by the vendor");
        }
    }
}

/// A causal language model's scores from its logits `[N, T, V]` and token ids (a
/// `token_logits` tap) give the features of the same scores computed by the vendor in float64
/// (a `token_logprobs` tap of 3 channels, one position fewer), in both layouts and every
/// element type; logits the scoring does not need are never read; bad ids are refused.
#[test]
fn logits_give_the_features_of_the_vendors_own_token_scores() {
    use mint_audit::config::TapConfig;
    let (n, t, v) = (4, 12, 300);
    let lengths: Vec<i64> = vec![12, 2, 7, 9];
    let ids: Vec<i64> = (0..n * t).map(|i| (i * 7919 % v) as i64).collect();
    // Logits exact in bf16, so that every element type sees the same values; the position
    // after a sample's last scored one, and the padding, hold NaN: they must not be read.
    let logits: Vec<f32> = (0..n * t * v)
        .map(|i| {
            let (s, tok) = (i / (t * v), i / v % t);
            if tok + 1 < lengths[s] as usize {
                bf16::from_f32((((i * 7919) % 2003) as f32 - 1000.0) / 125.0).to_f32()
            } else {
                f32::NAN
            }
        })
        .collect();
    // The vendor's scores in float64: [N, T - 1, 3] (log p of token t + 1, mean, std at t).
    let mut scores = vec![f32::NAN; n * (t - 1) * 3];
    for s in 0..n {
        for tok in 0..lengths[s] as usize - 1 {
            let row: Vec<f64> = logits[(s * t + tok) * v..(s * t + tok + 1) * v].iter().map(|&x| x as f64).collect();
            let top = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = top + row.iter().map(|x| (x - top).exp()).sum::<f64>().ln();
            let mean: f64 = row.iter().map(|x| (x - lse).exp() * (x - lse)).sum();
            let var: f64 = row.iter().map(|x| (x - lse).exp() * (x - lse - mean).powi(2)).sum();
            let at = (s * (t - 1) + tok) * 3;
            scores[at..at + 3].copy_from_slice(&[
                (row[ids[s * t + tok + 1] as usize] - lse) as f32,
                mean as f32,
                var.sqrt() as f32,
            ]);
        }
    }
    let shifted: Vec<i64> = lengths.iter().map(|l| l - 1).collect();
    let given = FeatureExtractor::vanilla(vec![TapConfig::new("scores", 3, TapKind::TokenLogprobs)], &[0]);
    let view = TensorView::sequence(scores.as_slice(), SeqLayout::Ntc, [n, t - 1, 3]).unwrap().with_lengths(&shifted);
    let mut expected = Vec::new();
    assert!(given.extract(&[view], &mut expected).unwrap().is_empty());

    let computed = FeatureExtractor::vanilla(vec![TapConfig::new("logits", v, TapKind::TokenLogits)], &[0]);
    assert_eq!(computed.width(), given.width());
    let rows = |view: TensorView<'_>| {
        let mut rows = Vec::new();
        assert!(computed.extract(&[view], &mut rows).unwrap().is_empty(), "no sample is non-finite");
        rows
    };
    let f32_rows = rows(
        TensorView::sequence(logits.as_slice(), SeqLayout::Ntc, [n, t, v])
            .unwrap()
            .with_lengths(&lengths)
            .with_targets(&ids),
    );
    for (i, (a, b)) in f32_rows.iter().zip(&expected).enumerate() {
        assert!((a - b).abs() <= 2e-5 * (1.0 + b.abs()), "feature {} of sample {}: {a} vs {b}", i % 15, i / 15);
    }
    // The same logits as bf16, f16, [N, V, T] and with a mask give the same rows exactly.
    let as_bf16: Vec<bf16> = logits.iter().map(|&x| bf16::from_f32(x)).collect();
    let as_f16: Vec<f16> = logits.iter().map(|&x| f16::from_f32(x)).collect();
    let nct = to_nct(&logits, t, v);
    let mask: Vec<u8> = (0..n * t).map(|i| u8::from(((i % t) as i64) < lengths[i / t])).collect();
    for (what, again) in [
        (
            "bf16",
            rows(
                TensorView::sequence(as_bf16.as_slice(), SeqLayout::Ntc, [n, t, v])
                    .unwrap()
                    .with_lengths(&lengths)
                    .with_targets(&ids),
            ),
        ),
        (
            "f16",
            rows(
                TensorView::sequence(as_f16.as_slice(), SeqLayout::Ntc, [n, t, v])
                    .unwrap()
                    .with_lengths(&lengths)
                    .with_targets(&ids),
            ),
        ),
        (
            "[N, V, T]",
            rows(
                TensorView::sequence(nct.as_slice(), SeqLayout::Nct, [n, v, t])
                    .unwrap()
                    .with_lengths(&lengths)
                    .with_targets(&ids),
            ),
        ),
        (
            "mask",
            rows(
                TensorView::sequence(logits.as_slice(), SeqLayout::Ntc, [n, t, v])
                    .unwrap()
                    .with_mask(&mask)
                    .with_targets(&ids),
            ),
        ),
    ] {
        assert_eq!(again, f32_rows, "{what}");
    }

    let base = TensorView::sequence(logits.as_slice(), SeqLayout::Ntc, [n, t, v]).unwrap().with_lengths(&lengths);
    let mut out_of_vocabulary = ids.clone();
    out_of_vocabulary[t + 1] = v as i64;
    let one = [1i64, 2, 7, 9];
    for (view, needle) in [
        (base, "need the token ids"),
        (base.with_targets(&ids[1..]), "47 token ids were given for 4 samples of 12 positions"),
        (base.with_targets(&out_of_vocabulary), "sample 1 has token id 300 at position 1"),
        (base.with_lengths(&one).with_targets(&ids), "sample 0 has no two consecutive valid tokens"),
    ] {
        let e = computed.extract(&[view], &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("tap 'logits'") && e.contains(needle), "{e}");
    }
    // Token ids belong to logits only.
    let e = given.extract(&[view.with_targets(&ids)], &mut Vec::new()).unwrap_err().to_string();
    assert!(e.contains("token ids apply to token_logits taps only"), "{e}");
}
