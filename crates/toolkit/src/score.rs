//! Member and non-member sets scored through the library's own runtime, as a vendor's serving
//! path would score them: the audited model run, every sample submitted to an auditor, its head's
//! scores collected (what `mint eval`, `mint dataset-test` and the console build on).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mint_audit::config::TapKind;
use mint_audit::{AuditResult, Auditor, Config, DropReason, Outcome, TappedModel};

use crate::data::Images;
use crate::descriptor::Descriptor;
use crate::extract::for_each_batch;

/// Scores of the audited samples, by id, as the auditor's sink receives them.
#[derive(Default)]
struct Collected {
    scores: HashMap<u64, f32>,
    lost: Vec<(u64, DropReason)>,
}

/// The ids of non-members start here (members count from 0).
const NON_MEMBER_IDS: u64 = 1 << 32;

/// What scoring both sets through the auditor gave.
pub struct Scored {
    /// Head scores of the members, then of the non-members.
    pub pos: Vec<f64>,
    pub neg: Vec<f64>,
    /// The model's outcome per sample of each set (for the baselines), `outcome_width` each.
    pub outcomes: [Vec<f32>; 2],
    pub outcome_width: usize,
    /// Whether the configuration has an outcome tap (else `outcomes` are empty).
    pub has_outcome: bool,
    pub head_sha256: String,
}

/// Runs both sets through the model and the auditor, as a vendor's serving path would, with
/// every sample audited.
pub fn score_sets(
    threads: usize,
    batch: usize,
    config: &Config,
    desc: &Descriptor,
    members: &Images,
    non_members: &Images,
) -> Result<Scored> {
    score_sets_with(&desc.compile()?, threads, batch, config, members, non_members)
}

/// [`score_sets`] with the audited model already compiled (the console compiles it once).
pub fn score_sets_with(
    model: &TappedModel,
    threads: usize,
    batch: usize,
    config: &Config,
    members: &Images,
    non_members: &Images,
) -> Result<Scored> {
    let total = members.len() + non_members.len();
    // Evaluation audits every sample: no sampling, no endpoint, and a queue that holds all.
    let mut config = config.clone();
    config.sampling.one_in = 1;
    config.metrics.http = None;
    config.queue.capacity = config.queue.capacity.max(total);
    let config = &config;
    let outcome_tap = config.taps.iter().position(|t| t.kind == TapKind::Outcome);
    let outcome_width = outcome_tap.map(|i| config.taps[i].channels).unwrap_or(0);

    let collected = Arc::new(Mutex::new(Collected::default()));
    let sink = Arc::clone(&collected);
    let auditor = Auditor::with_sink(
        config.clone(),
        Arc::new(move |results: &[AuditResult]| {
            let mut c = sink.lock().unwrap();
            for r in results {
                match r.outcome {
                    Outcome::Audited(_) => {
                        c.scores.insert(r.sample_id, r.score);
                    }
                    Outcome::Dropped(reason) => c.lost.push((r.sample_id, reason)),
                }
            }
        }),
    )?;

    // Keep the outcome for the baselines.
    let mut outcomes: [Vec<f32>; 2] =
        [vec![0.0; members.len() * outcome_width], vec![0.0; non_members.len() * outcome_width]];
    for (set, (images, id_base)) in [(members, 0u64), (non_members, NON_MEMBER_IDS)].into_iter().enumerate() {
        let kept = Mutex::new(std::mem::take(&mut outcomes[set]));
        let what = if set == 0 { "members" } else { "non-members" };
        for_each_batch(model, images, batch, threads, what, |start, views| {
            let n = views[0].batch();
            let ids: Vec<u64> = (0..n as u64).map(|i| id_base + start as u64 + i).collect();
            auditor.submit(&ids, views).with_context(|| format!("submitting {what} {start}..{}", start + n))?;
            if let Some(o) = outcome_tap {
                let mut kept = kept.lock().unwrap();
                for i in 0..n {
                    let row = (start + i) * outcome_width;
                    mint_audit::reduction::copy_vector(&views[o], i, &mut kept[row..row + outcome_width]);
                }
            }
            Ok(())
        })?;
        outcomes[set] = kept.into_inner().unwrap();
    }
    let close = auditor.close(Duration::from_secs(600));
    let collected = std::mem::take(&mut *collected.lock().unwrap());
    if let Some(&(id, reason)) = collected.lost.first() {
        bail!(
            "{} samples were not scored (first: id {id}, {}); last worker error: {}",
            collected.lost.len(),
            reason.label(),
            auditor.last_worker_error().unwrap_or_default()
        );
    }
    ensure!(
        close.stats.audited() == total as u64 && collected.scores.len() == total,
        "{} of {total} samples were scored",
        collected.scores.len()
    );
    let score = |id: u64| collected.scores[&id] as f64;
    Ok(Scored {
        pos: (0..members.len() as u64).map(score).collect(),
        neg: (0..non_members.len() as u64).map(|i| score(NON_MEMBER_IDS + i)).collect(),
        outcomes,
        outcome_width,
        has_outcome: outcome_tap.is_some(),
        head_sha256: auditor.head_sha256().to_string(),
    })
}
