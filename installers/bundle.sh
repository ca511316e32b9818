#!/usr/bin/env bash
# Build the desktop app with PyInstaller: a one-folder app, dist/moltbot/, whose binary is the
# tray (no arguments), the `moltbot` command line (any arguments) and the gateway's own processes.
#   ./installers/bundle.sh                 build dist/moltbot/ (Python 3.11+ as python3)
#   ./installers/bundle.sh --dist DIR      build DIR/moltbot/ instead (work files go beside it)
# It builds in build/bundle-venv, made with the exact versions and hashes of installers/lock/
# bundle.txt (the runtime lock and PyInstaller), then Moltbot --no-deps: the app carries the
# locked libraries, whatever else is installed. MOLTBOT_PIP_ARGS passes options to pip (a mirror:
# "--index-url URL"). PYTHON=/path/to/python builds with that environment as it is instead (it
# needs Moltbot and PyInstaller; the test suite does so with its venv, installed from the lock).
# On macOS it builds dist/Moltbot.app (windowed); installers/macos/build_dmg.sh wraps it in a dmg.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dist="$PWD/dist"
work="$PWD/build/pyinstaller"
while [ $# -gt 0 ]; do
  case "$1" in
    --dist) [ $# -ge 2 ] || { echo "bundle.sh: --dist needs a directory" >&2; exit 1; }
            dist="$(mkdir -p "$2" && cd "$2" && pwd)"; work="$dist/../pyinstaller-work"; shift ;;
    -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bundle.sh: unknown option '$1' (see --help)" >&2; exit 1 ;;
  esac
  shift
done
if [ -n "${PYTHON:-}" ]; then
  python="$PYTHON"
  "$python" -c 'import PyInstaller, gateway' 2>/dev/null || {
    echo "bundle.sh: $python needs Moltbot and PyInstaller (pip install -e '.[test]'), or unset
PYTHON to build in build/bundle-venv from installers/lock/bundle.txt" >&2; exit 1; }
else
  venv="$PWD/build/bundle-venv"
  case "$(uname -s)" in MINGW*|MSYS*|CYGWIN*) python="$venv/Scripts/python.exe" ;;
                        *) python="$venv/bin/python" ;; esac
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    rm -rf "$venv"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
      echo "bundle.sh: python3 must be Python 3.11 or newer ($(python3 --version 2>&1))" >&2
      exit 1; }
    python3 -m venv "$venv"
  fi
  # shellcheck disable=SC2086  # MOLTBOT_PIP_ARGS is a list of options
  "$python" -m pip install --quiet --disable-pip-version-check ${MOLTBOT_PIP_ARGS:-} \
    --require-hashes -r installers/lock/bundle.txt
  # shellcheck disable=SC2086
  "$python" -m pip install --quiet --disable-pip-version-check ${MOLTBOT_PIP_ARGS:-} --no-deps .
  "$python" -m pip check
fi

icons="$work/icons"
"$python" installers/icon.py --png "$icons/moltbot.png" --ico "$icons/moltbot.ico" \
  --icns "$icons/moltbot.icns"
case "$(uname -s)" in
  Darwin) export MOLTBOT_WINDOWED=1 MOLTBOT_ICON="$icons/moltbot.icns" ;;
  MINGW*|MSYS*|CYGWIN*) export MOLTBOT_ICON="$icons/moltbot.ico" ;;
  *) export MOLTBOT_ICON="" ;;
esac
"$python" -m PyInstaller --noconfirm --clean --log-level WARN --distpath "$dist" \
  --workpath "$work" installers/moltbot.spec
cp "$icons/moltbot.png" "$dist/moltbot/moltbot.png"
echo "Built $dist/moltbot/ ($("$dist/moltbot/moltbot" --version)); run $dist/moltbot/moltbot --help"
