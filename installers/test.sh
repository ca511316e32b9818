#!/usr/bin/env bash
# Install Moltbot with its test tools into ./.venv and run every check: ruff, mypy, pytest.
# The browser tests drive Debian's Chromium through Playwright: as root this installs it with
# apt-get when it is missing; otherwise install it yourself (sudo apt-get install chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[test]"
ruff check .
mypy
python -m pytest -q "$@"
