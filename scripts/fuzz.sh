#!/usr/bin/env bash
# Fuzzes the entry points that take untrusted input, with cargo-fuzz (libFuzzer + ASan):
#   config           any text as an auditor configuration
#   triton_response  any bytes as a KServe v2 infer response (the Triton plugin's decoder)
#   submit           any tensor descriptors through mint_auditor_submit (the C entry point)
#   http             any bytes sent to the /metrics endpoint, which must serve the next client
# usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 60)] [TARGET...]
# A long run (docs/security.md): scripts/fuzz.sh 1800
# cargo-fuzz needs nightly's -Z flags; RUSTC_BOOTSTRAP lets the stable toolchain take them.
# Each target starts from the seeds in tests/fuzz/corpus and grows a corpus under
# tests/fuzz/target/corpus; a crash leaves its input under tests/fuzz/artifacts and fails.
set -euo pipefail
cd "$(dirname "$0")/../tests/fuzz"
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config triton_response submit http)
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do cargo fuzz build --fuzz-dir . -O "$t"; done
for t in "${targets[@]}"; do
  mkdir -p "target/corpus/$t"
  echo "fuzz: $t for ${seconds}s"
  cargo fuzz run --fuzz-dir . -O "$t" "target/corpus/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 2>&1 | tail -n 12
done
