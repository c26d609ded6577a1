#!/usr/bin/env bash
# Compiles the attribution probes (native/bpf/attribution.bpf.c) into
# build/bpf/attribution.bpf.o with Debian's clang, against a vmlinux.h that
# bpftool writes from this kernel's BTF. The object is CO-RE: libbpf fits it
# to the running kernel's layouts at load, so it also runs on other kernels
# with BTF. Without BTF here nothing is built and Sluice attributes by the
# socket table, as it says at start.
set -euo pipefail
cd "$(dirname "$0")/.."
src=native/bpf/attribution.bpf.c
out=build/bpf
obj=$out/attribution.bpf.o

if [[ ! -r /sys/kernel/btf/vmlinux ]]; then
  echo "setup: this kernel has no BTF (/sys/kernel/btf/vmlinux): attribution probes not built; Sluice falls back to the socket table"
  exit 0
fi
mkdir -p "$out"
if [[ ! -s $out/vmlinux.h ]]; then
  bpftool btf dump file /sys/kernel/btf/vmlinux format c >"$out/vmlinux.h.tmp"
  mv "$out/vmlinux.h.tmp" "$out/vmlinux.h"
fi
if [[ -s $obj && $obj -nt $src && $obj -nt $0 ]]; then exit 0; fi
case "$(uname -m)" in
  x86_64) arch=x86 ;;
  aarch64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac
echo "setup: compiling the attribution probes"
clang -O2 -g -target bpf "-D__TARGET_ARCH_$arch" -Wall -Werror -I "$out" -c "$src" -o "$obj.tmp"
mv "$obj.tmp" "$obj"
