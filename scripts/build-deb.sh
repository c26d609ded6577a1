#!/usr/bin/env bash
# `make deb` (scripts/build-deb.sh [OUTDIR]): builds dist/sluice_VERSION_ARCH.deb
# (or in OUTDIR) with dpkg-deb from what the
# set-up built (the compiled JavaScript, the native addon, the production npm
# packages); downloads nothing. Prints the path of the package.
#
# Layout: /usr/lib/sluice (the program), /usr/bin/sluice (a symlink),
# /lib/systemd/system/sluice{,-restore,-failed}.service, /etc/sluice/policy.yaml (the
# default policy, audit mode, a conffile), /usr/share/doc/sluice.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

[[ -f build/Release/sluice_native.node && -f build/Release/sluice_bpf.node && -f dist/src/cli/main.js ]] || { echo "build-deb: run make setup first" >&2; exit 1; }
version=$(node -p 'require("./package.json").version')
debver="$version-1"
arch=$(dpkg --print-architecture)
outdir="${1:-$root/dist}"
out="$outdir/sluice_${debver}_${arch}.deb"
stage=$(mktemp -d "${TMPDIR:-/tmp}/sluice-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
pkg="$stage/pkg"
lib="$pkg/usr/lib/sluice"

install -d "$lib/bin" "$lib/build/Release" "$lib/policies" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/sluice" "$pkg/usr/share/doc/sluice" "$pkg/DEBIAN"

# The program: compiled sources only (no tests, no benchmarks, no source maps).
install -d "$lib/dist"
(cd dist && find src \( -name '*.js' -o -path 'src/daemon/dashboard-assets/*' \) -type f -print0 | tar --null -T - -cf -) | tar -xf - -C "$lib/dist"
install -m 0755 bin/sluice "$lib/bin/sluice"
install -m 0644 build/Release/sluice_native.node "$lib/build/Release/sluice_native.node"
# The attribution probes and their loader (libbpf1 at run time); a host where they cannot load falls back.
install -m 0644 build/Release/sluice_bpf.node "$lib/build/Release/sluice_bpf.node"
if [[ -f build/bpf/attribution.bpf.o ]]; then
  install -d "$lib/build/bpf"
  install -m 0644 build/bpf/attribution.bpf.o "$lib/build/bpf/attribution.bpf.o"
fi
install -m 0644 policies/encrypted-dns.txt "$lib/policies/encrypted-dns.txt"
node -e 'const p = require("./package.json"); process.stdout.write(JSON.stringify({ name: p.name, version: p.version, type: p.type, license: p.license, dependencies: p.dependencies }, null, 2) + "\n")' >"$lib/package.json"

# Runtime npm packages: what the program loads, not what installing them needed (prebuild-install and the like).
for m in yaml zod hono @hono/node-server bindings file-uri-to-path; do
  install -d "$lib/node_modules/$m"
  (cd "node_modules/$m" && find . -type f ! -name '*.md' ! -name '*.map' ! -name '*.ts' ! -name '.*' ! -name 'bin.mjs' ! -path './docs/*' ! -path './test/*' -print0 | tar --null -T - -cf -) | tar -xf - -C "$lib/node_modules/$m"
done
install -d "$lib/node_modules/better-sqlite3/build/Release"
cp -r node_modules/better-sqlite3/lib node_modules/better-sqlite3/package.json node_modules/better-sqlite3/LICENSE "$lib/node_modules/better-sqlite3/"
install -m 0644 node_modules/better-sqlite3/build/Release/better_sqlite3.node "$lib/node_modules/better-sqlite3/build/Release/"
# Native objects without their debugging symbols; everything readable, nothing writable but by root.
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$lib/build/Release/sluice_native.node" "$lib/build/Release/sluice_bpf.node" "$lib/node_modules/better-sqlite3/build/Release/better_sqlite3.node"
find "$lib" -type d -exec chmod 0755 {} +
find "$lib" -type f -exec chmod 0644 {} +
chmod 0755 "$lib/bin/sluice"
ln -s ../lib/sluice/bin/sluice "$pkg/usr/bin/sluice"

# Units: the ones `make up` installs, pointed at the packaged program.
for u in sluice.service sluice-restore.service sluice-failed.service; do
  sed -e 's|/usr/local/bin/sluice|/usr/bin/sluice|g' -e 's|/usr/local/bin|/usr/bin|g' -e 's|file:///usr/local/share/doc/sluice/README.md|file:///usr/share/doc/sluice/README.md.gz|' "packaging/$u" >"$pkg/lib/systemd/system/$u"
  chmod 0644 "$pkg/lib/systemd/system/$u"
done
install -m 0644 policies/default.yaml "$pkg/etc/sluice/policy.yaml"

gzip -9n <README.md >"$pkg/usr/share/doc/sluice/README.md.gz"
# The attribution probes are eBPF bytecode, which lintian reads as a binary for another machine.
if [[ -f "$lib/build/bpf/attribution.bpf.o" ]]; then
  install -d "$pkg/usr/share/lintian/overrides"
  printf '# eBPF bytecode (the attribution probes), run by the kernel, not a foreign-architecture binary
sluice: binary-from-other-architecture [usr/lib/sluice/build/bpf/attribution.bpf.o]
' >"$pkg/usr/share/lintian/overrides/sluice"
  chmod 0644 "$pkg/usr/share/lintian/overrides/sluice"
fi
cat >"$pkg/usr/share/doc/sluice/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: sluice

Files: *
Copyright: 2026 the Sluice authors
License: MIT

Files: usr/lib/sluice/node_modules/*
Copyright: the authors of yaml, zod, better-sqlite3, bindings and file-uri-to-path
License: MIT and ISC (see each package's LICENSE file)

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the "Software"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
 THE SOFTWARE.
EOF
date=$(git log -1 --format=%aD 2>/dev/null || date -R)
printf 'sluice (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n -- Sluice developers <sluice@example.org>  %s\n' "$debver" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$date" | gzip -9n >"$pkg/usr/share/doc/sluice/changelog.Debian.gz"
find "$pkg/usr/share/doc" "$pkg/etc" -type f -exec chmod 0644 {} +

installed=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
# The native objects are built against this Node's ABI: the package needs the same major version.
nodemajor=$(node -p 'process.versions.node.split(".")[0]')
cat >"$pkg/DEBIAN/control" <<EOF
Package: sluice
Version: $debver
Architecture: $arch
Maintainer: Sluice developers <sluice@example.org>
Installed-Size: $installed
Depends: nodejs (>= $nodemajor), nodejs (<< $((nodemajor + 1))), nftables, libc6, libstdc++6, libbpf1
Recommends: publicsuffix
Section: net
Priority: optional
Homepage: https://example.org/sluice
Description: default-deny egress firewall with a DNS guard
 Sluice enforces one declarative outbound policy (ports, protocols,
 addresses, domain names, users, systemd services) in the kernel with
 nftables sets, answers DNS only for allowed names and opens exactly the
 addresses they resolve to, and records every blocked attempt with the
 process behind it. The default policy is in audit mode: nothing is blocked.
EOF
echo /etc/sluice/policy.yaml >"$pkg/DEBIAN/conffiles"
for s in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$s" "$pkg/DEBIAN/$s"
done

mkdir -p "$outdir"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$out" >/dev/null
echo "$out"
