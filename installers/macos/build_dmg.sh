#!/usr/bin/env bash
# Build Moltbot.app (PyInstaller, windowed) and wrap it in a dmg with an Applications link.
# macOS only (hdiutil); it cannot be built on Linux. From the repository root, with python3 3.11+:
#   ./installers/macos/build_dmg.sh          -> dist/Moltbot-<version>.dmg
# (bundle.sh installs the locked libraries, installers/lock/bundle.txt, into build/bundle-venv)
# The app is unsigned: sign and notarize it for other Macs (codesign --deep --options runtime
# --sign "Developer ID Application: ..." dist/Moltbot.app, then xcrun notarytool submit).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if [ "$(uname -s)" != Darwin ] || ! command -v hdiutil >/dev/null; then
  echo "build_dmg.sh runs on macOS (it needs hdiutil); on Linux build with installers/bundle.sh" >&2
  exit 1
fi
python="${PYTHON:-python3}"
./installers/bundle.sh                      # on macOS: dist/Moltbot.app, windowed, with the icon
version="$("$python" -c 'import gateway; print(gateway.__version__)')"
staging="build/dmg"
rm -rf "$staging"
mkdir -p "$staging"
cp -R dist/Moltbot.app "$staging/"
ln -s /Applications "$staging/Applications"
hdiutil create -volname "Moltbot $version" -srcfolder "$staging" -ov -format UDZO \
  "dist/Moltbot-$version.dmg"
echo "Built dist/Moltbot-$version.dmg: open it and drag Moltbot to Applications."
