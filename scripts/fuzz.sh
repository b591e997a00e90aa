#!/usr/bin/env bash
# Fuzzes the entry points that take untrusted input, with cargo-fuzz (libFuzzer + ASan):
#   config           any text as an auditor configuration
#   triton_response  any bytes as a KServe v2 infer response (the Triton plugin's decoder)
#   submit           any tensor descriptors through mint_auditor_submit (the C entry point)
#   http             any bytes sent to the /metrics endpoint over TCP, which must serve the next client
#   http_connection  the same request path in memory, without the socket: the fast one for long runs
# usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 60)] [TARGET...]
#        FUZZ_RUNS=10000000 scripts/fuzz.sh 0 [TARGET...]   (a count of executions instead)
#        FUZZ_JOBS=2 ...   that many fuzzing processes side by side, each with the limit above
#                          (their logs: tests/fuzz/target/TARGET.job-K.log)
#        FUZZ_TIMEOUT=S    seconds one input may take before it counts as a hang (default 10;
#                          long runs beside other work want more, so that a starved core is
#                          not taken for a hang)
#        FUZZ_OPT_LEVEL=N  build the targets at opt-level N instead of the profile's 3: CI's
#                          20 s runs use 1 (the build took 337 s instead of 470 s, and the submit
#                          target ran 96,001 inputs in 20 s against 101,287); long runs keep 3
# CI runs `scripts/fuzz.sh 20`; the long runs of docs/security.md use FUZZ_RUNS=10000000.
# cargo-fuzz needs nightly's -Z flags; RUSTC_BOOTSTRAP lets the stable toolchain take them.
# Each target starts from the seeds in tests/fuzz/corpus and grows a corpus under
# tests/fuzz/target/corpus; a crash leaves its input under tests/fuzz/artifacts, prints the
# end of the target's log (tests/fuzz/target/TARGET.log) and fails this script.
set -euo pipefail
cd "$(dirname "$0")/../tests/fuzz"
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config triton_response submit http http_connection)
limit=(-max_total_time="$seconds")
[ -z "${FUZZ_RUNS:-}" ] || limit=(-runs="$FUZZ_RUNS")
command -v cargo-fuzz >/dev/null || cargo install --locked -q cargo-fuzz --version 0.13.2
export RUSTC_BOOTSTRAP=1
# Set for the build and the runs alike (a run at another level would rebuild).
[ -z "${FUZZ_OPT_LEVEL:-}" ] || export CARGO_PROFILE_RELEASE_OPT_LEVEL="$FUZZ_OPT_LEVEL"
# libFuzzer scans for leaks after every input whose mallocs and frees differ. The endpoint
# allocates and frees on its own threads, so for http they almost always differ: the scans
# took 55% of its time and cannot tie a leak to an input. Its leaks are still checked at exit,
# and -rss_limit_mb catches growth.
leaks_per_input() { [ "$1" = http ] && echo -detect_leaks=0 || echo -detect_leaks=1; }
started=$SECONDS
# cargo-fuzz builds -O with one codegen unit; 16 built no faster here (780 s against 677 s).
cargo fuzz build --fuzz-dir . -O
echo "fuzz: targets built in $((SECONDS - started)) s"
for t in "${targets[@]}"; do
  mkdir -p "target/corpus/$t"
  echo "fuzz: $t (${limit[*]})"
  log="target/$t.log"
  jobs=()
  [ "${FUZZ_JOBS:-1}" -le 1 ] || jobs=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
  rm -f fuzz-*.log target/"$t".job-*.log
  started_target=$SECONDS
  if ! cargo fuzz run --fuzz-dir . -O "$t" "target/corpus/$t" "corpus/$t" -- \
    "${limit[@]}" "${jobs[@]}" "$(leaks_per_input "$t")" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=4096 \
    -print_final_stats=1 >"$log" 2>&1; then
    for job in fuzz-*.log; do [ -e "$job" ] && mv "$job" "target/$t.job-${job#fuzz-}"; done
    tail -n 80 "$log" target/"$t".job-*.log 2>/dev/null || true
    echo "fuzz: $t FAILED; its input is under tests/fuzz/artifacts/$t" >&2
    exit 1
  fi
  # With FUZZ_JOBS, libFuzzer leaves one log per process in the working directory.
  for job in fuzz-*.log; do [ -e "$job" ] && mv "$job" "target/$t.job-${job#fuzz-}"; done
  for each in "$log" target/"$t".job-*.log; do
    [ -e "$each" ] || continue
    grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs|stat::(number_of_executed_units|peak_rss_mb|new_units_added))' "$each" ||
      tail -n 12 "$each"
  done
  echo "fuzz: $t took $((SECONDS - started_target)) s"
done
