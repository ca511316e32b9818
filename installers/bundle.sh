#!/usr/bin/env bash
# Build the desktop app with PyInstaller: a one-folder app, dist/moltbot/, whose binary is the
# tray (no arguments), the `moltbot` command line (any arguments) and the gateway's own processes.
#   ./installers/bundle.sh                 build dist/moltbot/ with the current python3
#   ./installers/bundle.sh --dist DIR      build DIR/moltbot/ instead (work files go beside it)
# Run it in an environment with Moltbot and PyInstaller installed (pip install -e '.[test]').
# On macOS it builds dist/Moltbot.app (windowed); installers/macos/build_dmg.sh wraps it in a dmg.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dist="$PWD/dist"
work="$PWD/build/pyinstaller"
while [ $# -gt 0 ]; do
  case "$1" in
    --dist) [ $# -ge 2 ] || { echo "bundle.sh: --dist needs a directory" >&2; exit 1; }
            dist="$(mkdir -p "$2" && cd "$2" && pwd)"; work="$dist/../pyinstaller-work"; shift ;;
    -h|--help) sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bundle.sh: unknown option '$1' (see --help)" >&2; exit 1 ;;
  esac
  shift
done
python="${PYTHON:-python3}"
"$python" -c 'import PyInstaller, gateway' 2>/dev/null || {
  echo "bundle.sh: $python needs Moltbot and PyInstaller: pip install -e '.[test]'" >&2; exit 1; }

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
