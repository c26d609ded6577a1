#!/usr/bin/env bash
# `make up`: Sluice on this host with the shipped default policy in audit mode
# (nothing is blocked; what would be blocked is logged), and the daemon (DNS
# guard observing passively in audit mode, event collector, metrics on the
# root-only socket $SLUICE_STATE_DIR/metrics.sock). Prints what it did and how to undo it.
set -euo pipefail
cd "$(dirname "$0")/.."
policy="${1:-/etc/sluice/policy.yaml}"
state="${SLUICE_STATE_DIR:-/var/lib/sluice}"
log=/var/log/sluice/daemon.log

if [[ ! -f "$policy" ]]; then
  install -D -m 0644 policies/default.yaml "$policy"
  echo "up: installed the default policy at $policy (audit mode)"
else
  echo "up: keeping the existing policy at $policy"
fi
bin/sluice check "$policy"
bin/sluice apply "$policy"

if [[ -d /run/systemd/system ]]; then
  # The daemon runs on the policy just applied (the state directory says which); the restore
  # unit puts the applied ruleset back at boot, before the network is up.
  install -D -m 0644 packaging/sluice.service /etc/systemd/system/sluice.service
  install -D -m 0644 packaging/sluice-restore.service /etc/systemd/system/sluice-restore.service
  install -D -m 0644 packaging/sluice-failed.service /etc/systemd/system/sluice-failed.service
  systemctl daemon-reload
  systemctl enable --quiet sluice-restore.service
  systemctl enable --now sluice.service
  how_stop="systemctl disable --now sluice sluice-restore"
  echo "up: daemon started as systemd unit sluice.service"
else
  pidfile="$state/daemon.pid"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "up: the daemon already runs (pid $(cat "$pidfile")); it adopted the policy just applied"
  else
    mkdir -p "$(dirname "$log")"
    setsid bin/sluice daemon "$policy" >>"$log" 2>&1 </dev/null &
    for _ in $(seq 1 50); do
      [[ -S "$state/control.sock" ]] && break
      sleep 0.1
    done
    [[ -S "$state/control.sock" ]] || { echo "up: the daemon did not start; see $log" >&2; exit 1; }
    echo "up: daemon started in the background (pid $(cat "$pidfile")), logging to $log (no systemd here)"
  fi
  how_stop="make down"
fi

echo
bin/sluice status || true
cat <<MSG

Sluice is loaded in this host's network namespace, in audit mode: nothing is blocked.
  See it:        sluice status | sluice log | sluice dns | sluice connections | sluice top
                 curl -s --unix-socket $state/metrics.sock http://localhost/metrics   |   nft list table inet sluice
  Explain:       sluice explain 198.18.1.10 443/tcp
  Enforce:       set 'mode: enforce' in $policy, then: sluice apply --confirm 60 && sluice confirm
  Undo:          make down   (stops the daemon and runs sluice off: removes Sluice's table; nothing else is touched)
MSG
[[ "$how_stop" == "make down" ]] || echo "                 or: $how_stop && sluice off"
