//! An append-only log of signed statements (JSON Lines, one DSSE envelope per line). Each
//! statement's predicate carries a [`Link`]: the log's id, its sequence number and the sha256
//! of the previous statement, all under the signature. A verifier walking the log detects an
//! edited entry (its signature fails), a deleted or reordered one (a sequence number or a
//! previous digest does not match) and a spliced one (another log's id). Deleting the newest
//! entries leaves a shorter valid log: a regulator compares the last sequence number with the
//! one they saw before (`mint verify --expect-entries`).

use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::envelope::{self, Opened, Trust, MAX_ENVELOPE_BYTES};
use super::key::OperatorKey;
use super::statement::Statement;

/// Where a statement sits in its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Link {
    /// The log's id: 32 hex digits drawn when its first entry was written.
    pub log: String,
    /// 0 for the first entry, then one more for each.
    pub sequence: u64,
    /// sha256 (hex) of the previous entry's signed payload; absent for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// Appends one signed statement to the log at `path` (created if missing). `make` builds the
/// statement from its link; its predicate must carry the link as `chain`. The log's last entry
/// must verify under `key`: a log is extended only by the key that wrote it.
pub fn append<P: Serialize>(path: &Path, key: &OperatorKey, make: impl FnOnce(Link) -> Statement<P>) -> Result<Link> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("opening the log {}", path.display()))?;
    let link = match last_line(&mut file).with_context(|| format!("reading the log {}", path.display()))? {
        None => Link { log: random_id()?, sequence: 0, previous: None },
        Some(line) => {
            let last = envelope::open(&envelope::parse(&line)?, &Trust::Key(key.public()))
                .with_context(|| format!("{}: its last entry does not verify under this key", path.display()))?;
            let link = link_of(&last)?;
            Link { log: link.log, sequence: link.sequence + 1, previous: Some(last.payload_sha256) }
        }
    };
    let statement = make(link.clone());
    let envelope = envelope::seal(&statement, key)?;
    let mut line = serde_json::to_vec(&envelope)?;
    line.push(b'\n');
    // One write of the whole line, in append mode: a reader never sees half an entry from us.
    file.write_all(&line).with_context(|| format!("appending to {}", path.display()))?;
    file.sync_data().with_context(|| format!("syncing {}", path.display()))?;
    Ok(link)
}

/// A log that verified: its entries in order.
pub struct VerifiedLog {
    pub log: String,
    pub entries: Vec<Opened>,
}

/// Verifies every entry of the log at `path` and the chain between them.
pub fn verify(path: &Path, trust: &Trust) -> Result<VerifiedLog> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut entries: Vec<Opened> = Vec::new();
    let mut log = String::new();
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = (&mut reader).take(MAX_ENVELOPE_BYTES + 1).read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        ensure!(
            line.last() == Some(&b'\n') || (read as u64) <= MAX_ENVELOPE_BYTES,
            "{} line {number}: longer than an entry may be",
            path.display()
        );
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let at = || format!("{} line {number}", path.display());
        let opened = envelope::open(&envelope::parse(&line).with_context(at)?, trust).with_context(at)?;
        let link = link_of(&opened).with_context(at)?;
        let expected = entries.len() as u64;
        match entries.last() {
            None => {
                ensure!(
                    link.sequence == 0 && link.previous.is_none(),
                    "{}: the log does not start at sequence 0 (it starts at {}): its first entries were removed",
                    at(),
                    link.sequence
                );
                log = link.log.clone();
            }
            Some(previous) => {
                ensure!(link.log == log, "{}: an entry of another log ({}) was spliced into log {log}", at(), link.log);
                ensure!(
                    link.sequence == expected,
                    "{}: sequence {} where {expected} was due: entries were removed or reordered",
                    at(),
                    link.sequence
                );
                ensure!(
                    link.previous.as_deref() == Some(previous.payload_sha256.as_str()),
                    "{}: it does not follow the entry before it (previous digest differs): entries were removed, reordered or replaced",
                    at()
                );
            }
        }
        entries.push(opened);
    }
    if entries.is_empty() {
        bail!("{}: the log holds no entry", path.display());
    }
    Ok(VerifiedLog { log, entries })
}

/// The link a statement's predicate carries as `chain`.
pub fn link_of(opened: &Opened) -> Result<Link> {
    match opened.statement.predicate.get("chain") {
        Some(chain) if !chain.is_null() => {
            serde_json::from_value(chain.clone()).context("predicate.chain is not a log link")
        }
        _ => bail!("the statement is not an entry of a log (no predicate.chain)"),
    }
}

/// Whether a signed statement is an entry of a log.
pub fn is_entry(statement: &Statement<Value>) -> bool {
    statement.predicate.get("chain").is_some_and(|c| !c.is_null())
}

/// The last non-empty line of a file, read backwards, within [`MAX_ENVELOPE_BYTES`].
fn last_line(file: &mut std::fs::File) -> Result<Option<Vec<u8>>> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut tail = Vec::new();
    let mut at = len;
    const CHUNK: u64 = 64 * 1024;
    loop {
        let trimmed = tail.iter().rposition(|b: &u8| !b.is_ascii_whitespace());
        if let Some(end) = trimmed {
            if let Some(start) = tail[..end].iter().rposition(|&b| b == b'\n') {
                return Ok(Some(tail[start + 1..=end].to_vec()));
            }
        }
        if at == 0 {
            return Ok(trimmed.map(|end| tail[..=end].to_vec()));
        }
        ensure!(len - at <= MAX_ENVELOPE_BYTES, "its last entry is longer than an entry may be");
        let step = CHUNK.min(at);
        at -= step;
        file.seek(SeekFrom::Start(at))?;
        let mut chunk = vec![0u8; step as usize];
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
    }
}

fn random_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the system's random source failed: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statement::{Signer, Subject};
    use serde_json::json;

    fn entry(key: &OperatorKey, n: u64) -> impl FnOnce(Link) -> Statement<Value> + '_ {
        move |link| {
            Statement::new(
                vec![Subject::sha256("fleet", "00")],
                "https://example/log",
                json!({"signer": Signer::of(&key.public()), "chain": link, "n": n}),
            )
        }
    }

    fn write_log(path: &Path, key: &OperatorKey, n: u64) {
        for i in 0..n {
            assert_eq!(append(path, key, entry(key, i)).unwrap().sequence, i);
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path).unwrap().lines().map(String::from).collect()
    }

    #[test]
    fn a_log_verifies_and_each_kind_of_tampering_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = OperatorKey::generate().unwrap();
        let path = dir.path().join("log.jsonl");
        write_log(&path, &key, 4);
        let log = verify(&path, &Trust::Key(key.public())).unwrap();
        assert_eq!(log.entries.len(), 4);
        assert_eq!(log.entries[3].statement.predicate["n"], json!(3));

        let original = lines(&path);
        let check = |lines: &[String], needle: &str| {
            let bad = dir.path().join("bad.jsonl");
            std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
            let err = format!("{:#}", verify(&bad, &Trust::Key(key.public())).err().unwrap());
            assert!(err.contains(needle), "{needle}: {err}");
        };
        // Deleted from the middle, reordered, deleted from the start.
        check(&[original[0].clone(), original[2].clone(), original[3].clone()], "were removed or reordered");
        check(
            &[original[0].clone(), original[2].clone(), original[1].clone(), original[3].clone()],
            "removed or reordered",
        );
        check(&original[1..], "does not start at sequence 0");
        // Edited.
        let mut edited = original.clone();
        edited[2] = edited[2].replacen("\"payload\":\"", "\"payload\":\"e30", 1);
        check(&edited, "line 3");
        // Another log's entry in place of one of ours, signed by the same key.
        let other = dir.path().join("other.jsonl");
        write_log(&other, &key, 3);
        let mut spliced = original.clone();
        spliced[2] = lines(&other)[2].clone();
        check(&spliced, "another log");
        // Another key.
        let stranger = OperatorKey::generate().unwrap();
        let err = verify(&path, &Trust::Key(stranger.public())).err().unwrap();
        assert!(format!("{err:#}").contains("does not verify"), "{err:#}");
        // Only the key that wrote a log extends it.
        assert!(append(&path, &stranger, entry(&stranger, 9)).is_err());
        assert_eq!(lines(&path).len(), 4);
    }

    #[test]
    fn the_last_line_is_found_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let long = "x".repeat(200_000);
        std::fs::write(&path, format!("first\n{long}\n\n")).unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        assert_eq!(last_line(&mut file).unwrap().unwrap(), long.as_bytes());
        std::fs::write(&path, "only").unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        assert_eq!(last_line(&mut file).unwrap().unwrap(), b"only");
        std::fs::write(&path, "").unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        assert!(last_line(&mut file).unwrap().is_none());
    }
}
