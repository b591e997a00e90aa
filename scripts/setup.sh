#!/usr/bin/env bash
# Installs what the tests need beyond a fresh machine's Rust toolchain, C compiler and Python:
# Debian's Prometheus (server and promtool), PyTorch and onnx (reference training and export),
# scikit-learn (the cross-dataset non-members), jsonschema (the split schema test), the
# Fashion-MNIST dataset package, valgrind (the C API test under memcheck), Chromium and
# chromedriver (the console's browser test), and a virtual environment (.venv) with
# onnxruntime, NVIDIA's pytriton wheel (tritonserver), what the Python package's tests use
# (pytest, prometheus_client, maturin, transformers) and the Python linters (ruff, mypy); the
# venv sees Debian's packages (torch), so that the PyTorch hooks are tested against Debian's
# PyTorch. Idempotent: only what is missing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(prometheus python3-torch python3-onnx python3-sklearn python3-numpy python3-jsonschema dataset-fashion-mnist librsvg2-bin valgrind chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python packages that Debian does not ship, pinned; in a venv so that /usr/bin/python3 stays as Debian made it.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import onnxruntime, numpy, pytriton, torch, pytest, prometheus_client, maturin, transformers, cryptography, ruff, mypy" 2>/dev/null; then
  echo "setup: creating .venv (onnxruntime, nvidia-pytriton, pytest, prometheus_client, maturin, transformers, ruff, mypy; sees Debian's torch)"
  /usr/bin/python3 -m venv --clear --system-site-packages .venv
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements.txt
fi

# The checkout's own Python packages, importable from .venv as an editable install makes them
# (a .pth file naming their folders): the recipes `mint train` runs (mint_recipes), the
# research drivers (mint_research) and the shipped models in PyTorch (examples/python).
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n' "$PWD/crates/toolkit/recipes" "$PWD/research" "$PWD/examples/python" > "$site/mint-checkout.pth"
