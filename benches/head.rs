//! Head throughput at batch 1, 16, 64, 256 and 1024, as a ratio to onnxruntime (single-threaded) on the
//! same ONNX file, measured in the same run.
//!
//!     cargo bench --bench head            (onnxruntime from $MINT_BENCH_PYTHON or .venv/bin/python)
//!
//! The tract figure is the head as the auditor's worker runs it with `max_batch` 64: a plan
//! with a symbolic batch axis, plans for batches of exactly 1 and 64, one state per thread.

#[path = "support/python.rs"]
mod python;
#[path = "support/timing.rs"]
mod timing;

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use mint_audit::config::ScoreOutput;
use mint_head::HeadModel;
use tract_onnx::prelude::*;

const BATCHES: [usize; 5] = [1, 16, 64, 256, 1024];

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = repo.join("models/fmnist-memorizing/head.onnx");
    let width = 250;
    let input: Vec<f32> = (0..1024 * width).map(|i| ((i * 7919) % 1000) as f32 / 300.0).collect();
    let mut scores = Vec::with_capacity(1024);
    let mut tract = Vec::new();
    let mut symbolic = Vec::new();
    for b in BATCHES {
        // As the auditor's worker loads it with `max_batch: b`: plans for 1 and b beside the
        // symbolic one.
        let head = HeadModel::load(&path, None, &[width], ScoreOutput::Probability).unwrap();
        let mut plain = head.runner().unwrap();
        let t = timing::ns_per_call(
            || {
                scores.clear();
                plain.score(black_box(&input[..b * width]), b, &mut scores).unwrap();
            },
            15,
            Duration::from_millis(60),
        );
        symbolic.push(b as f64 / t * 1e9);
        let mut runner = head.with_batch_plans(&[1, b]).unwrap().runner().unwrap();
        let t = timing::ns_per_call(
            || {
                scores.clear();
                runner.score(black_box(&input[..b * width]), b, &mut scores).unwrap();
            },
            15,
            Duration::from_millis(60),
        );
        tract.push(b as f64 / t * 1e9);
    }

    let ort: Option<Vec<f64>> = python::python().and_then(|py| {
        let mut args = vec![path.display().to_string()];
        args.extend(BATCHES.iter().map(|b| b.to_string()));
        let v = python::json_of(&py, "ort_head.py", &args)?;
        Some(BATCHES.iter().map(|b| v[b.to_string()].as_f64().unwrap()).collect())
    });

    let mut text = format!(
        "### Head throughput: shipped Vanilla head ({width} features → 64 → 1, with standardisation and confidence features)\n\n\
         CPU: {}; flags: {}; one thread each. tract as the worker runs it (with a plan for this exact batch \
         size), and with the symbolic-batch plan alone.\n\n\
         | batch | tract (samples/s) | tract, symbolic plan only | onnxruntime 1 thread | tract / onnxruntime |\n\
         |---:|---:|---:|---:|---:|\n",
        timing::cpu_name(),
        timing::cpu_flags()
    );
    for (i, b) in BATCHES.iter().enumerate() {
        match &ort {
            Some(o) => text.push_str(&format!(
                "| {b} | {:.0} | {:.0} | {:.0} | {:.2} |\n",
                tract[i],
                symbolic[i],
                o[i],
                tract[i] / o[i]
            )),
            None => text.push_str(&format!(
                "| {b} | {:.0} | {:.0} | (no onnxruntime: set MINT_BENCH_PYTHON) | |\n",
                tract[i], symbolic[i]
            )),
        }
    }
    for b in [16, 256, 1024] {
        text.push_str(&profile(&path, width, b, &input[..b * width]));
    }
    timing::write_result("head", &text);
}

/// Where tract's time goes at one batch size: the head compiled as the worker's plan for that
/// exact batch, run with a timer around each node, totals by operator. "Between the nodes" is
/// the rest of a run (the plan's bookkeeping, freeing the values no node needs any more).
fn profile(path: &Path, width: usize, batch: usize, input: &[f32]) -> String {
    let mut model = tract_onnx::onnx().model_for_path(path).unwrap();
    model.set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), tvec!(batch, width))).unwrap();
    let plan = model.into_typed().unwrap().into_optimized().unwrap().into_runnable().unwrap();
    let mut state = plan.spawn().unwrap();
    let tensor = Tensor::from_shape(&[batch, width], input).unwrap();
    let nodes = plan.model().nodes().len();
    let mut spent = vec![std::time::Duration::ZERO; nodes];
    let mut large = 0;
    for node in plan.model().nodes() {
        let bytes: usize = node
            .outputs
            .iter()
            .filter_map(|o| {
                o.fact.shape.as_concrete().map(|s| s.iter().product::<usize>() * o.fact.datum_type.size_of())
            })
            .sum();
        large += (bytes >= 128 << 10) as usize;
    }
    let runs = (4096 / batch).max(8);
    let mut wall = std::time::Duration::ZERO;
    for round in 0..2 * runs {
        let started = std::time::Instant::now();
        state
            .run_plan_with_eval(tvec!(tensor.clone().into_tvalue()), |ctx, op_state, node, inputs| {
                let t = std::time::Instant::now();
                let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                if round >= runs {
                    spent[node.id] += t.elapsed();
                }
                out
            })
            .unwrap();
        if round >= runs {
            wall += started.elapsed();
        }
    }
    let mut by_op: Vec<(String, usize, f64)> = Vec::new();
    for node in plan.model().nodes() {
        let name = node.op().name().to_string();
        let us = spent[node.id].as_secs_f64() * 1e6 / runs as f64;
        match by_op.iter_mut().find(|(n, _, _)| *n == name) {
            Some(row) => (row.1 += 1, row.2 += us).1,
            None => by_op.push((name, 1, us)),
        }
    }
    by_op.sort_by(|a, b| b.2.total_cmp(&a.2));
    let total = wall.as_secs_f64() * 1e6 / runs as f64;
    let in_nodes: f64 = by_op.iter().map(|r| r.2).sum();
    let mut text = format!(
        "\n#### tract's plan for batch {batch}, node by node\n\n{nodes} nodes, {large} of them with outputs of 128 KiB or more \
         (glibc's default mmap threshold); {total:.1} µs per run ({:.0} samples/s with the timers on).\n\n\
         | operator | nodes | µs per run | share |\n|---|---:|---:|---:|\n",
        batch as f64 / total * 1e6
    );
    for (name, count, us) in &by_op {
        text.push_str(&format!("| {name} | {count} | {us:.1} | {:.1}% |\n", us / total * 100.0));
    }
    text.push_str(&format!(
        "| between the nodes | | {:.1} | {:.1}% |\n",
        total - in_nodes,
        (total - in_nodes) / total * 100.0
    ));
    text
}
