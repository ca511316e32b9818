#!/usr/bin/env bash
# Install Moltbot for this user from the checkout this script sits in, and start the gateway on
# http://127.0.0.1:18789. Run it again to upgrade: every step is idempotent.
#
#   ./installers/install.sh                      venv in ~/.moltbot, link ~/.local/bin/moltbot, start
#   ./installers/install.sh --prefix /opt/ai-gateway --bin /usr/local/bin
#   ./installers/install.sh --service            also a systemd user unit (moltbot.service)
#   ./installers/install.sh --desktop            also a menu entry, its icon and the tray at login
#   ./installers/install.sh --no-start           install only
#   ./installers/install.sh --uninstall [--purge]  remove what was added (--purge: the workspace too)
#
# Needs Python 3.11+. The workspace (~/ai-gateway, or $MOLTBOT_HOME) is created on first start.
# The libraries come at the exact versions, hash-checked, of the lock file installers/lock/
# runtime.txt of the checkout installed (or of this script's checkout), then Moltbot --no-deps.
# Environment: MOLTBOT_PREFIX (default of --prefix), MOLTBOT_SOURCE (a checkout, a wheel or a URL
# of one, never a bare package name; default this checkout), MOLTBOT_PIP_ARGS (extra pip
# options, e.g. "--index-url URL" for a mirror or
# "--no-index --find-links DIR" offline), MOLTBOT_LOCK (a lock file to install from instead, or
# "none": pip picks from the package's ranges).
set -euo pipefail
script_dir=""   # empty when the script arrives on stdin (curl ... | bash)
if [ -f "${BASH_SOURCE[0]:-}" ]; then script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; fi

usage() { sed -n '2,18p' "${script_dir:-.}/install.sh" 2>/dev/null | sed 's/^# \{0,1\}//'; }
say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

prefix="${MOLTBOT_PREFIX:-$HOME/.moltbot}"
bindir="$HOME/.local/bin"
service=0 desktop=0 start=1 uninstall=0 purge=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix="$2"; shift ;;
    --prefix=*) prefix="${1#*=}" ;;
    --bin) [ $# -ge 2 ] || die "--bin needs a directory"; bindir="$2"; shift ;;
    --bin=*) bindir="${1#*=}" ;;
    --service) service=1 ;;
    --desktop) desktop=1 ;;
    --no-start) start=0 ;;
    --uninstall) uninstall=1 ;;
    --purge) purge=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  shift
done
[ "$purge" = 0 ] || [ "$uninstall" = 1 ] || die "--purge goes with --uninstall"
case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac
case "$bindir" in /*) ;; *) bindir="$PWD/$bindir" ;; esac

venv="$prefix/venv"
moltbot="$venv/bin/moltbot"
manifest="$prefix/installed-files"   # what was put outside the prefix, for --uninstall
config_home="${XDG_CONFIG_HOME:-$HOME/.config}"
data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
unit="$config_home/systemd/user/moltbot.service"
menu_entry="$data_home/applications/moltbot.desktop"
icon="$data_home/icons/hicolor/256x256/apps/moltbot.png"
workspace="${MOLTBOT_HOME:-$HOME/ai-gateway}"

# True when `systemctl --user` reaches a running user manager (absent in containers, over some
# SSH sessions and on machines without systemd).
has_user_systemd() { command -v systemctl >/dev/null && systemctl --user show-environment >/dev/null 2>&1; }

record() { touch "$manifest"; grep -qxF "$1" "$manifest" || printf '%s\n' "$1" >>"$manifest"; }

# Remove what the manifest lists; a `moltbot` link that now points elsewhere is someone else's.
do_uninstall() {
  if [ -d "$venv" ] || [ -f "$manifest" ]; then
    [ -x "$moltbot" ] && { "$moltbot" gateway stop || true; }
    if [ -f "$manifest" ] && grep -qxF "$unit" "$manifest" && has_user_systemd; then
      systemctl --user disable --now moltbot.service >/dev/null 2>&1 || true
    fi
    local path
    while IFS= read -r path; do
      [ -n "$path" ] || continue
      if [ "$(basename "$path")" = moltbot ] && [ "$(readlink "$path" || true)" != "$moltbot" ]; then
        [ -e "$path" ] && say "Left $path: it is not the link to $moltbot"
        continue
      fi
      if [ -e "$path" ] || [ -L "$path" ]; then rm -f "$path"; say "Removed $path"; fi
    done < <(cat "$manifest" 2>/dev/null || true)
    if has_user_systemd; then systemctl --user daemon-reload >/dev/null 2>&1 || true; fi
    rm -rf "$venv" "$manifest"
    say "Removed $venv"
    rmdir "$prefix" 2>/dev/null && say "Removed $prefix"
  else
    say "Moltbot is not installed in $prefix (no $venv): nothing to remove there."
  fi
  if [ "$purge" = 1 ] && [ -d "$workspace" ]; then
    rm -rf "$workspace"
    say "Removed the workspace $workspace"
  elif [ -d "$workspace" ]; then
    say "Kept your workspace $workspace (skills, knowledge, config.yaml, messages);" \
        "run again with --uninstall --purge to remove it too."
  fi
  say "Moltbot is uninstalled."
}

if [ "$uninstall" = 1 ]; then do_uninstall; exit 0; fi

# --- Python 3.11 or newer: python3 may be older while python3.12 is there ---
python=""
for candidate in python3 python3.13 python3.12 python3.11; do
  if command -v "$candidate" >/dev/null \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python="$(command -v "$candidate")"; break
  fi
done
[ -n "$python" ] || die "Moltbot needs Python 3.11 or newer; found $(python3 --version 2>&1 || echo none).
Install one (Debian/Ubuntu: sudo apt install python3.11 python3.11-venv; macOS: brew install python@3.12) and run this again."
"$python" -c 'import venv, ensurepip' 2>/dev/null \
  || die "$python has no venv module: install it (Debian/Ubuntu: sudo apt install python3-venv) and run this again."

# --- What to install: this checkout, unless MOLTBOT_SOURCE says otherwise ---
source_spec="${MOLTBOT_SOURCE:-}"
if [ -z "$source_spec" ]; then
  here="$(dirname "${script_dir:-/nonexistent/x}")"
  if [ ! -f "$here/pyproject.toml" ] || [ ! -d "$here/gateway" ]; then
    die "this script installs from the Moltbot checkout it sits in, and found none beside it.
Clone the repository and run ./installers/install.sh there, or set MOLTBOT_SOURCE to a
checkout, a wheel, or a URL of one."
  fi
  source_spec="$here"
fi
# Never a name for the package index to resolve: "moltbot" there is an unrelated project, and
# any other name could be taken tomorrow (dependency confusion).
case "$source_spec" in
  */*|*.whl|git+*) ;;
  *) die "MOLTBOT_SOURCE=$source_spec looks like a package name; it must be a checkout, a wheel
or a URL (a name would be looked up on the package index, where \"moltbot\" is somebody else's
project). E.g. MOLTBOT_SOURCE=/path/to/moltbot or MOLTBOT_SOURCE=./moltbot_gateway-0.1.0-py3-none-any.whl" ;;
esac

# --- Which versions: the lock file of the checkout installed, else of this script's checkout ---
lock="${MOLTBOT_LOCK:-}"
if [ -z "$lock" ]; then
  for candidate in "$source_spec/installers/lock/runtime.txt" \
      "${script_dir:+$script_dir/lock/runtime.txt}"; do
    if [ -n "$candidate" ] && [ -f "$candidate" ]; then lock="$candidate"; break; fi
  done
  if [ -z "$lock" ]; then
    lock=none
    say "No lock file comes with $source_spec: pip chooses the libraries' versions within its
ranges (set MOLTBOT_LOCK to a lock file, e.g. a checkout's installers/lock/runtime.txt, to pin them)."
  fi
fi
if [ "$lock" != none ]; then
  [ -f "$lock" ] || die "MOLTBOT_LOCK=$lock: no such file. Name a lock file (a checkout's
installers/lock/runtime.txt), or none to let pip choose the versions."
  case "$lock" in /*) ;; *) lock="$PWD/$lock" ;; esac
fi

if [ -e "$bindir/moltbot" ] && [ ! -L "$bindir/moltbot" ]; then
  die "$bindir/moltbot exists and is not a link made by this script: move it away, or use --bin DIR."
fi
if ! mkdir -p "$prefix" 2>/dev/null || [ ! -w "$prefix" ]; then
  die "cannot write to $prefix: choose another --prefix, or run as a user who may write there."
fi

# --- The virtual environment: kept when it is already a working one on Python 3.11+ ---
if ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
fi
pip_install() {
  # shellcheck disable=SC2086  # MOLTBOT_PIP_ARGS is a list of options
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check ${MOLTBOT_PIP_ARGS:-} "$@"
}
if [ "$lock" = none ]; then
  pip_install "$source_spec" || die "pip could not install Moltbot from $source_spec (see its message above)."
else
  say "Installing the libraries at the versions $lock pins (hash-checked), then Moltbot"
  pip_install --require-hashes -r "$lock" \
    || die "pip could not install the versions $lock names (see its message above)."
  pip_install --no-deps "$source_spec" \
    || die "pip could not install Moltbot from $source_spec (see its message above)."
  problems="$("$venv/bin/python" -m pip check 2>&1)" || die "the versions in $lock do not fit \
$source_spec: $problems
Use the lock file that came with it (MOLTBOT_LOCK=FILE), or MOLTBOT_LOCK=none to let pip choose."
fi
version="$("$moltbot" --version)"
if [ "$desktop" = 1 ] && [ "$(uname -s)" = Linux ]; then
  # The tray's menu on Linux needs PyGObject (GTK); it builds against GTK's development files.
  tray=("PyGObject>=3.42,<3.51") shown="'PyGObject>=3.42,<3.51'"   # pyproject's tray extra
  if [ "$lock" != none ] && [ -f "$(dirname "$lock")/tray.txt" ]; then
    tray=(--require-hashes -r "$(dirname "$lock")/tray.txt") shown="${tray[*]}"
  fi
  pip_install "${tray[@]}" 2>/dev/null \
    || say "The tray will show its icon without a menu until PyGObject is installed: run
  sudo apt-get install libgirepository1.0-dev libcairo2-dev pkg-config gir1.2-gtk-3.0
  $venv/bin/python -m pip install $shown"
fi

# --- The command on PATH ---
mkdir -p "$bindir"
ln -sfn "$moltbot" "$bindir/moltbot"
record "$bindir/moltbot"
say "Installed $version: $bindir/moltbot -> $moltbot"

# --- Optional: the systemd user unit ---
if [ "$service" = 1 ]; then
  mkdir -p "$(dirname "$unit")"
  {
    say "[Unit]"
    say "Description=Moltbot AI assistant gateway"
    say "After=network-online.target"
    say ""
    say "[Service]"
    say "# notify: READY once serving; the event loop pings the watchdog every 15 s, so a gateway"
    say "# that stops answering (its loop stuck) is restarted, not only one that exits."
    say "Type=notify"
    say "NotifyAccess=main"
    say "WatchdogSec=30"
    say "ExecStart=$moltbot gateway start --foreground"
    [ -n "${MOLTBOT_HOME:-}" ] && say "Environment=MOLTBOT_HOME=$MOLTBOT_HOME"
    say "# SIGTERM to the gateway only: it stops its skill hosts itself, after replies in flight."
    say "KillMode=mixed"
    say "TimeoutStopSec=30"
    say "Restart=on-failure"
    say "RestartSec=5"
    say ""
    say "[Install]"
    say "WantedBy=default.target"
  } >"$unit"
  record "$unit"
  say "Service unit: $unit"
fi

# --- Optional: menu entry, icon, tray at login ---
if [ "$desktop" = 1 ]; then
  mkdir -p "$(dirname "$icon")" "$(dirname "$menu_entry")"
  icon_script=""   # beside this script, or in the checkout MOLTBOT_SOURCE names
  for candidate in "${script_dir:+$script_dir/icon.py}" "$source_spec/installers/icon.py"; do
    if [ -n "$candidate" ] && [ -f "$candidate" ]; then icon_script="$candidate"; break; fi
  done
  if [ -n "$icon_script" ]; then
    "$venv/bin/python" "$icon_script" --png "$icon"
    record "$icon"
  else
    say "No installers/icon.py beside this script: the menu entry gets the theme's default icon."
  fi
  entry() {
    say "[Desktop Entry]"
    say "Type=Application"
    say "Name=Moltbot"
    say "GenericName=AI assistant gateway"
    say "Comment=Start and stop your private AI assistant and open its console"
    say "Exec=$moltbot tray"
    [ -f "$icon" ] && say "Icon=$icon"
    say "Terminal=false"
    say "Categories=Network;Chat;"
    say "StartupNotify=false"
  }
  entry >"$menu_entry"
  record "$menu_entry"
  # the tray's own code writes the entry its "Start at login" item reads: one name, one place
  autostart_entry="$(XDG_CONFIG_HOME="$config_home" "$venv/bin/python" -m desktop --autostart on \
    ${MOLTBOT_HOME:+--home "$MOLTBOT_HOME"})"
  record "$autostart_entry"
  say "Menu entry: $menu_entry; the tray starts at login ($autostart_entry)"
fi

# --- How to reach the command ---
case ":$PATH:" in
  *":$bindir:"*) say "Run: moltbot --help" ;;
  *)
    shell_name="$(basename "${SHELL:-sh}")"
    case "$shell_name" in
      bash) line="echo 'export PATH=\"$bindir:\$PATH\"' >> ~/.bashrc && . ~/.bashrc" ;;
      zsh) line="echo 'export PATH=\"$bindir:\$PATH\"' >> ~/.zshrc && . ~/.zshrc" ;;
      fish) line="fish_add_path $bindir" ;;
      *) line="echo 'export PATH=\"$bindir:\$PATH\"' >> ~/.profile && . ~/.profile" ;;
    esac
    say "$bindir is not on your PATH. Add it ($shell_name):"
    say "  $line"
    say "Until then run Moltbot by its full path: $bindir/moltbot --help"
    ;;
esac

# --- Is there a model to talk to? Each endpoint config.yaml names (before the first start: the
# one it will name), checked as `moltbot doctor` checks them, each with its fix ---
MOLTBOT_HOME="$workspace" "$venv/bin/python" - <<'EOF' || true
from gateway.ops.doctor import model_checks
from gateway.common.workspace import default_workspace

for ok, what, fix in model_checks(default_workspace()):
    print(f"{what[0].upper()}{what[1:]}" + ("" if ok else f"\n  fix: {fix}"))
EOF

# --- Start ---
if [ "$service" = 1 ]; then
  if has_user_systemd; then
    systemctl --user daemon-reload
    if [ "$start" = 1 ]; then
      systemctl --user enable moltbot.service
      systemctl --user restart moltbot.service   # starts it, or runs the new version
      say "The gateway runs as a systemd user service: systemctl --user status moltbot"
    else
      say "Start the service with: systemctl --user enable --now moltbot"
    fi
    say "To keep it running after you log out: loginctl enable-linger $USER"
    exit 0
  fi
  say "systemctl --user is not available here (no systemd user manager for this session)."
  say "Where it is, run: systemctl --user daemon-reload && systemctl --user enable --now moltbot"
fi
if [ "$start" = 1 ]; then
  "$moltbot" gateway start
else
  say "Start the gateway with: $bindir/moltbot gateway start"
fi
