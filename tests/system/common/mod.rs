//! Helpers shared by the system tests, which drive real programs: the installed C library, the
//! system C compiler, promtool, Prometheus, Python, tritonserver.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;

#[path = "../../common/mod.rs"]
mod fixtures;
pub use fixtures::*;

/// Something a system test needs beyond Rust, and how to get it.
pub struct Need {
    what: &'static str,
    present: fn() -> bool,
    how: &'static str,
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
}

fn python_has(python: &Path, modules: &str) -> bool {
    Command::new(python).args(["-c", &format!("import {modules}")]).output().is_ok_and(|o| o.status.success())
}

/// The system C compiler.
pub const CC: Need = Need { what: "a C compiler (cc)", present: || on_path("cc"), how: "apt-get install gcc" };
/// pkg-config, to build against the installed library.
pub const PKG_CONFIG: Need =
    Need { what: "pkg-config", present: || on_path("pkg-config"), how: "apt-get install pkg-config" };
/// valgrind's memcheck.
pub const VALGRIND: Need = Need { what: "valgrind", present: || on_path("valgrind"), how: "apt-get install valgrind" };
/// Prometheus' promtool.
pub const PROMTOOL: Need =
    Need { what: "promtool", present: || on_path("promtool"), how: "apt-get install prometheus" };
/// The Prometheus server.
pub const PROMETHEUS: Need =
    Need { what: "prometheus", present: || on_path("prometheus"), how: "apt-get install prometheus" };
/// Debian's Python with numpy.
pub const NUMPY: Need = Need {
    what: "/usr/bin/python3 with numpy",
    present: || python_has(Path::new("/usr/bin/python3"), "numpy"),
    how: "apt-get install python3-numpy",
};
/// The venv with nvidia-pytriton (tritonserver) and onnxruntime.
pub const TRITON: Need = Need {
    what: ".venv with nvidia-pytriton and onnxruntime",
    present: || triton_python().is_some(),
    how: "bash scripts/setup.sh",
};

/// The Python that has nvidia-pytriton and onnxruntime: `MINT_TRITON_PYTHON`, else .venv's.
pub fn triton_python() -> Option<PathBuf> {
    let python =
        std::env::var_os("MINT_TRITON_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv/bin/python"));
    python_has(&python, "pytriton, onnxruntime").then_some(python)
}

/// Whether everything `test` needs is here. When something is missing, says what and how to
/// get it; the README's test command and CI set `MINT_REQUIRE_TOOLS=1`, which makes that a
/// failure, while a developer running `cargo test` by hand sees the test skipped.
pub fn ready(test: &str, needs: &[Need]) -> bool {
    let missing: Vec<String> =
        needs.iter().filter(|n| !(n.present)()).map(|n| format!("{} ({})", n.what, n.how)).collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test} needs {}; `bash scripts/setup.sh` installs all of it", missing.join(", "));
    if std::env::var_os("MINT_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("{message}");
    }
    // Straight to the process's stderr: libtest captures `eprintln!`, and a skip must be seen.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {message}");
    false
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

/// Builds libmint_audit (debug, with the test-only `fault-injection` feature that
/// `c_api_panic_becomes_a_status` needs) and installs it with its headers and pkg-config file
/// into a prefix under target/, once per test process, the way a vendor would install it.
pub fn installed_prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let scratch = repo().join("target").join("test-scratch");
        remove_prefixes_of_ended_processes(&scratch);
        let prefix = scratch.join(format!("prefix-{}", std::process::id()));
        run(Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "mint-audit-ffi", "-p", "mint-backend-cpu", "-p", "mint-backend-triton"])
            .args(["--features", "mint-audit-ffi/fault-injection"])
            .current_dir(repo()));
        run(Command::new("bash")
            .arg(repo().join("scripts/install.sh"))
            .args(["--no-build", "--profile", "debug", "--prefix"])
            .arg(&prefix)
            .current_dir(repo()));
        prefix
    })
}

/// Each prefix holds a debug build of the libraries, and every test binary that installs runs
/// in a process of its own: prefixes of processes that have ended are removed, so that the disk
/// holds at most one per running test process.
fn remove_prefixes_of_ended_processes(scratch: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("prefix-")) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            // Another process may be removing it too: losing that race is harmless.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
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

/// The shipped taps for a CNN head on stage1: the full stage1 maps, then the other taps as
/// vendor-reduced vectors, all borrowed.
pub fn borrowed_taps<'a>(maps: &'a [f32], rest: &'a [Vec<f32>], n: usize) -> Vec<mint_audit::TensorView<'a>> {
    use mint_audit::{Form, Layout, TensorView};
    let mut views = vec![TensorView::map(maps, Layout::Nchw, [n, 16, 28, 28]).unwrap()];
    for (i, (d, c)) in rest.iter().zip(SHIPPED_CHANNELS).enumerate().skip(1) {
        let form = if i == 4 { Form::Vector } else { Form::ChannelMax };
        views.push(TensorView::vectors(&d[..n * c], form, n, c).unwrap());
    }
    views
}
