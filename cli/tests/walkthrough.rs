//! docs/walkthrough.md, run as written: every `sh` block in order, in an empty folder, with the
//! `mint` under test first on the PATH; each must succeed and print what the `text` block after
//! it shows, numbers and digests aside (another CPU trains a slightly different model). With
//! `MINT_BLESS=1` the shown outputs are rewritten from this run instead.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A line with every number and digest replaced by `#`, trailing space dropped: `AUC 0.599`,
/// `p = 1.163e-5`, a sha256 and the `1` of `stage1` alike.
fn masked(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_alphanumeric() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // A token: letters and digits, with the dots and exponent signs of a number.
        let mut j = i;
        while j < chars.len() {
            let c = chars[j];
            let next_digit = chars.get(j + 1).is_some_and(char::is_ascii_digit);
            let exponent = matches!(c, '-' | '+') && j > i && chars[j - 1] == 'e' && chars[i].is_ascii_digit();
            if c.is_ascii_alphanumeric() || (c == '.' && next_digit) || (exponent && next_digit) {
                j += 1;
            } else {
                break;
            }
        }
        let token: String = chars[i..j].iter().collect();
        if token.starts_with(|c: char| c.is_ascii_digit())
            || (token.len() >= 16 && token.chars().all(|c| c.is_ascii_hexdigit()))
        {
            out.push('#');
        } else {
            let mut digits = false;
            for c in token.chars() {
                if c.is_ascii_digit() {
                    if !digits {
                        out.push('#');
                    }
                    digits = true;
                } else {
                    out.push(c);
                    digits = false;
                }
            }
        }
        i = j;
    }
    out.trim_end().to_string()
}

/// A block of the page: its fence's language, its first line's index and its text.
struct Block {
    lang: String,
    start: usize,
    end: usize,
    text: String,
}

fn blocks(lines: &[&str]) -> Vec<Block> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some(lang) = lines[i].strip_prefix("```").filter(|l| !l.is_empty()) {
            let start = i;
            let mut j = i + 1;
            while j < lines.len() && lines[j] != "```" {
                j += 1;
            }
            found.push(Block { lang: lang.to_string(), start, end: j, text: lines[i + 1..j].join("\n") });
            i = j;
        }
        i += 1;
    }
    found
}

#[test]
fn the_walkthrough_runs_as_written() {
    let page = repo().join("docs/walkthrough.md");
    let doc = std::fs::read_to_string(&page).unwrap();
    let lines: Vec<&str> = doc.lines().collect();
    let work = repo().join("target/test-scratch/walkthrough");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_mint")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let bless = std::env::var_os("MINT_BLESS").is_some();

    let found = blocks(&lines);
    let mut replacements: Vec<(usize, usize, String)> = Vec::new();
    let mut ran = 0;
    for (k, block) in found.iter().enumerate().filter(|(_, b)| b.lang == "sh") {
        let run = Command::new("bash")
            .args(["-c", &format!("set -euo pipefail\n{{\n{}\n}} 2>&1", block.text)])
            .current_dir(&work)
            .env("PATH", &path)
            .env("REPO", repo())
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&run.stdout).into_owned();
        assert!(
            run.status.success(),
            "docs/walkthrough.md line {}: `{}` failed:\n{printed}",
            block.start + 1,
            block.text
        );
        ran += 1;
        let Some(shown) = found.get(k + 1).filter(|b| b.lang == "text") else { continue };
        if bless {
            replacements.push((shown.start, shown.end, printed.trim_end().to_string()));
            continue;
        }
        // What the page shows must be what ran, in order (numbers aside).
        let actual: Vec<String> = printed.lines().map(masked).collect();
        let mut at = 0;
        for line in shown.text.lines().map(masked) {
            match actual[at..].iter().position(|a| *a == line) {
                Some(p) => at += p + 1,
                None => panic!(
                    "docs/walkthrough.md line {}: the page shows\n  {line}\nwhich `{}` no longer prints; it printed:\n{printed}\n\
                     (MINT_BLESS=1 cargo test -p mint-cli --test walkthrough rewrites the page)",
                    shown.start + 1,
                    block.text
                ),
            }
        }
    }
    assert_eq!(ran, 7, "the page's seven steps");
    if bless {
        let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        for (start, end, text) in replacements.into_iter().rev() {
            out.splice(start + 1..end, text.lines().map(str::to_string));
        }
        std::fs::write(&page, out.join("\n") + "\n").unwrap();
    }

    // What the page says of the results holds on this run too.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("report/report.json")).unwrap()).unwrap();
    let auc = report["mint"]["auc"]["value"].as_f64().unwrap();
    assert!(auc > 0.55, "the head separates members, modestly: AUC {auc}");
    assert_eq!(report["distribution_shift"]["detected"], false);
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("case/report.json")).unwrap()).unwrap();
    assert_eq!(case["evidence"], true, "{case:#}");
}

#[test]
fn masking_keeps_words_and_drops_values() {
    assert_eq!(masked("  MINT head   AUC 0.599 [0.551, 0.645]  "), "  MINT head   AUC # [#, #]");
    assert_eq!(masked("p = 1.163e-5 -> EVIDENCE"), "p = # -> EVIDENCE");
    assert_eq!(masked("69aae8409437d68a  head.onnx"), "#  head.onnx");
    assert_eq!(masked("stage1 [32, 28, 28]"), "stage# [#, #, #]");
}
