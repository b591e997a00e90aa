#!/usr/bin/env bash
# The main job: a serving loop on the shipped Fashion-MNIST model, audited by mint-audit
# through its C API (examples/serving_demo.c), printing what the MINT head flagged among known
# members and non-members, and the metrics a regulator would scrape.
#
# usage: scripts/demo.sh [--profile release|debug] [--config FILE] [-- extra demo arguments, e.g. --linger 30]
#   --config models/fmnist-memorizing/auditor-cnn.json switches the same program to the CNN head
#   (full maps through the CPU backend plugin): configuration alone, no rebuild.
# Needs only cargo, a C compiler and pkg-config. The first run builds the library (release:
# ~6 min on 2 cores, debug: ~3 min); later runs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
model=models/fmnist-memorizing
config="$model/auditor.json"
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
prefix="$PWD/target/mint-prefix-$profile"
bash scripts/install.sh --profile "$profile" --prefix "$prefix" >/dev/null
exe="target/serving_demo-$profile"
# shellcheck disable=SC2046 # pkg-config output is a list of flags
cc -O2 -std=c11 -Wall -Wextra -pthread examples/serving_demo.c \
  $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs mint_audit) -o "$exe"
exec "$exe" "$config" "$model/demo-members-idx3-ubyte" "$model/demo-non-members-idx3-ubyte" "$@"
