#!/usr/bin/env bash
# Installs everything Sluice needs on a fresh Debian machine, idempotently:
# apt packages that are missing, npm dependencies (which builds the native
# addon through node-gyp), the TypeScript build, and `sluice` on PATH.
# Nothing here relies on what an earlier run installed by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

# nsd (the authoritative server of the DNS tests), dnsperf, dnsmasq-base and unbound (bench:dns's peers)
# run only inside test namespaces; dnsmasq-base rather than dnsmasq, which would start a resolver on
# the host; unbound's service is neither started at install nor enabled (below).
# systemd provides systemd-analyze, which checks the units in the tests (it need not be PID 1).
# rsyslog is the real receiver the syslog alert sink is tested against, also only in namespaces.
# binutils (strip) and lintian build and check the Debian package (make deb; dpkg-deb is dpkg's).
# clang, bpftool, libbpf-dev (and pkg-config, which finds it) build the attribution probes and their
# loader; libbpf1 is what the loader needs at run time.
# publicsuffix is Debian's copy of the Public Suffix List: `sluice suggest` finds registered domains with it.
# chromium is the browser the dashboard's browser tests drive (playwright-core, an npm dev dependency,
# never downloads one); it runs only inside test namespaces. firefox-esr is the second, driven over
# WebDriver BiDi by puppeteer-core (also a dev dependency that never downloads a browser), likewise.
APT_PACKAGES=(nftables iproute2 conntrack iptables iputils-ping util-linux procps ca-certificates python3 make gcc g++ nsd dnsperf dnsmasq-base unbound systemd rsyslog binutils lintian clang llvm bpftool libbpf-dev pkg-config publicsuffix chromium firefox-esr)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing apt packages: ${missing[*]}"
  # Debian starts a package's service on install (nsd would listen on the host's port 53):
  # a policy-rc.d that refuses starts, for the length of the install, unless one exists.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# sluice setup.sh: no service starts while it installs packages\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [[ -x $policy ]] && grep -q 'sluice setup.sh' "$policy"; then rm -f "$policy"; trap - EXIT; fi
  # Nor at the next boot: nsd, unbound and rsyslog here serve tests and benchmarks in namespaces only.
  for svc in nsd unbound rsyslog; do
    if [[ " ${missing[*]} " == *" $svc "* ]] && command -v systemctl >/dev/null; then
      systemctl disable --quiet "$svc.service" 2>/dev/null || true
    fi
  done
fi

if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json || ! -f build/Release/sluice_native.node || ! -f build/Release/sluice_bpf.node ]]; then
  echo "setup: installing npm dependencies and building the native addon"
  npm ci --no-audit --no-fund --loglevel=error
elif [[ native/sluice_native.c -nt build/Release/sluice_native.node || native/dns_fast.c -nt build/Release/sluice_native.node || native/sluice_bpf.c -nt build/Release/sluice_bpf.node || binding.gyp -nt build/Release/sluice_native.node ]]; then
  echo "setup: rebuilding the native addon"
  npm run --silent install
fi

# After the addon: node-gyp's rebuild empties build/.
scripts/build-bpf.sh

echo "setup: compiling TypeScript"
# The one definition of a build (package.json "build"): tsc, the dashboard's assets, the vendored
# packages and `sluice run`'s bundle.
npm run --silent build

if [[ -w /usr/local/bin ]]; then
  ln -sfn "$PWD/bin/sluice" /usr/local/bin/sluice
fi
echo "setup: done ($(node --version), $(nft --version))"
