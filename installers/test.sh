#!/usr/bin/env bash
# Install Moltbot with its test tools into ./.venv and run every check: ruff, mypy, pytest.
#   ./installers/test.sh [PYTEST ARGS]           the locked versions (installers/lock/test.txt),
#       the tests spread over every core (pytest-xdist; `-n 0` runs them in this one process)
#   ./installers/test.sh --latest [PYTEST ARGS]  the newest releases pyproject.toml allows, in
#       ./.venv-latest (the locked .venv stays): prints which differ from the lock, then the checks
# Python packages come hash-checked from installers/lock/test.txt, then Moltbot itself (editable,
# --no-deps). watchdog 6.0.0, 7.1.0 and 7.1.1 are also installed, each alone, into
# .venv/watchdog-matrix/<version>/ (from installers/lock/watchdog-<version>.txt): the watcher's
# test puts one first on a child process's PYTHONPATH (tests/locks.py: watchdog_matrix()).
# Tests drive real programs from Debian: Chromium (browser tests, through Playwright), nginx and
# openssl (the TLS proxy config), Mosquitto and its clients (the broker config),
# desktop-file-validate and shellcheck (the installers' files), binutils (PyInstaller reads
# binaries with objdump), gnome-keyring with dbus (a real Secret Service for the keyring), and
# Xvfb, trayer and GTK's introspection libraries (the tray app, run for real under Xvfb). As root
# this installs those that are missing with apt-get; otherwise install them yourself (sudo
# apt-get install chromium nginx ...); a test whose program is missing is skipped and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
latest=0
if [ "${1:-}" = --latest ]; then latest=1; shift; fi
need=()
for pair in chromium:chromium nginx:nginx openssl:openssl mosquitto:mosquitto \
    mosquitto_sub:mosquitto-clients desktop-file-validate:desktop-file-utils \
    shellcheck:shellcheck objdump:binutils gnome-keyring-daemon:gnome-keyring \
    dbus-run-session:dbus Xvfb:xvfb trayer:trayer pkg-config:pkg-config bwrap:bubblewrap \
    podman:podman podman-compose:podman-compose runc:runc busybox:busybox-static; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
# the tray's GTK menu: PyGObject builds against these, and runs with GTK's introspection data
# and a Chinese font, so the console's Chinese screenshots show (and measure) real glyphs
for lib in libgirepository1.0-dev libcairo2-dev gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1 \
    fonts-wqy-microhei; do
  dpkg -s "$lib" >/dev/null 2>&1 || need+=("$lib")
done
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

lock=installers/lock/test.txt
venv=.venv
[ "$latest" = 0 ] || venv=.venv-latest
python3 -m venv "$venv"
# shellcheck source=/dev/null
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
if [ "$latest" = 0 ]; then
  python -m pip install -q --require-hashes -r "$lock"
  # hatchling, the build backend, is in the lock: build with it rather than an unpinned download
  python -m pip install -q --no-deps --no-build-isolation -e .
else
  python -m pip install -q --upgrade --upgrade-strategy eager -e ".[test,tray]"
  echo "--latest: the newest releases pyproject.toml allows, in $venv (the lock is $lock)"
  python -m tests.locks diff "$lock" latest
fi

# watchdog releases for the watcher's test, each alone in its folder; a folder is reinstalled
# only when missing, and one whose lock file is gone is removed.
matrix=.venv/watchdog-matrix
mkdir -p "$matrix"
for folder in "$matrix"/*/; do
  [ -d "$folder" ] || continue
  version="$(basename "$folder")"
  [ -f "installers/lock/watchdog-$version.txt" ] || rm -rf "$folder"
done
for file in installers/lock/watchdog-*.txt; do
  version="${file##*/watchdog-}"; version="${version%.txt}"
  [ -d "$matrix/$version/watchdog-$version.dist-info" ] && continue
  rm -rf "${matrix:?}/$version"
  python -m pip install -q --require-hashes --no-deps --target "$matrix/$version" -r "$file"
done

ruff check .
mypy
# one worker per core, each taking whole modules (their shared gateways stay shared): the suite
# spends most of its time in the gateways it starts, and a 2-core machine runs it in about half
python -m pytest -q -n auto --dist loadfile "$@"
