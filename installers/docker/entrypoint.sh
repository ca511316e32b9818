#!/bin/sh
# Seed the workspace volume with the container's config.yaml on first start (an existing one is
# the owner's and is kept), then run the command: by default the gateway in the foreground.
set -eu
home="${MOLTBOT_HOME:-/data}"
if [ ! -f "$home/config.yaml" ]; then
  mkdir -p "$home"
  cp "$(dirname "$0")/../docker-config.yaml" "$home/config.yaml"
  echo "moltbot: created $home/config.yaml (bearer token from \$MOLTBOT_TOKEN)"
fi
exec "$@"
