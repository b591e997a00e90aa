//! Split files: named data sources and, per protocol, which of their samples train the head
//! and which evaluate it, as members and non-members (docs/formats.md, docs/schemas/split.schema.json).
//! Read with errors that name the field; index lists inline or in NPY/NPZ files; a source may
//! pin its files' sha256. `mint split` makes one: balanced, seeded and hash-pinned.
//! One type ([`Split`]) for the format, which readers share.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::data::{self, Images};

/// The split format this version writes; older files (without `format`) read the same.
pub const SPLIT_VERSION: u64 = 1;

/// A split file (docs/formats.md, schema docs/schemas/split.schema.json): written by
/// `mint split` ([`Split::new`], [`Split::write`]), read by every command that takes `--split`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Split {
    /// `"mint-split"` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    pub sources: BTreeMap<String, Source>,
    pub protocols: BTreeMap<String, Protocol>,
    /// Informative: the command and options that made the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made_by: Option<serde_json::Value>,
    #[serde(skip)]
    base: PathBuf,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub images: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    /// sha256 of the images file (and of the labels file), checked before they are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_sha256: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    pub description: String,
    pub head_train: Phase,
    pub eval: Phase,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub members: Subset,
    pub non_members: Subset,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Subset {
    pub source: String,
    #[serde(rename = "indices")]
    spec: Indices,
    /// The positions in the source, resolved at load.
    #[serde(skip)]
    pub indices: Vec<usize>,
    /// Where it is in the file (`protocols.P.eval.members`), for errors.
    #[serde(skip)]
    field: String,
}

/// An index list inline, or the path of an NPY file (`.npy`) or of one array of an NPZ archive
/// (`file.npz:key`, or `file.npz` holding one array), relative to the split file.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
enum Indices {
    List(Vec<usize>),
    File(String),
}

/// One side of a balanced split: its samples and, optionally, their class labels.
#[derive(Debug, Clone)]
pub struct Side {
    pub images: PathBuf,
    pub labels: Option<PathBuf>,
}

/// What [`Split::balanced`] draws from.
#[derive(Debug, Clone)]
pub struct Balanced {
    pub members: Side,
    pub non_members: Side,
    /// Samples of each class per phase (default: as many as the smaller source allows).
    pub per_phase: Option<usize>,
    pub protocol: String,
    pub description: String,
    pub seed: u64,
    /// The folder the split file is written in: paths are written relative to it.
    pub base: PathBuf,
}

impl Subset {
    /// The samples at `indices` of `source`, listed inline.
    pub fn listed(source: &str, indices: Vec<usize>) -> Subset {
        Subset { source: source.into(), spec: Indices::List(indices.clone()), indices, field: String::new() }
    }
}

impl Split {
    /// A split of the current format and version.
    pub fn new(
        sources: BTreeMap<String, Source>,
        protocols: BTreeMap<String, Protocol>,
        made_by: Option<serde_json::Value>,
    ) -> Split {
        Split {
            format: Some("mint-split".into()),
            version: Some(SPLIT_VERSION),
            sources,
            protocols,
            made_by,
            base: PathBuf::new(),
        }
    }

    /// A balanced, seeded split of one member source and one non-member source, pinned by
    /// sha256: `per_phase` of each in `head_train` and as many others in `eval` (default: as
    /// many as the smaller source allows).
    pub fn balanced(how: &Balanced) -> Result<Split> {
        let mut sources = BTreeMap::new();
        let mut counts = Vec::new();
        for (name, side, flag) in
            [("members", &how.members, "--members"), ("non_members", &how.non_members, "--non-members")]
        {
            let n = data::count(&side.images).with_context(|| flag.to_string())?;
            let mut source = Source {
                images: crate::paths::relative_to(&side.images, &how.base),
                labels: None,
                sha256: Some(sha256_of(&side.images)?),
                labels_sha256: None,
            };
            if let Some(labels) = &side.labels {
                data::load_labels(labels, n).with_context(|| format!("{flag}-labels"))?;
                source.labels = Some(crate::paths::relative_to(labels, &how.base));
                source.labels_sha256 = Some(sha256_of(labels)?);
            }
            sources.insert(name.to_string(), source);
            counts.push(n);
        }
        let available = counts[0].min(counts[1]) / 2;
        let per_phase = how.per_phase.unwrap_or(available);
        ensure!(
            per_phase >= 1 && per_phase <= available,
            "--per-phase {per_phase}: the smaller source ({} samples) allows 1 to {available} per phase (two disjoint phases)",
            counts[0].min(counts[1])
        );
        let draw = |n: usize, salt: u64| {
            let mut order: Vec<usize> = (0..n).collect();
            crate::roc::SplitMix::new(how.seed ^ salt).shuffle(&mut order);
            let (mut train, mut eval) = (order[..per_phase].to_vec(), order[per_phase..2 * per_phase].to_vec());
            train.sort_unstable();
            eval.sort_unstable();
            (train, eval)
        };
        let (m_train, m_eval) = draw(counts[0], 0x6d65_6d62);
        let (n_train, n_eval) = draw(counts[1], 0x6e6f_6e6d);
        let phase = |m: Vec<usize>, n: Vec<usize>| Phase {
            members: Subset::listed("members", m),
            non_members: Subset::listed("non_members", n),
        };
        let protocol = Protocol {
            description: how.description.clone(),
            head_train: phase(m_train, n_train),
            eval: phase(m_eval, n_eval),
        };
        Ok(Split::new(
            sources,
            [(how.protocol.clone(), protocol)].into(),
            Some(json!({"command": "mint split", "seed": how.seed, "per_phase": per_phase})),
        ))
    }

    /// Writes the split and reads it back with every check a reader makes.
    pub fn write(&self, path: &Path) -> Result<Split> {
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        Split::load(path)
    }

    pub fn load(path: &Path) -> Result<Split> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut split: Split = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text))
            .map_err(|e| {
                let field = e.path().to_string();
                let hint = if field.ends_with("indices") {
                    ": expected a list of sample positions (integers from 0) or the path of a .npy/.npz file of them"
                } else {
                    ""
                };
                anyhow::anyhow!("{}: {field}: {}{hint} (the format: docs/formats.md)", path.display(), e.inner())
            })?;
        split.base = path.parent().unwrap_or(Path::new(".")).to_owned();
        split.check().with_context(|| format!("{} (the format: docs/formats.md)", path.display()))?;
        Ok(split)
    }

    /// Checks what serde cannot: the format's name and version, every subset's source, and
    /// every index file (read now, so that a bad one fails before any model runs).
    fn check(&mut self) -> Result<()> {
        if let Some(format) = &self.format {
            ensure!(format == "mint-split", "format: '{format}' is not \"mint-split\"");
        }
        if let Some(v) = self.version {
            ensure!(v <= SPLIT_VERSION, "version: {v} is newer than this mint reads ({SPLIT_VERSION})");
        }
        ensure!(!self.protocols.is_empty(), "protocols: none given");
        let base = self.base.clone();
        let sources: Vec<String> = self.sources.keys().cloned().collect();
        for (name, protocol) in &mut self.protocols {
            for (phase_name, phase) in [("head_train", &mut protocol.head_train), ("eval", &mut protocol.eval)] {
                for (class, subset) in [("members", &mut phase.members), ("non_members", &mut phase.non_members)] {
                    subset.field = format!("protocols.{name}.{phase_name}.{class}");
                    ensure!(
                        sources.contains(&subset.source),
                        "{}.source: no source is named '{}' (sources: {})",
                        subset.field,
                        subset.source,
                        sources.join(", ")
                    );
                    subset.indices = match &subset.spec {
                        Indices::List(list) => list.clone(),
                        Indices::File(spec) => {
                            read_indices(&base, spec).with_context(|| format!("{}.indices: '{spec}'", subset.field))?
                        }
                    };
                }
            }
        }
        Ok(())
    }

    pub fn protocol(&self, name: &str) -> Result<&Protocol> {
        self.protocols.get(name).with_context(|| {
            let names: Vec<&String> = self.protocols.keys().collect();
            format!("no protocol '{name}' in the split file (it has {names:?})")
        })
    }

    /// A source's file path: `$VAR/...` expands environment variables with the defaults the
    /// split file gives (`${MINT_FASHION_MNIST:-/usr/share/...}`); relative paths are relative
    /// to the split file.
    fn resolve(&self, spec: &str) -> PathBuf {
        let p = PathBuf::from(expand_env(spec));
        if p.is_relative() {
            self.base.join(p)
        } else {
            p
        }
    }

    /// The eval members and non-members of protocol `name`, and a note of where they come
    /// from for a report.
    pub fn load_eval(&self, name: &str, input: [usize; 3]) -> Result<(Images, Images, serde_json::Value)> {
        let protocol = self.protocol(name)?;
        let mut cache = SourceCache::default();
        let members = self.load_subset(&protocol.eval.members, input, &mut cache)?;
        let non_members = self.load_subset(&protocol.eval.non_members, input, &mut cache)?;
        let note = json!({"protocol": name, "description": protocol.description,
            "members_source": protocol.eval.members.source, "non_members_source": protocol.eval.non_members.source});
        Ok((members, non_members, note))
    }

    /// Loads the samples of a subset, with labels when the source has them.
    pub fn load_subset(&self, subset: &Subset, input: [usize; 3], cache: &mut SourceCache) -> Result<Images> {
        let key = subset.source.clone();
        if !cache.0.contains_key(&key) {
            let source = &self.sources[&key];
            let field = format!("sources.{key}");
            let images_path = self.resolve(&source.images);
            check_digest(&images_path, source.sha256.as_deref()).with_context(|| format!("{field}.sha256"))?;
            let mut images = data::load(&images_path, input).with_context(|| format!("{field}.images"))?;
            if let Some(labels) = &source.labels {
                let path = self.resolve(labels);
                check_digest(&path, source.labels_sha256.as_deref())
                    .with_context(|| format!("{field}.labels_sha256"))?;
                images.labels =
                    Some(data::load_labels(&path, images.len()).with_context(|| format!("{field}.labels"))?);
            }
            cache.0.insert(key.clone(), images);
        }
        cache.0[&key].subset(&subset.indices).with_context(|| format!("{}.indices (source '{key}')", subset.field))
    }
}

/// Sources already read, so that one file feeds several subsets.
#[derive(Default)]
pub struct SourceCache(HashMap<String, Images>);

/// Reads an index list from `file.npy`, `file.npz:key`, or `file.npz` holding one array.
fn read_indices(base: &Path, spec: &str) -> Result<Vec<usize>> {
    let (file, key) = match spec.rsplit_once(".npz:") {
        Some((stem, key)) => (format!("{stem}.npz"), Some(key)),
        None => (spec.to_string(), None),
    };
    let path = base.join(expand_env(&file));
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let npy = if file.ends_with(".npz") {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .with_context(|| format!("{}: not an NPZ (zip) archive", path.display()))?;
        let names: Vec<String> =
            archive.file_names().filter_map(Result::ok).map(|n| n.trim_end_matches(".npy").to_string()).collect();
        let name = match key {
            Some(k) => k.to_string(),
            None if names.len() == 1 => names[0].clone(),
            None => bail!("{} holds {names:?}: name one as {file}:KEY", path.display()),
        };
        let mut entry = archive
            .by_name(&format!("{name}.npy"))
            .with_context(|| format!("{} has no array '{name}' (it has {names:?})", path.display()))?;
        let mut out = Vec::new();
        entry.read_to_end(&mut out)?;
        out
    } else {
        ensure!(file.ends_with(".npy"), "an index file is .npy or .npz");
        bytes
    };
    let array = npyz::NpyFile::new(&npy[..]).with_context(|| format!("{}: not an NPY array", path.display()))?;
    let wide = data::npy_integers(array, &path)?;
    wide.iter()
        .enumerate()
        .map(|(i, &v)| {
            usize::try_from(v).map_err(|_| anyhow::anyhow!("{}: entry {i} is {v}, not a position", path.display()))
        })
        .collect()
}

/// The sha256 of a file, in hex.
pub fn sha256_of(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut digest = Sha256::new();
    std::io::copy(&mut file, &mut digest).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", digest.finalize()))
}

fn check_digest(path: &Path, expected: Option<&str>) -> Result<()> {
    let Some(expected) = expected else { return Ok(()) };
    let actual = sha256_of(path)?;
    ensure!(
        actual.eq_ignore_ascii_case(expected),
        "{} has sha256 {actual}, but the split expects {expected}: not the file the split was made from",
        path.display()
    );
    Ok(())
}

/// Expands `${NAME:-default}` and `${NAME}`.
fn expand_env(spec: &str) -> String {
    let mut out = String::new();
    let mut rest = spec;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &rest[start + 2..start + end];
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        out.push_str(&std::env::var(name).unwrap_or_else(|_| default.to_string()));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion_uses_defaults() {
        std::env::remove_var("MINT_TEST_UNSET");
        assert_eq!(expand_env("${MINT_TEST_UNSET:-/usr/share}/x.gz"), "/usr/share/x.gz");
        assert_eq!(expand_env("plain/path"), "plain/path");
    }
}
