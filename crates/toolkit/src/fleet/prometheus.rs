//! The Prometheus HTTP API, as the fleet command reads it: range and instant queries against
//! one Prometheus, a federation, Thanos, Mimir or Cortex (they answer the same API), with a
//! deadline that does not depend on the server, a bounded answer, and errors that say which
//! query failed and why.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Largest answer read, in bytes.
const MAX_ANSWER: u64 = 256 << 20;

/// One series of a range query: its labels and its `(time, value)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

/// Where the series are and how to ask.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<RawSeries>,
}

#[derive(Deserialize)]
struct RawSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

impl Client {
    /// A client of the Prometheus API at `base` (`http://host:9090`), with a bearer token when
    /// given, and `timeout` for each query as a whole.
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> Client {
        let agent = ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build();
        Client { base: base.trim_end_matches('/').to_string(), token, agent: agent.into() }
    }

    fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Vec<RawSeries>> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.get(&url);
        for (k, v) in params {
            request = request.query(k, v);
        }
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let response = request.call().with_context(|| format!("asking {url}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .with_context(|| format!("reading the answer of {url} (at most {MAX_ANSWER} bytes)"))?;
        let answer: Answer = serde_json::from_str(&body).with_context(|| {
            let start: String = body.chars().take(200).collect();
            format!("{url} answered HTTP {status} with something that is not the Prometheus API's JSON: {start:?}")
        })?;
        if answer.status != "success" {
            bail!(
                "{url} answered {}: {} ({})",
                answer.status,
                answer.error.unwrap_or_default(),
                answer.error_type.unwrap_or_default()
            );
        }
        let data = answer.data.with_context(|| format!("{url} answered success without data"))?;
        let expected = if path.ends_with("query_range") { "matrix" } else { "vector" };
        if data.result_type != expected {
            bail!("{url} answered a {} where a {expected} was asked for", data.result_type);
        }
        Ok(data.result)
    }

    /// A range query at `step` seconds from `start` to `end` (Unix seconds).
    pub fn range(&self, query: &str, start: f64, end: f64, step: f64) -> Result<Vec<Series>> {
        let params = [
            ("query", query.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{step}")),
        ];
        let raw = self.get("/api/v1/query_range", &params).with_context(|| format!("query_range {query}"))?;
        raw.into_iter()
            .map(|s| {
                let points = s
                    .values
                    .into_iter()
                    .map(|(t, v)| parse_value(&v).map(|v| (t, v)))
                    .collect::<Result<Vec<_>>>()
                    .with_context(|| format!("query_range {query}: series {:?}", s.metric))?;
                Ok(Series { labels: s.metric, points })
            })
            .collect()
    }

    /// An instant query at `time` (Unix seconds): each series' labels and value.
    pub fn instant(&self, query: &str, time: f64) -> Result<Vec<(BTreeMap<String, String>, f64)>> {
        let raw = self
            .get("/api/v1/query", &[("query", query.to_string()), ("time", format!("{time:.3}"))])
            .with_context(|| format!("query {query}"))?;
        raw.into_iter()
            .map(|s| {
                let (_, v) = s.value.with_context(|| format!("query {query}: a series without a value"))?;
                Ok((s.metric, parse_value(&v).with_context(|| format!("query {query}"))?))
            })
            .collect()
    }
}

/// A sample value as the API writes it (`"1.5"`, `"NaN"`, `"+Inf"`).
fn parse_value(v: &str) -> Result<f64> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => v.parse().with_context(|| format!("{v:?} is not a sample value")),
    }
}
