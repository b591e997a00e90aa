#!/usr/bin/env bash
# Builds libmint_audit and installs it with its headers and a pkg-config file:
#   PREFIX/include/mint_audit.h, PREFIX/include/mint_backend.h
#   PREFIX/lib/libmint_audit.so, PREFIX/lib/libmint_audit.a
#   PREFIX/lib/libmint_backend_cpu.so, PREFIX/lib/libmint_backend_triton.so (CNN head backends,
#     found by bare name beside libmint_audit.so)
#   PREFIX/lib/pkgconfig/mint_audit.pc
# after which a C program builds with
#   PKG_CONFIG_PATH=PREFIX/lib/pkgconfig cc app.c $(pkg-config --cflags --libs mint_audit)
#
# usage: scripts/install.sh [--prefix DIR] [--profile release|debug] [--no-build]
#   (defaults: --prefix target/mint-prefix, --profile release; --no-build installs what
#   `cargo build` already produced)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="$PWD/target/mint-prefix"
profile=release
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --profile) profile="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "usage: $0 [--prefix DIR] [--profile release|debug] [--no-build]" >&2; exit 2 ;;
  esac
done
case "$profile" in
  release) flags=(--release); dir=release ;;
  debug) flags=(); dir=debug ;;
  *) echo "unknown profile $profile" >&2; exit 2 ;;
esac
if [ "$build" = 1 ]; then
  cargo build --locked -q -p mint-audit-ffi -p mint-backend-cpu -p mint-backend-triton "${flags[@]}"
fi
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
mkdir -p "$prefix/include" "$prefix/lib/pkgconfig"
prefix="$(cd "$prefix" && pwd)"
cp include/mint_audit.h "$prefix/include/"
[ -f include/mint_backend.h ] && cp include/mint_backend.h "$prefix/include/"
# The FFI crate's artefacts are libmint_audit_ffi.*; C callers link -lmint_audit.
cp "$target_dir/$dir/libmint_audit_ffi.so" "$prefix/lib/libmint_audit.so"
cp "$target_dir/$dir/libmint_audit_ffi.a" "$prefix/lib/libmint_audit.a"
cp "$target_dir/$dir/libmint_backend_cpu.so" "$target_dir/$dir/libmint_backend_triton.so" "$prefix/lib/"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" ffi/mint_audit.pc.in > "$prefix/lib/pkgconfig/mint_audit.pc"
echo "installed mint_audit $version ($profile) in $prefix"
