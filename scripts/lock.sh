#!/usr/bin/env bash
# Refresh constraints.txt: install vbs-backup[test,postgres] into a fresh venv at the newest versions that
# pyproject.toml admits, then pin everything it pulled in.
#
#   scripts/lock.sh               # resolve anew from PyPI (needs python3.11, like CI)
#   scripts/lock.sh .venv         # pin what an existing venv has installed (no network)
#
# Then run the tests on the new pins (README, Quick start step 2) and commit constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
  python="$1/bin/python"
else
  venv="$(mktemp -d)/venv"
  trap 'rm -rf "$(dirname "$venv")"' EXIT
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e ".[test,postgres]"
  "$venv/bin/pip" check
  python="$venv/bin/python"
fi
"$python" scripts/lock.py > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -c '==' constraints.txt) pins" >&2
