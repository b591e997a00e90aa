//! Dataset inference for a data owner's texts (Maini, Jia, Papernot and Dziedzic, "LLM Dataset
//! Inference: Did you train on my dataset?", NeurIPS 2024): per-text membership features too
//! weak one by one (loss, zlib ratio, Min-K%, Min-K%++, a MINT head's score), combined by a
//! linear model that one half of the data learns and tested on the other half.
//!
//! The owner brings a *suspect* set (texts they say were trained on) and a *validation* set
//! (texts of the same distribution they know were not: held back, unpublished, or written
//! after the model's data cut-off). Each set is split at random (seeded) into halves A and B.
//! On A, every feature is clipped to the pooled 2.5–97.5% quantiles of A and standardised by
//! A's mean and spread, and an L2-regularised logistic regression learns suspect (1) against
//! validation (0). On B, through A's clipping, standardisation and weights, each text gets a
//! linear score, and a one-sided Welch t-test asks whether suspect texts score higher.
//!
//! Assumptions, which a regulator checks before reading the p-value:
//! - Under the null hypothesis (the suspect texts were not trained on), suspect and
//!   validation texts are exchangeable, drawn from one distribution. A shift between them
//!   (other authors, other years) is found as readily as membership: the null control (the
//!   same test with a second validation set as the suspect) is there for that, and a shift
//!   the owner cannot rule out voids the test.
//! - B plays no part in the fit, so the learned score is a fixed function on B and, under the
//!   null, B's suspect and validation scores are i.i.d. from one distribution. The test's
//!   level is then Welch's on i.i.d. samples: approximate, as the t distribution is for
//!   scores that are not normal (they are bounded by the clipping, so the approximation is
//!   good from a few dozen texts); [`study`] measures it by resampling, and the tables in
//!   docs/experiments.md report it beside the power.
//!
//! Differences from the paper's code, each a choice for validity: clipping and
//! standardisation are learnt from A alone (theirs from each whole set, B included, and each
//! set clipped at its own quantiles); Welch's test (theirs Student's, which assumes equal
//! variances); the suspect labelled 1 and tested for "greater" (theirs 0 and "less": the
//! same comparison).

mod command;
mod recipe;
mod study;
#[cfg(test)]
mod synthetic;

pub use crate::formats::reports::{Inference, PowerRow, Rate, Sizes};
pub use command::{run, Options, Outcome, StudyOptions, NULL_CHECK_LEVEL, TARGET_POWER};
pub use recipe::{infer, welch_greater, CLIP, MIN_SET};
pub use study::{study, texts_needed, Pools};
