#!/usr/bin/env bash
# The Python package's tests (bindings/python/tests, pytest): builds the mint_audit package into .venv
# from this checkout and runs them. Run by scripts/test.sh after the Rust tests, whose debug
# build it reuses (the wheel a user installs with `pip install ./bindings/python` is a release build;
# these tests only need it to be the same code). Needs scripts/setup.sh to have run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -q -p mint-cli   # `mint eval`, which the hook test compares against
PATH="$PWD/.venv/bin:$PATH" MATURIN_PEP517_ARGS="--profile dev" .venv/bin/pip install -q --disable-pip-version-check \
  --no-build-isolation --no-deps --force-reinstall ./bindings/python
.venv/bin/python -c "import mint_audit, sys; print('mint_audit', mint_audit.__version__, 'on Python', sys.version.split()[0])"
MINT_BIN=target/debug/mint .venv/bin/python -m pytest -q -p no:cacheprovider bindings/python/tests "$@"
