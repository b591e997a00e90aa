//! The Triton backend's configuration (`backend.config` of the auditor's), strict, with defaults.

use mint_backend_abi::score::ScoreOutput;
use serde::Deserialize;

/// Where the head is served and how requests behave.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TritonConfig {
    #[serde(default = "default_url")]
    pub(crate) url: String,
    #[serde(default = "default_model")]
    pub(crate) model: String,
    #[serde(default)]
    pub(crate) version: String,
    #[serde(default = "default_input")]
    pub(crate) input: String,
    #[serde(default = "default_output")]
    pub(crate) output: String,
    #[serde(default)]
    pub(crate) output_kind: ScoreOutput,
    #[serde(default = "default_timeout")]
    pub(crate) timeout_ms: u64,
    #[serde(default = "default_retries")]
    pub(crate) retries: u32,
    #[serde(default = "default_backoff")]
    pub(crate) backoff_ms: u64,
    #[serde(default = "default_in_flight")]
    pub(crate) max_in_flight: usize,
    #[serde(default = "default_ready_timeout")]
    pub(crate) ready_timeout_ms: u64,
    #[serde(default)]
    #[allow(dead_code)] // reported by the host as the head's identity
    sha256: Option<String>,
}

fn default_url() -> String {
    "http://127.0.0.1:8000".into()
}
fn default_model() -> String {
    "mint_cnn".into()
}
fn default_input() -> String {
    "maps".into()
}
fn default_output() -> String {
    "score".into()
}
fn default_timeout() -> u64 {
    5000
}
fn default_retries() -> u32 {
    3
}
fn default_backoff() -> u64 {
    50
}
fn default_in_flight() -> usize {
    4
}
fn default_ready_timeout() -> u64 {
    10_000
}

impl TritonConfig {
    /// Parses and checks the configuration text.
    pub(crate) fn parse(json: &str) -> Result<TritonConfig, String> {
        let config: TritonConfig = serde_json::from_str(json).map_err(|e| format!("configuration: {e}"))?;
        if config.max_in_flight == 0 || config.timeout_ms == 0 {
            return Err("configuration: max_in_flight and timeout_ms must be at least 1".into());
        }
        Ok(config)
    }

    /// The model's URL under KServe v2 (`/v2/models/NAME[/versions/V]`).
    pub(crate) fn model_url(&self) -> String {
        let base = self.url.trim_end_matches('/');
        match self.version.as_str() {
            "" => format!("{base}/v2/models/{}", self.model),
            v => format!("{base}/v2/models/{}/versions/{v}", self.model),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_zero_limits_are_refused() {
        assert!(TritonConfig::parse(r#"{"urll": "x"}"#).is_err());
        assert!(TritonConfig::parse(r#"{"max_in_flight": 0}"#).unwrap_err().contains("max_in_flight"));
        let c = TritonConfig::parse(r#"{"url": "http://h:1/", "version": "2"}"#).unwrap();
        assert_eq!(c.model_url(), "http://h:1/v2/models/mint_cnn/versions/2");
    }
}
