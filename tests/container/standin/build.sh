#!/usr/bin/env bash
# Build a local stand-in for gcr.io/tfx-oss-public/tfx:$TFX_VERSION (no registry is reachable here).
#
# What it copies from the real image (see ../shared/base-images/tfx-1.16.0/FACTS.md):
#   - Python 3.10 at /opt/conda/bin/python, with python/pip on PATH and ENV pip=/opt/conda/bin/pip
#   - tfx[docker-image]==$TFX_VERSION + tensorflow==2.16.2 installed with `python -m pip`
#     under the base image's pins (pins.txt) as constraints
#   - WORKDIR /tfx/src, ENTRYPOINT ["/opt/apache/beam/boot"]
# What differs: a Debian 12 minbase rootfs (debootstrap, plus gcc/g++ as the DLVM base has, for
# the sdists tfx[docker-image] pulls in: mmh, pyfarmhash) instead of the Deep Learning VM image,
# pyenv's CPython 3.10 copied in instead of conda's, and the host's CA bundle (only here, never in
# the product image) so pip inside `docker build` can reach the registry through this network.
#
# Usage: build.sh PINS_FILE            (env: TFX_VERSION, CACHE_DIR, PYTHON310)
# The image is rebuilt only when this recipe, the pins or the Python change (label recipe-hash).
set -euo pipefail

PINS=${1:?usage: build.sh PINS_FILE}
TFX_VERSION=${TFX_VERSION:-1.16.0}
TAG="gcr.io/tfx-oss-public/tfx:${TFX_VERSION}"
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/trainer-runtime}
PYTHON310=${PYTHON310:-$(ls -d "$HOME"/.pyenv/versions/3.10.* 2>/dev/null | tail -n 1)/bin/python3.10}
PYHOME=$(cd "$(dirname "$PYTHON310")/.." && pwd)
export DOCKER_BUILDKIT=0

HASH=$( (cat "$HERE/build.sh" "$HERE/Dockerfile" "$PINS"; echo "$TFX_VERSION $PYHOME") | sha256sum | cut -c1-16)
if [ "$(docker image inspect -f '{{ index .Config.Labels "recipe-hash" }}' "$TAG" 2>/dev/null)" = "$HASH" ]; then
  echo "==> stand-in $TAG is current (recipe $HASH)"
  exit 0
fi

ROOTFS_TAR="$CACHE_DIR/standin-rootfs-$HASH.tar"
if [ ! -f "$ROOTFS_TAR" ]; then
  echo "==> debootstrap Debian 12 minbase rootfs"
  command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  debootstrap --variant=minbase \
    --include=ca-certificates,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,zlib1g,libreadline8,libncursesw6,libuuid1,libexpat1,libgdbm6,libcrypt1,libnsl2,libtirpc3,libgomp1,git,gcc,g++,libc6-dev \
    bookworm "$WORK/rootfs" http://deb.debian.org/debian > "$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; exit 1; }
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
  mkdir -p "$CACHE_DIR"
  tar -C "$WORK/rootfs" -cf "$ROOTFS_TAR.tmp" . && mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
fi

echo "==> docker import rootfs"
docker import "$ROOTFS_TAR" "trainer-runtime-standin-rootfs:$HASH" >/dev/null

CONTEXT=$(mktemp -d)
cp "$PINS" "$CONTEXT/pins.txt"
echo "==> docker build $TAG (pip installs tfx[docker-image]==$TFX_VERSION under pins; several minutes the first time)"
docker build --network host -f "$HERE/Dockerfile" --build-arg ROOTFS="trainer-runtime-standin-rootfs:$HASH" \
  --build-arg TFX_VERSION="$TFX_VERSION" --label recipe-hash="$HASH" -t "$TAG" "$CONTEXT"
rm -rf "$CONTEXT"
# Older recipes' leftovers: rootfs images, cached tarballs, dangling layers.
docker images --format '{{.Repository}}:{{.Tag}}' trainer-runtime-standin-rootfs | grep -v ":$HASH\$" \
  | xargs -r docker rmi >/dev/null 2>&1 || true
find "$CACHE_DIR" -maxdepth 1 -name 'standin-rootfs-*.tar' ! -name "standin-rootfs-$HASH.tar" -delete
docker image prune -f >/dev/null
echo "==> stand-in $TAG built (recipe $HASH)"
