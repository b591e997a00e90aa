//! `--expect`: the outcome a test of a suspect set must have, for the commands that test one
//! (`mint dataset-test`, `mint dataset-inference`).

use mint_toolkit::dataset_test;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Expect {
    /// The suspect set must be found (a regulator's control on a known-member set).
    Evidence,
    /// The suspect set must not be found (a vendor's gate: held-out data stays undetectable).
    NoEvidence,
}

impl From<Expect> for dataset_test::Expect {
    fn from(e: Expect) -> dataset_test::Expect {
        match e {
            Expect::Evidence => dataset_test::Expect::Evidence,
            Expect::NoEvidence => dataset_test::Expect::NoEvidence,
        }
    }
}
