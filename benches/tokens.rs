//! Token-sequence pooling cost per sample, as a ratio to the best bare single-pass max over the
//! same valid bytes, measured in the same run.
//!
//!     cargo bench --bench tokens
//!
//! Two shapes: a ViT-B/16's hidden states (197 tokens × 768 channels, every token valid) and a
//! language model's (512 positions × 768 channels, 300 valid: right padding given as lengths,
//! or left padding given as a mask). The library must pool the valid tokens in about the time a
//! flat scan reads them, whatever the layout (`[N, T, C]` or `[N, C, T]`), pooling and dtype.

#[path = "support/bare.rs"]
mod bare;
#[path = "support/timing.rs"]
mod timing;

use std::hint::black_box;
use std::time::Duration;

use half::bf16;
use mint_audit::config::Pooling;
use mint_audit::internals::{self as reduce, Isa};
use mint_audit::{SeqLayout, TensorView};

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
    let text = format!(
        "### Tokens: pooling one sample's hidden states (768 channels) over its valid tokens\n\n\
         CPU: {} ({} logical CPUs); flags: {}; ISAs available: {}; best: {}; run-time picks: {}.\n\n\
         Median over 41 alternating trials against the best bare flat max over the valid tokens' \
         f32 bytes (bf16 rows read half those bytes; `last` reads one token).\n\n\
         | sequence | layout | pooling | bare scan µs | mint-audit µs | × bare scan |\n|---|---|---|---:|---:|---:|\n{table}",
        timing::cpu_name(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        timing::cpu_flags(),
        Isa::available().iter().map(|i| i.name()).collect::<Vec<_>>().join(", "),
        reduce::isa().name(),
        reduce::picks().iter().map(|(r, i)| format!("{r} {}", i.name())).collect::<Vec<_>>().join(", "),
    );
    timing::write_result("tokens", &text);
}
