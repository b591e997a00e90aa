#!/usr/bin/env bash
# The main job: a serving loop on the shipped Fashion-MNIST model, audited by mint-audit
# through its C API (examples/serving_demo.c), printing what the MINT head flagged among known
# members and non-members, and the metrics a regulator would scrape.
#
# usage: scripts/demo.sh [--profile release|debug] [-- extra demo arguments, e.g. --linger 30]
# Needs only cargo, a C compiler and pkg-config. The first run builds the library (release:
# ~12 min on 2 cores, debug: ~3 min); later runs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [ "${1:-}" = "--profile" ]; then profile="$2"; shift 2; fi
[ "${1:-}" = "--" ] && shift
prefix="$PWD/target/mint-prefix-$profile"
bash scripts/install.sh --profile "$profile" --prefix "$prefix" >/dev/null
exe="target/serving_demo-$profile"
# shellcheck disable=SC2046 # pkg-config output is a list of flags
cc -O2 -std=c11 -Wall -Wextra -pthread examples/serving_demo.c \
  $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs mint_audit) -o "$exe"
model=models/fmnist-memorizing
exec "$exe" "$model/auditor.json" "$model/demo-members-idx3-ubyte" "$model/demo-non-members-idx3-ubyte" "$@"
