#!/usr/bin/env bash
# The test suite, from a fresh machine: installs what is missing (scripts/setup.sh), then runs
# every test of the workspace: the library's own (`cargo test -p mint-audit`, Rust only), and the
# system tests of tests/system: the header drift check, the C API test built with the system
# compiler (plain, under AddressSanitizer, with an injected panic), C plugins, a real Prometheus
# scraping the endpoint, promtool, a real tritonserver; the mint CLI end to end; then the Python
# package's tests (scripts/python_tests.sh: pytest against Debian's PyTorch).
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase's time, appended to $MINT_STEP_TIMES when CI asks for it (.ci/run's table).
phase_started=$SECONDS
phase() {
  [ -z "${MINT_STEP_TIMES:-}" ] || printf '%s\t%d\n' "$1" $((SECONDS - phase_started)) >>"$MINT_STEP_TIMES"
  phase_started=$SECONDS
}
bash scripts/setup.sh
phase "setup (apt, .venv)"
# The system tests (tests/system) skip with a message when run by hand without a tool they
# need; here every tool is installed, so a missing one is a failure.
export MINT_REQUIRE_TOOLS=1
cargo test --workspace --locked --no-run "$@"
phase "build: cargo test --workspace --no-run (debug)"
cargo test --workspace --locked "$@"
phase "run: cargo test --workspace"
# The Python package (bindings/python/): built into .venv and tested with pytest.
bash scripts/python_tests.sh
phase "Python package: build (maturin, dev) and pytest"
