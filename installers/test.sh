#!/usr/bin/env bash
# Install Moltbot with its test tools into ./.venv and run every check: ruff, mypy, pytest.
# Tests drive real programs from Debian: Chromium (browser tests, through Playwright), nginx and
# openssl (the TLS proxy config), Mosquitto and its clients (the broker config),
# desktop-file-validate and shellcheck (the installers' files), binutils (PyInstaller reads
# binaries with objdump), gnome-keyring with dbus (a real Secret Service for the keyring), and
# Xvfb, trayer and GTK's introspection libraries (the tray app, run for real under Xvfb). As root this installs those that are missing with apt-get; otherwise
# install them yourself (sudo apt-get install chromium nginx ...); a test whose program is
# missing is skipped and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pair in chromium:chromium nginx:nginx openssl:openssl mosquitto:mosquitto \
    mosquitto_sub:mosquitto-clients desktop-file-validate:desktop-file-utils \
    shellcheck:shellcheck objdump:binutils gnome-keyring-daemon:gnome-keyring \
    dbus-run-session:dbus Xvfb:xvfb trayer:trayer pkg-config:pkg-config bwrap:bubblewrap; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
# the tray's GTK menu: PyGObject builds against these, and runs with GTK's introspection data
for lib in libgirepository1.0-dev libcairo2-dev gir1.2-gtk-3.0; do
  dpkg -s "$lib" >/dev/null 2>&1 || need+=("$lib")
done
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -m venv .venv
# shellcheck source=/dev/null
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[test,tray]"
ruff check .
mypy
python -m pytest -q "$@"
