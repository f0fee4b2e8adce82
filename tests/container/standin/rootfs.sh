#!/usr/bin/env bash
# A Debian minbase rootfs for a stand-in base, as a tarball: debootstrap SUITE with PACKAGES, then
# Python 3.10 from PYHOME at /opt/conda (as conda's is in the real bases). Called by build.sh, which
# caches the tarball by the hash of this file and its arguments.
#
# Usage: rootfs.sh SUITE PACKAGES(comma-separated) PYHOME OUT_TAR
set -euo pipefail
SUITE=${1:?suite} LIBS=${2:?packages} PYHOME=${3:?python home} OUT=${4:?output tarball}

echo "==> debootstrap Debian $SUITE minbase rootfs"
command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
debootstrap --variant=minbase --include="$LIBS" "$SUITE" "$WORK/rootfs" http://deb.debian.org/debian \
  > "$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; exit 1; }
echo "==> Python 3.10 from $PYHOME -> /opt/conda"
mkdir -p "$WORK/rootfs/opt/conda"
cp -a "$PYHOME/." "$WORK/rootfs/opt/conda/"
# pyenv's interpreter has an absolute RUNPATH to its old home; ld.so.cache finds libpython instead.
echo /opt/conda/lib > "$WORK/rootfs/etc/ld.so.conf.d/conda.conf"
chroot "$WORK/rootfs" /sbin/ldconfig
grep -rlI "^#!$PYHOME/bin/python" "$WORK/rootfs/opt/conda/bin" | xargs -r sed -i "1s|^#!.*|#!/opt/conda/bin/python3.10|"
ln -sf python3.10 "$WORK/rootfs/opt/conda/bin/python"
ln -sf pip3 "$WORK/rootfs/opt/conda/bin/pip" 2>/dev/null || true
# Only the stand-in carries the host's CA bundle (this network intercepts TLS to the registry).
cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
mkdir -p "$(dirname "$OUT")"
tar -C "$WORK/rootfs" -cf "$OUT.tmp" . && mv "$OUT.tmp" "$OUT"
