#!/usr/bin/env bash
# Install Moltbot with its test tools into ./.venv and run every check: ruff, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[test]"
ruff check .
python -m pytest -q "$@"
