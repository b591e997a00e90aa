//! How much a sample's score depends on the batch it was scored in.
//!
//! The auditor's worker takes whatever the queue holds, up to `max_batch`, so the same sample
//! lands in batches of any size: alone (the plan for 1), in a full batch (the plan for
//! `max_batch`) or in between (the symbolic plan). tract's kernels sum in another order for
//! other batch sizes, so a score moves in its last bits with the batch: a live verdict within
//! that distance of the calibrated threshold depends on the load, and `mint eval`'s score of
//! the same sample may differ by as much. This bounds the distance on the shipped heads, on
//! whatever CPU the test runs on (tract picks its kernels by the CPU's features), prints what
//! it measured, and checks that the same batches give the same scores bit for bit.

use std::path::{Path, PathBuf};

use mint_backend_abi::score::ScoreOutput;
use mint_head::HeadModel;

/// How far a score may move with the batch: tract's kernels sum in another order for other
/// batch sizes (measured: up to 7e-6 on AVX-512, the memorizing head on its symbolic plan). A
/// sample mixed up with its batch's other rows would move by far more.
const TOLERANCE: f32 = 5e-5;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// Uniform in [0, 1), from a fixed seed.
fn uniform(values: usize) -> impl Iterator<Item = f32> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..values).map(move |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    })
}

/// Inputs that a head scores across its range: the reference feature rows its training wrote
/// beside it (`head.onnx.json`), each value scaled by up to ±10%; without a reference (the CNN
/// head's maps), values spread like post-ReLU activations.
fn inputs(path: &Path, samples: usize, per_sample: usize) -> Vec<f32> {
    let card = PathBuf::from(format!("{}.json", path.display()));
    let reference: Option<Vec<Vec<f32>>> = std::fs::read(&card)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|card| serde_json::from_value(card["reference"]["inputs"].clone()).ok());
    let jitter = uniform(samples * per_sample);
    match reference {
        Some(rows) => {
            assert!(rows.iter().all(|r| r.len() == per_sample), "{}: reference rows of another width", card.display());
            let values = (0..samples).flat_map(|i| rows[i % rows.len()].iter().copied());
            values.zip(jitter).map(|(v, u)| v * (0.9 + 0.2 * u)).collect()
        }
        None => jitter.map(|u| (u - 0.3).max(0.0) * 4.0).collect(),
    }
}

/// Scores `samples` samples in consecutive batches of the given sizes (cycled).
fn scores_in_batches(head: &HeadModel, input: &[f32], samples: usize, sizes: &[usize]) -> Vec<f32> {
    let per_sample = head.sample_len();
    let mut runner = head.runner().unwrap();
    let mut out = Vec::with_capacity(samples);
    let (mut first, mut next) = (0, sizes.iter().cycle());
    while first < samples {
        let n = (*next.next().unwrap()).min(samples - first);
        runner.score(&input[first * per_sample..(first + n) * per_sample], n, &mut out).unwrap();
        first += n;
    }
    out
}

fn check(path: &Path, sample_shape: &[usize], max_batch: usize) {
    let head = HeadModel::load(path, None, sample_shape, ScoreOutput::Probability)
        .unwrap()
        .with_batch_plans(&[1, max_batch])
        .unwrap();
    let samples = 3 * max_batch + 5;
    let input = inputs(path, samples, head.sample_len());
    let alone = scores_in_batches(&head, &input, samples, &[1]);
    assert!(alone.iter().all(|s| (0.0..=1.0).contains(s)), "{}: a score outside [0, 1]", path.display());
    let distinct = alone.iter().map(|s| s.to_bits()).collect::<std::collections::BTreeSet<_>>().len();
    assert!(distinct > samples / 2, "{}: the inputs hardly move the scores ({distinct} distinct)", path.display());
    // Full batches on the fixed plan, odd sizes on the symbolic one, and a mix of all three.
    for sizes in [&[max_batch][..], &[7], &[max_batch + 3], &[2, max_batch, 1, 13]] {
        let batched = scores_in_batches(&head, &input, samples, sizes);
        assert_eq!(batched, scores_in_batches(&head, &input, samples, sizes), "the same batches, other scores");
        let differ = alone.iter().zip(&batched).filter(|(a, b)| a != b).count();
        let worst = alone.iter().zip(&batched).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!(
            "{}: in batches of {sizes:?}, {differ} of {samples} scores differ from scoring alone, by at most {worst:e}",
            path.display()
        );
        assert!(worst <= TOLERANCE, "{}: batches of {sizes:?} moved a score by {worst:e}", path.display());
    }
}

#[test]
fn a_vanilla_heads_score_moves_only_in_its_last_bits_with_the_batch() {
    for model in ["fmnist-memorizing", "fmnist-generalizing"] {
        check(&models().join(model).join("head.onnx"), &[250], 64);
    }
}

#[test]
fn the_cnn_heads_score_moves_only_in_its_last_bits_with_the_batch() {
    check(&models().join("fmnist-memorizing/cnn_head_stage1.onnx"), &[16, 28, 28], 16);
}
