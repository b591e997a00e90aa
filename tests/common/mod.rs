//! Helpers shared by the integration tests that drive real programs: the installed C library,
//! the system C compiler, promtool, Prometheus.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch folder under target/ for one test (emptied first).
pub fn scratch(name: &str) -> PathBuf {
    let dir = repo().join("target").join("test-scratch").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A program the tests need, or a loud failure saying how to get it.
pub fn require(program: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(program)).find(|p| p.is_file()));
    found.unwrap_or_else(|| panic!("`{program}` is needed by this test: apt-get install {package} (see .ci/run)"))
}

/// Builds libmint_audit (debug) and installs it with its headers and pkg-config file into a
/// prefix under target/, once per test process, the way a vendor would install it.
pub fn installed_prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let prefix = repo().join("target").join("test-scratch").join(format!("prefix-{}", std::process::id()));
        run(Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "mint-audit-ffi", "-p", "mint-backend-cpu", "-p", "mint-backend-triton"])
            .current_dir(repo()));
        run(Command::new("bash")
            .arg(repo().join("scripts/install.sh"))
            .args(["--no-build", "--profile", "debug", "--prefix"])
            .arg(&prefix)
            .current_dir(repo()));
        prefix
    })
}

/// `pkg-config --cflags --libs mint_audit` against the installed prefix.
pub fn pkg_config_flags() -> Vec<String> {
    let prefix = installed_prefix();
    let out = run(Command::new(require("pkg-config", "pkg-config"))
        .args(["--cflags", "--libs", "mint_audit"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")));
    String::from_utf8(out.stdout).unwrap().split_whitespace().map(String::from).collect()
}

/// Compiles C sources with the system compiler and only the pkg-config flags.
pub fn compile_c(sources: &[&Path], output: &Path, extra: &[&str]) {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(cc);
    cmd.args(["-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-pthread"]).args(extra);
    cmd.args(sources).arg("-o").arg(output).args(pkg_config_flags()).arg("-lm");
    run(&mut cmd);
}

/// The shipped memorizing model's auditor configuration, with absolute paths, as JSON.
pub fn shipped_config() -> serde_json::Value {
    let dir = repo().join("models/fmnist-memorizing");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("auditor.json")).unwrap()).unwrap();
    config["model"]["onnx"] = dir.join("model.onnx").display().to_string().into();
    config["head"]["path"] = dir.join("head.onnx").display().to_string().into();
    config
}

/// Channel counts of the shipped model's taps (four stages, then the logits).
pub const SHIPPED_CHANNELS: [usize; 5] = [16, 32, 64, 128, 10];

/// Per-sample features of the shipped taps, as the vendor would hand them over already
/// reduced (`[n, C]` channel maxima, and the `[n, 10]` logits), from a fixed seed.
pub fn synthetic_reduced(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    SHIPPED_CHANNELS.iter().map(|&c| (0..n * c).map(|_| next() * 3.0).collect()).collect()
}

/// Views over [`synthetic_reduced`] data.
pub fn reduced_views(data: &[Vec<f32>], n: usize) -> Vec<mint_audit::TensorView<'_>> {
    use mint_audit::{Form, TensorView};
    data.iter()
        .zip(SHIPPED_CHANNELS)
        .enumerate()
        .map(|(i, (d, c))| {
            let form = if i == 4 { Form::Vector } else { Form::ChannelMax };
            TensorView::vectors(d.as_slice(), form, n, c).unwrap()
        })
        .collect()
}

/// Reads a float32 NPY file: shape and values.
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file)).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<f32>().unwrap())
}

/// Loads the shipped configuration as the library does.
pub fn shipped_auditor_config() -> mint_audit::Config {
    mint_audit::Config::from_json(&shipped_config().to_string(), &repo()).unwrap()
}

/// A server process the test started; killed however the test ends.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
