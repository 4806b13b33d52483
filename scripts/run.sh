#!/usr/bin/env bash
# Starts the default system (Caddyfile) with the built Caddy and prints
# where everything is.
set -euo pipefail
cd "$(dirname "$0")/.."
export VIDEO_DIR="${VIDEO_DIR:-$PWD/testdata}"
if [ ! -d "$VIDEO_DIR" ]; then
  echo "VIDEO_DIR $VIDEO_DIR is not a folder" >&2
  exit 1
fi
cat <<TXT
edgetier: load balancer on :8080, edges on 127.0.0.1:9001-9003, videos from $VIDEO_DIR

  video        http://localhost:8080/
  any file     http://localhost:8080/videos/NAME
  dashboard    http://localhost:8080/dashboard
  live stream  ws://localhost:8080/ws
  JSON         http://localhost:8080/metrics
  Prometheus   http://localhost:8080/prometheus
  agents       http://127.0.0.1:9001/_edgetier/load (and 9002, 9003)

Ctrl-C stops it.
TXT
exec ./bin/caddy run --config Caddyfile --adapter caddyfile
