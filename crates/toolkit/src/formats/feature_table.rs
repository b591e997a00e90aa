//! Per-sample membership features as JSON Lines, one object per sample: what
//! `mint dataset-inference` reads (docs/formats.md, "Per-sample feature tables"; schema
//! docs/schemas/feature_table_row.schema.json). Each line is `{"id": "...", "loss": 2.31,
//! "min_k:0.2": -5.1, ...}`: an optional string `id`, and every other field a number, the same
//! names on every line. Any tool can write one (the membership-inference scores an owner
//! already computes), and `research/mint_research/lm_dataset_inference.py` writes them from the
//! library's own features.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The largest table read: far beyond a data owner's texts, well within memory.
pub const MAX_BYTES: u64 = 1 << 30;

/// One line of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeatureRow {
    /// What the sample is, for the reader (not used by the tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The features, by name.
    #[serde(flatten)]
    pub features: BTreeMap<String, f64>,
}

/// A table in memory: its feature names (sorted), and a row of values per sample in that order.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTable {
    pub names: Vec<String>,
    pub ids: Vec<Option<String>>,
    pub rows: Vec<Vec<f64>>,
}

impl FeatureTable {
    /// Reads a table, with errors that name the file and line.
    pub fn read(path: &Path) -> Result<FeatureTable> {
        let size = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?.len();
        ensure!(
            size <= MAX_BYTES,
            "{}: {size} bytes, more than the {MAX_BYTES} a feature table may have",
            path.display()
        );
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        FeatureTable::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// Parses the lines of a table (blank lines are skipped).
    pub fn parse(text: &str) -> Result<FeatureTable> {
        let mut table = FeatureTable { names: Vec::new(), ids: Vec::new(), rows: Vec::new() };
        for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let row: FeatureRow = serde_json::from_str(line)
                .with_context(|| format!("line {}: not an object of an optional string id and numbers", number + 1))?;
            let names: Vec<&String> = row.features.keys().collect();
            if table.rows.is_empty() {
                ensure!(!names.is_empty(), "line {}: no features", number + 1);
                table.names = names.into_iter().cloned().collect();
            } else if names.iter().map(|s| s.as_str()).ne(table.names.iter().map(|s| s.as_str())) {
                bail!("line {}: features {names:?}, where the first line has {:?}", number + 1, table.names);
            }
            if let Some((name, _)) = row.features.iter().find(|(_, v)| !v.is_finite()) {
                bail!("line {}: {name} is not a finite number", number + 1);
            }
            table.ids.push(row.id);
            table.rows.push(row.features.into_values().collect());
        }
        ensure!(!table.rows.is_empty(), "no rows");
        Ok(table)
    }

    /// Writes the table as JSON Lines.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("{}", path.display()))?);
        for (id, row) in self.ids.iter().zip(&self.rows) {
            let features = self.names.iter().cloned().zip(row.iter().copied()).collect();
            serde_json::to_writer(&mut out, &FeatureRow { id: id.clone(), features })?;
            out.write_all(b"\n")?;
        }
        out.flush().with_context(|| format!("{}", path.display()))
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The position of feature `name`, or an error listing those there are.
    pub fn position(&self, name: &str) -> Result<usize> {
        self.names
            .iter()
            .position(|n| n == name)
            .with_context(|| format!("no feature '{name}' (there are {:?})", self.names))
    }

    /// Every row's values of the features `names`, in that order, or an error naming the one
    /// missing.
    pub fn rows_on(&self, names: &[String]) -> Result<Vec<Vec<f64>>> {
        let at: Vec<usize> = names.iter().map(|n| self.position(n)).collect::<Result<_>>()?;
        Ok(self.rows.iter().map(|r| at.iter().map(|&j| r[j]).collect()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes_and_names_bad_lines() {
        let text = "{\"id\": \"a\", \"loss\": 2.5, \"zlib\": 0.1}\n\n{\"zlib\": 0.3, \"loss\": 1.0}\n";
        let table = FeatureTable::parse(text).unwrap();
        assert_eq!(table.names, ["loss", "zlib"]);
        assert_eq!(table.rows, [vec![2.5, 0.1], vec![1.0, 0.3]]);
        assert_eq!(table.ids, [Some("a".to_string()), None]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        table.write(&path).unwrap();
        assert_eq!(FeatureTable::read(&path).unwrap(), table);
        for (text, says) in [
            ("{\"loss\": 1}\n{\"zlib\": 2}", "line 2: features [\"zlib\"]"),
            ("{\"loss\": \"high\"}", "line 1"),
            ("{\"id\": \"a\"}", "line 1: no features"),
            ("", "no rows"),
            ("[1, 2]", "line 1"),
        ] {
            let error = format!("{:#}", FeatureTable::parse(text).unwrap_err());
            assert!(error.contains(says), "{text}: {error}");
        }
        assert!(format!("{:#}", table.position("min_k").unwrap_err()).contains("\"loss\", \"zlib\""));
        assert_eq!(table.rows_on(&["zlib".to_string()]).unwrap(), [vec![0.1], vec![0.3]]);
        assert!(table.rows_on(&["loss".to_string(), "min_k".to_string()]).is_err());
        // A table larger than MAX_BYTES is refused before it is read (a sparse file).
        let big = dir.path().join("big.jsonl");
        std::fs::File::create(&big).unwrap().set_len(MAX_BYTES + 1).unwrap();
        assert!(format!("{:#}", FeatureTable::read(&big).unwrap_err()).contains("more than the"));
    }
}
