//! The KServe v2 `infer` messages with the binary tensor extension: a JSON header, then the
//! raw tensors, little-endian. Every offset and size read from a response is checked.

use crate::config::TritonConfig;

/// The largest response accepted, in bytes.
pub(crate) const MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// The request body for a batch of `n` maps of `shape`, and the length of its JSON header.
pub(crate) fn request_body(config: &TritonConfig, shape: [usize; 3], maps: &[f32], n: usize) -> (Vec<u8>, usize) {
    let bytes = std::mem::size_of_val(maps);
    let header = serde_json::json!({
        "inputs": [{
            "name": config.input,
            "shape": [n, shape[0], shape[1], shape[2]],
            "datatype": "FP32",
            "parameters": {"binary_data_size": bytes},
        }],
        "outputs": [{"name": config.output, "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut body = Vec::with_capacity(header.len() + bytes);
    body.extend_from_slice(header.as_bytes());
    for x in maps {
        body.extend_from_slice(&x.to_le_bytes());
    }
    (body, header.len())
}

/// The scores of an `infer` response, binary or JSON, as probabilities; `header_len` is the
/// `Inference-Header-Content-Length` the server sent, if any.
pub(crate) fn parse_scores(
    body: &[u8],
    header_len: Option<usize>,
    config: &TritonConfig,
    n: usize,
) -> Result<Vec<f32>, String> {
    let json_len = header_len.unwrap_or(body.len());
    let header = body.get(..json_len).ok_or("the response is shorter than its header length")?;
    let header: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| format!("the response header is not JSON: {e}"))?;
    let outputs = header["outputs"].as_array().ok_or("the response has no outputs")?;
    // Binary outputs follow the header in the order the header lists them.
    let mut offset = json_len;
    let mut scores = None;
    for o in outputs {
        let size = match o["parameters"]["binary_data_size"].as_u64() {
            Some(size) => Some(usize::try_from(size).map_err(|_| "a binary_data_size is out of range")?),
            None => None,
        };
        let end = offset.checked_add(size.unwrap_or(0)).ok_or("a binary_data_size is out of range")?;
        if o["name"] == config.output.as_str() {
            if o["datatype"] != "FP32" {
                return Err(format!("output '{}' is {}, not FP32", config.output, o["datatype"]));
            }
            scores = Some(match size {
                Some(_) => {
                    let bytes = body.get(offset..end).ok_or("the binary output is truncated")?;
                    if bytes.len() % 4 != 0 {
                        return Err("the binary output is not a whole number of FP32 values".into());
                    }
                    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect::<Vec<f32>>()
                }
                None => o["data"]
                    .as_array()
                    .ok_or("the output has no data")?
                    .iter()
                    .map(|v| v.as_f64().map(|x| x as f32).ok_or("non-numeric score"))
                    .collect::<Result<Vec<f32>, _>>()?,
            });
        }
        offset = end;
    }
    let mut scores = scores.ok_or_else(|| format!("the response has no output '{}'", config.output))?;
    if scores.len() != n {
        return Err(format!("{} scores for {n} samples", scores.len()));
    }
    for s in &mut scores {
        *s = config.output_kind.to_probability(*s);
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mint_backend_abi::score::ScoreOutput;

    fn config(kind: ScoreOutput) -> TritonConfig {
        let mut c = TritonConfig::parse("{}").unwrap();
        c.output_kind = kind;
        c
    }

    fn binary(header: &str, values: &[f32]) -> Vec<u8> {
        let mut body = header.as_bytes().to_vec();
        for v in values {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body
    }

    #[test]
    fn binary_and_json_responses_parse() {
        let c = config(ScoreOutput::Probability);
        let header = r#"{"model_name":"m","outputs":[{"name":"score","datatype":"FP32","shape":[2,1],"parameters":{"binary_data_size":8}}]}"#;
        let body = binary(header, &[0.25, 0.75]);
        assert_eq!(parse_scores(&body, Some(header.len()), &c, 2).unwrap(), vec![0.25, 0.75]);
        let json = r#"{"outputs":[{"name":"other","datatype":"FP32","shape":[1],"data":[9]},{"name":"score","datatype":"FP32","shape":[2,1],"data":[0.5,0.125]}]}"#;
        assert_eq!(parse_scores(json.as_bytes(), None, &c, 2).unwrap(), vec![0.5, 0.125]);
        assert!(parse_scores(json.as_bytes(), None, &c, 3).unwrap_err().contains("2 scores for 3"));
        let logits = config(ScoreOutput::Logit);
        let s = parse_scores(
            r#"{"outputs":[{"name":"score","datatype":"FP32","data":[0.0]}]}"#.as_bytes(),
            None,
            &logits,
            1,
        );
        assert_eq!(s.unwrap(), vec![0.5]);
    }

    #[test]
    fn binary_outputs_after_another_are_found_at_their_offset() {
        let c = config(ScoreOutput::Probability);
        let header = r#"{"outputs":[{"name":"x","datatype":"FP32","parameters":{"binary_data_size":4}},{"name":"score","datatype":"FP32","parameters":{"binary_data_size":4}}]}"#;
        let body = binary(header, &[9.0, 0.5]);
        assert_eq!(parse_scores(&body, Some(header.len()), &c, 1).unwrap(), vec![0.5]);
    }

    #[test]
    fn malformed_responses_are_errors_not_panics() {
        let c = config(ScoreOutput::Probability);
        // A size near 2^64 must not wrap the offset.
        let header = r#"{"outputs":[{"name":"x","datatype":"FP32","parameters":{"binary_data_size":18446744073709551615}},{"name":"score","datatype":"FP32","parameters":{"binary_data_size":4}}]}"#;
        let body = binary(header, &[0.5]);
        assert!(parse_scores(&body, Some(header.len()), &c, 1).is_err());
        // Truncated binary data, a header length past the body, a ragged FP32 buffer.
        let header = r#"{"outputs":[{"name":"score","datatype":"FP32","parameters":{"binary_data_size":8}}]}"#;
        let body = binary(header, &[0.5]);
        assert!(parse_scores(&body, Some(header.len()), &c, 2).unwrap_err().contains("truncated"));
        assert!(parse_scores(&body, Some(body.len() + 1), &c, 1).is_err());
        let header = r#"{"outputs":[{"name":"score","datatype":"FP32","parameters":{"binary_data_size":3}}]}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0]);
        assert!(parse_scores(&body, Some(header.len()), &c, 0).is_err());
        // Not JSON, the wrong type, no such output.
        assert!(parse_scores(b"\xff{", None, &c, 1).is_err());
        let int = r#"{"outputs":[{"name":"score","datatype":"INT32","data":[1]}]}"#;
        assert!(parse_scores(int.as_bytes(), None, &c, 1).unwrap_err().contains("not FP32"));
        assert!(parse_scores(br#"{"outputs":[]}"#, None, &c, 1).unwrap_err().contains("no output 'score'"));
    }

    #[test]
    fn requests_carry_the_binary_maps_after_the_header() {
        let c = config(ScoreOutput::Probability);
        let (body, header_len) = request_body(&c, [1, 2, 1], &[1.0, 2.0, 3.0, 4.0], 2);
        let header: serde_json::Value = serde_json::from_slice(&body[..header_len]).unwrap();
        assert_eq!(header["inputs"][0]["shape"], serde_json::json!([2, 1, 2, 1]));
        assert_eq!(header["inputs"][0]["parameters"]["binary_data_size"], 16);
        assert_eq!(header["outputs"][0]["name"], "score");
        assert_eq!(&body[header_len..header_len + 4], &1.0f32.to_le_bytes());
        assert_eq!(&body[header_len + 12..], &4.0f32.to_le_bytes());
        assert_eq!(body.len(), header_len + 16);
    }
}
