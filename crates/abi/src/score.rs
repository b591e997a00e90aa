//! What a head's output means, shared by the host, the head runtime and the backends.

/// How a head's output is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreOutput {
    /// The head outputs a membership probability in [0, 1].
    #[default]
    Probability,
    /// The head outputs a logit; the score is its sigmoid.
    Logit,
}

impl ScoreOutput {
    /// The membership probability for one raw output value.
    pub fn to_probability(self, raw: f32) -> f32 {
        match self {
            ScoreOutput::Probability => raw,
            ScoreOutput::Logit => sigmoid(raw),
        }
    }
}

/// The logistic function, `1 / (1 + e^-x)`.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_become_probabilities() {
        assert_eq!(ScoreOutput::Logit.to_probability(0.0), 0.5);
        assert_eq!(ScoreOutput::Probability.to_probability(0.25), 0.25);
        assert!(sigmoid(-100.0) >= 0.0 && sigmoid(100.0) <= 1.0);
    }
}
