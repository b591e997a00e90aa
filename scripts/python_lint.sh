#!/usr/bin/env bash
# The Python held to the Rust side's standard: ruff (lint and format) and mypy over every Python
# file of the repository (ruff.toml and mypy.ini say what and how). Needs scripts/setup.sh's
# .venv. CI runs it beside rustfmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.py')
.venv/bin/ruff check "${files[@]}"
.venv/bin/ruff format --check "${files[@]}"
# Triton's model repositories each hold a `model.py`: one mypy run each, as each is module `model`.
mapfile -t triton < <(git ls-files 'examples/triton/*.py')
mapfile -t rest < <(git ls-files '*.py' ':!examples/triton/*.py')
.venv/bin/mypy "${rest[@]}"
for f in "${triton[@]}"; do .venv/bin/mypy "$f"; done
