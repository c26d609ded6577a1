#!/usr/bin/env bash
# `make up`: Sluice on this host with the shipped default policy in audit mode
# (nothing is blocked; what would be blocked is logged). Prints what it did and
# how to undo it.
set -euo pipefail
cd "$(dirname "$0")/.."
policy="${1:-/etc/sluice/policy.yaml}"
if [[ ! -f "$policy" ]]; then
  install -D -m 0644 policies/default.yaml "$policy"
  echo "up: installed the default policy at $policy (audit mode)"
else
  echo "up: keeping the existing policy at $policy"
fi
bin/sluice check "$policy"
bin/sluice apply "$policy"
echo
bin/sluice status || true
cat <<MSG

Sluice is loaded in this host's network namespace.
  See it:        sluice status   |   sluice plan   |   nft list table inet sluice
  Explain:       sluice explain 198.18.1.10 443/tcp
  Enforce:       set 'mode: enforce' in $policy, then: sluice apply --confirm 60 && sluice confirm
  Undo:          sluice off      (or: make down) removes Sluice's table; nothing else is touched
MSG
