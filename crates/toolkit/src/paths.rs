//! Paths written into files that name other files (split files, configurations, descriptors):
//! relative where that reads better.

use std::path::{Path, PathBuf};

/// `path` relative to `base` when both are in one tree, else absolute.
pub fn relative_to(path: &Path, base: &Path) -> String {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| std::env::current_dir().unwrap().join(p));
    let (p, b) = (abs(path), abs(base));
    let common = p.components().zip(b.components()).take_while(|(x, y)| x == y).count();
    // Sharing only the root is no shared tree: an absolute path reads better than ../../..
    if common <= 1 {
        return p.display().to_string();
    }
    let mut rel = PathBuf::new();
    for _ in b.components().skip(common) {
        rel.push("..");
    }
    for c in p.components().skip(common) {
        rel.push(c);
    }
    rel.display().to_string()
}
