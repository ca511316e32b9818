#!/usr/bin/env bash
# Install Moltbot for this user and start the gateway on http://127.0.0.1:18789.
#   ./installers/install.sh            install into ~/.moltbot/venv, link ~/.local/bin/moltbot, start
#   ./installers/install.sh --no-start install only
# Needs Python 3.11+. The workspace (~/ai-gateway, or $MOLTBOT_HOME) is created on first start.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
prefix="${MOLTBOT_PREFIX:-$HOME/.moltbot}"
start=1
[ "${1:-}" = "--no-start" ] && start=0

python=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python="$candidate"; break
  fi
done
[ -n "$python" ] || { echo "Moltbot needs Python 3.11 or newer: install it (e.g. apt install python3) and run this again." >&2; exit 1; }

"$python" -m venv "$prefix/venv"
"$prefix/venv/bin/python" -m pip install -q --upgrade pip
"$prefix/venv/bin/python" -m pip install -q "$here"
mkdir -p "$HOME/.local/bin"
ln -sf "$prefix/venv/bin/moltbot" "$HOME/.local/bin/moltbot"
echo "Installed: $HOME/.local/bin/moltbot ($("$prefix/venv/bin/moltbot" --version))"
case ":$PATH:" in *":$HOME/.local/bin:"*) ;; *) echo "Add ~/.local/bin to your PATH to run 'moltbot' directly.";; esac
if [ "$start" = 1 ]; then
  "$prefix/venv/bin/moltbot" gateway start
fi
