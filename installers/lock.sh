#!/usr/bin/env bash
# Regenerate the lock files in installers/lock/ from pyproject.toml's ranges: every package at
# one exact version with the hashes of its files, for Python 3.11+ on Linux, macOS and Windows
# in one resolution (uv's --universal). Never edit them by hand: change pyproject.toml and run
#   ./installers/lock.sh           take the newest releases pyproject.toml allows
#   ./installers/lock.sh --keep    keep each current pin that still fits (after adding a package)
# It uses `uv` from PATH, or installs uv into ./.venv-lock (uv is needed only here: installing
# Moltbot takes the lock files with plain pip). It needs the package index, as pip does.
#   test.txt            runtime + the test and tray extras + PyInstaller: installers/test.sh
#   runtime.txt         what the gateway runs on: install.sh, the Dockerfile
#   tray.txt            runtime + the tray extra (PyGObject on Linux): install.sh --desktop
#   bundle.txt          runtime + PyInstaller: installers/bundle.sh
#   watchdog-X.Y.Z.txt  watchdog alone, each release the watcher's test runs against
# test.txt is resolved first and the others are constrained by it, so that one package has one
# version in every file: what the tests ran is what ships.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
watchdog_matrix=(6.0.0 7.1.0 7.1.1)   # the watcher's test runs on each; 7.1.1 is the known-bad one
uv_version=0.13.9                     # the uv that wrote the files last: same tool, same output

upgrade=(--upgrade)
case "${1:-}" in
  "") ;;
  --keep) upgrade=() ;;
  -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "lock.sh: unknown option '$1' (see --help)" >&2; exit 1 ;;
esac

uv="$(command -v uv || true)"
if [ -z "$uv" ]; then
  uv="$PWD/.venv-lock/bin/uv"
  if ! "$uv" --version 2>/dev/null | grep -qF "uv $uv_version"; then
    python3 -m venv .venv-lock
    .venv-lock/bin/python -m pip install --quiet --disable-pip-version-check "uv==$uv_version"
  fi
fi

out=installers/lock
compile() {   # compile OUTPUT INPUT... [OPTIONS]: one lock file, its header naming this script
  local output="$1"; shift
  "$uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
    --custom-compile-command "./installers/lock.sh" "${upgrade[@]}" -o "$out/$output" "$@"
  echo "wrote $out/$output ($(grep -c '^[A-Za-z0-9]' "$out/$output") pins)"
}
compile test.txt pyproject.toml --extra test --extra tray
compile runtime.txt pyproject.toml -c "$out/test.txt"
compile tray.txt pyproject.toml --extra tray -c "$out/test.txt"
compile bundle.txt pyproject.toml "$out/bundle.in" -c "$out/test.txt"
rm -f "$out"/watchdog-*.txt
for version in "${watchdog_matrix[@]}"; do
  echo "watchdog==$version" | compile "watchdog-$version.txt" - --no-deps
done
