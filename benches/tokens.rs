//! Token-sequence pooling cost per sample, as a ratio to the best bare single-pass max over the
//! same valid bytes, measured in the same run.
//!
//!     cargo bench --bench tokens
//!
//! Two shapes: a ViT-B/16's hidden states (197 tokens × 768 channels, every token valid) and a
//! language model's (512 positions × 768 channels, 300 valid: right padding given as lengths,
//! or left padding given as a mask). The library must pool the valid tokens in about the time a
//! flat scan reads them, whatever the layout (`[N, T, C]` or `[N, C, T]`), pooling and dtype.
//!
//! Then a language model's logits scored by the library (`token_logits`: GPT-2's vocabulary of
//! 50257, 32 positions of which 31 are scored), against a plain two-pass log-softmax of the
//! same logits written here (a max, then one `exp` per logit: the least any scoring does).

#[path = "support/bare.rs"]
mod bare;
#[path = "support/timing.rs"]
mod timing;

use std::hint::black_box;
use std::time::Duration;

use half::bf16;
use mint_audit::config::Pooling;
use mint_audit::config::{TapConfig, TapKind};
use mint_audit::internals::{self as reduce, Isa};
use mint_audit::{FeatureExtractor, SeqLayout, TensorView};

const C: usize = 768;

fn to_nct(ntc: &[f32], t: usize) -> Vec<f32> {
    let mut out = vec![0f32; ntc.len()];
    for tok in 0..t {
        for ch in 0..C {
            out[ch * t + tok] = ntc[tok * C + ch];
        }
    }
    out
}

fn main() {
    reduce::picks();
    let trial = Duration::from_millis(10);
    let mut seed = 0x2545_f491u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 * 6.0 - 1.0
    };
    let scans = bare::scans();
    // (shape, T, valid tokens, left padding as a mask)
    let cases = [
        ("ViT-B/16, all 197 valid", 197, 197, false),
        ("LM, 300 of 512, lengths", 512, 300, false),
        ("LM, 300 of 512, left-padded mask", 512, 300, true),
    ];
    let mut table = String::new();
    for (name, t, valid, left) in cases {
        let ntc: Vec<f32> = (0..t * C).map(|_| next()).collect();
        let nct = to_nct(&ntc, t);
        let halves: Vec<bf16> = ntc.iter().map(|&x| bf16::from_f32(x)).collect();
        let lengths = [valid as i64];
        let mask: Vec<u8> = (0..t).map(|tok| u8::from(if left { tok >= t - valid } else { tok < valid })).collect();
        // The bytes of the valid tokens, contiguous: what a flat scan would read.
        let first = if left { t - valid } else { 0 };
        let valid_bytes = &ntc[first * C..(first + valid) * C];
        let best = scans
            .iter()
            .map(|&(_, scan)| (scan, timing::ns_per_call(|| _ = black_box(scan(black_box(valid_bytes))), 9, trial)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap()
            .0;
        let mut out = vec![0f32; C];
        for (layout, dtype) in [(SeqLayout::Ntc, "f32"), (SeqLayout::Nct, "f32"), (SeqLayout::Ntc, "bf16")] {
            let view = match (layout, dtype) {
                (SeqLayout::Ntc, "f32") => TensorView::sequence(ntc.as_slice(), layout, [1, t, C]),
                (SeqLayout::Nct, _) => TensorView::sequence(nct.as_slice(), layout, [1, C, t]),
                _ => TensorView::sequence(halves.as_slice(), layout, [1, t, C]),
            }
            .unwrap();
            let view = if left { view.with_mask(&mask) } else { view.with_lengths(&lengths) };
            for pooling in [Pooling::Max, Pooling::Mean, Pooling::Last] {
                let (b, lib, ratio) = timing::paired(
                    || _ = black_box(best(black_box(valid_bytes))),
                    || _ = black_box(reduce::pool(black_box(&view), 0, pooling, &mut out, true)),
                    41,
                    trial / 4,
                );
                table.push_str(&format!(
                    "| {name} | {layout:?} {dtype} | {} | {:.2} | {:.2} | {ratio:.2} |\n",
                    pooling.label(),
                    b / 1e3,
                    lib / 1e3
                ));
            }
        }
    }
    let logits_table = logits(&mut next, trial);
    let text = format!(
        "### Tokens: pooling one sample's hidden states (768 channels) over its valid tokens\n\n\
         CPU: {} ({} logical CPUs); flags: {}; ISAs available: {}; best: {}; run-time picks: {}.\n\n\
         Median over 41 alternating trials against the best bare flat max over the valid tokens' \
         f32 bytes (bf16 rows read half those bytes; `last` reads one token).\n\n\
         | sequence | layout | pooling | bare scan µs | mint-audit µs | × bare scan |\n|---|---|---|---:|---:|---:|\n{table}\n\
         ### Tokens: a language model's logits scored by the library (`token_logits`)\n\n\
         One sample: 32 positions × a vocabulary of {V}, 31 tokens scored (log p, and the mean and \
         standard deviation of log p at each position), then the 15 default features. Median over \
         11 alternating trials against a plain two-pass log-softmax of each scored position's f32 \
         logits (max, then a sum of `exp`).\n\n\
         | logits | plain log-softmax ms | mint-audit ms | × plain | ns per logit |\n|---|---:|---:|---:|---:|\n{logits_table}",
        timing::cpu_name(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        timing::cpu_flags(),
        Isa::available().iter().map(|i| i.name()).collect::<Vec<_>>().join(", "),
        reduce::isa().name(),
        reduce::picks().iter().map(|(r, i)| format!("{r} {}", i.name())).collect::<Vec<_>>().join(", "),
    );
    timing::write_result("tokens", &text);
}

const V: usize = 50257;

/// The logits table: per element type and layout, the library against a plain log-softmax.
fn logits(next: &mut impl FnMut() -> f32, trial: Duration) -> String {
    let t = 32;
    let ntc: Vec<f32> = (0..t * V).map(|_| next() * 4.0).collect();
    let ids: Vec<i64> = (0..t as i64).map(|i| i * 7919 % V as i64).collect();
    let halves: Vec<bf16> = ntc.iter().map(|&x| bf16::from_f32(x)).collect();
    let mut nct = vec![0f32; ntc.len()];
    for tok in 0..t {
        for v in 0..V {
            nct[v * t + tok] = ntc[tok * V + v];
        }
    }
    let plain = || {
        let mut total = 0f32;
        for tok in 0..t - 1 {
            let row = &ntc[tok * V..(tok + 1) * V];
            let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = row.iter().map(|&x| (x - top).exp()).sum();
            total += row[ids[tok + 1] as usize] - top - sum.ln();
        }
        total
    };
    let extractor = FeatureExtractor::vanilla(vec![TapConfig::new("logits", V, TapKind::TokenLogits)], &[0]);
    let mut table = String::new();
    for (what, view) in [
        ("[N, T, V] f32", TensorView::sequence(ntc.as_slice(), SeqLayout::Ntc, [1, t, V])),
        ("[N, T, V] bf16", TensorView::sequence(halves.as_slice(), SeqLayout::Ntc, [1, t, V])),
        ("[N, V, T] f32", TensorView::sequence(nct.as_slice(), SeqLayout::Nct, [1, V, t])),
    ] {
        let view = view.unwrap().with_targets(&ids);
        let mut rows = Vec::with_capacity(15);
        let (b, lib, ratio) = timing::paired(
            || _ = black_box(plain()),
            || {
                rows.clear();
                _ = black_box(extractor.extract(black_box(&[view]), &mut rows));
            },
            11,
            trial,
        );
        let per_logit = lib / ((t - 1) * V) as f64;
        table.push_str(&format!("| {what} | {:.2} | {:.2} | {ratio:.2} | {per_logit:.2} |\n", b / 1e6, lib / 1e6));
    }
    table
}
