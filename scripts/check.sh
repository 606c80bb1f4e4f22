#!/usr/bin/env bash
# The static checks CI runs after the tests (.ci/run), from the project's venv (README, Quick start step 2):
# style (ruff), formatting (ruff format), types (mypy over the product) and the layers' import contracts
# (lint-imports; ARCHITECTURE.md). Run it before a commit: it takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${VENV:-.venv}/bin"
"$bin/ruff" check .
"$bin/ruff" format --check .
"$bin/mypy"
"$bin/lint-imports"
