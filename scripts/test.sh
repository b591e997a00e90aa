#!/usr/bin/env bash
# The test suite, from a fresh machine: installs what is missing (scripts/setup.sh), then runs
# every test of the workspace. Among them: the header drift check, the C API test built with the
# system compiler (plain, under AddressSanitizer, with an injected panic), a real Prometheus
# scraping the endpoint, promtool, onnxruntime cross-checks and the mint CLI end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --locked "$@"
