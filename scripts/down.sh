#!/usr/bin/env bash
# `make down`: stop the daemon and remove Sluice's table. Other tables are untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
state="${SLUICE_STATE_DIR:-/var/lib/sluice}"
if [[ -d /run/systemd/system ]] && systemctl is-enabled --quiet sluice.service 2>/dev/null; then
  systemctl disable --now sluice.service sluice-restore.service
  echo "down: stopped and disabled sluice.service and sluice-restore.service"
elif [[ -f "$state/daemon.pid" ]]; then
  pid="$(cat "$state/daemon.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "down: stopped the daemon (pid $pid)"
  fi
fi
bin/sluice off
