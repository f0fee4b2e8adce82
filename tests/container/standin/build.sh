#!/usr/bin/env bash
# Build a local stand-in for gcr.io/tfx-oss-public/tfx:$TFX_VERSION (no registry is reachable here).
#
# What it copies from the real image (../shared/base-images/tfx-1.16.0/FACTS.md, bases/tfx-*/FACTS.md):
#   - Python 3.10 at /opt/conda/bin/python, with python/pip on PATH and ENV pip=/opt/conda/bin/pip
#   - tfx[docker-image]==$TFX_VERSION + that base's TensorFlow (and, 1.17+, tf_keras and its setuptools)
#     installed with `python -m pip` under the base image's pins (pins.txt) as constraints; 1.21's
#     eager upgrade and its unpinned upgrades after it
#   - the base's ENV (1.17+: TF_USE_LEGACY_KERAS=1 ...), WORKDIR /tfx/src, ENTRYPOINT
#     ["/opt/apache/beam/boot"] (1.17+ delete that file, as their builds do)
# What differs: a Debian minbase rootfs (debootstrap: 12 bookworm for 1.16, 13 trixie for 1.17+ whose
# wheels need glibc 2.39; plus gcc/g++ as the DLVM base has, for the sdists tfx[docker-image] pulls in:
# mmh, pyfarmhash) instead of the Deep Learning VM image,
# pyenv's CPython 3.10 copied in instead of conda's, and the host's CA bundle (only here, never in
# the product image) so pip inside `docker build` can reach the registry through this network.
#
# Usage: build.sh PINS_FILE            (env: TFX_VERSION, CACHE_DIR, PYTHON310)
# The image is rebuilt only when this recipe, the pins or the Python change (label recipe-hash).
set -euo pipefail

PINS=${1:?usage: build.sh PINS_FILE}
TFX_VERSION=${TFX_VERSION:-1.16.0}
TAG="gcr.io/tfx-oss-public/tfx:${TFX_VERSION}"
# Per base: Debian suite, the packages its Dockerfile installs beside tfx, pip's flags, its upgrades after.
LIBS=ca-certificates,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,zlib1g,libncursesw6,libuuid1,libexpat1,libcrypt1,libnsl2,libgomp1,git,gcc,g++,libc6-dev
LEGACY_KERAS_ENV='ENV TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=3 TF_XLA_FLAGS=--tf_xla_enable_xla_devices=false'
AFTER=""
INSTALL_FLAGS=""
# What the base's pins leave open, pinned to the versions our lock of that base resolved (uv): only for
# 1.21, whose eager upgrade sent pip 26.1 backtracking through kfp-pipeline-spec for over 10 minutes here
# (the real build installs TFX's own wheels and never got there). The pins themselves are unchanged.
RESOLVED_FROM=""
case "$TFX_VERSION" in
  1.16.0) SUITE=bookworm; LIBS="$LIBS,libssl3,libreadline8,libtirpc3,libgdbm6"; WITH="tensorflow==2.16.2"
          PIP_VERSION=24.2; BASE_LINES="" ;;
  1.17.3) SUITE=trixie; LIBS="$LIBS,libssl3t64,libreadline8t64,libtirpc3t64,libgdbm6t64"
          WITH="tf_keras setuptools==78.1.1 tensorflow==2.17.1"; PIP_VERSION=24.2
          BASE_LINES="$LEGACY_KERAS_ENV"$'\n''RUN rm -rf /opt/apache/beam' ;;
  1.21.0) SUITE=trixie; LIBS="$LIBS,libssl3t64,libreadline8t64,libtirpc3t64,libgdbm6t64"
          WITH="tf_keras setuptools==82.0.0 tensorflow==2.21.0"; PIP_VERSION=26.1.2
          INSTALL_FLAGS="--upgrade --upgrade-strategy=eager"; RESOLVED_FROM=bases/tfx-1.21.0/requirements.lock
          AFTER="lxml idna python-dotenv aiohttp protobuf>=6.33.5 cryptography>=48.0.1 bleach>=6.4.0 pygments>=2.20.0 pyjwt"
          BASE_LINES="$LEGACY_KERAS_ENV"$'\n''RUN rm -rf /opt/apache/beam' ;;
  *) echo "no stand-in recipe for TFX $TFX_VERSION (known: 1.16.0 1.17.3 1.21.0)" >&2; exit 2 ;;
esac
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/trainer-runtime}
PYTHON310=${PYTHON310:-$(ls -d "$HOME"/.pyenv/versions/3.10.* 2>/dev/null | tail -n 1)/bin/python3.10}
PYHOME=$(cd "$(dirname "$PYTHON310")/.." && pwd)
export DOCKER_BUILDKIT=0

REPO=$(cd "$HERE/../../.." && pwd)
resolved() { [ -z "$RESOLVED_FROM" ] || grep -oE '^[A-Za-z0-9_.-]+==[^ ]+' "$REPO/$RESOLVED_FROM"; }
HASH=$( (cat "$HERE/build.sh" "$HERE/rootfs.sh" "$HERE/Dockerfile" "$PINS"; resolved; echo "$TFX_VERSION $PYHOME") | sha256sum | cut -c1-16)
if [ "$(docker image inspect -f '{{ index .Config.Labels "recipe-hash" }}' "$TAG" 2>/dev/null)" = "$HASH" ]; then
  echo "==> stand-in $TAG is current (recipe $HASH)"
  exit 0
fi

# The rootfs depends only on rootfs.sh, the suite, its packages and the Python: 1.17 and 1.21 share one
# (made once, under a lock, when both bases build at the same time), and editing this file keeps it.
ROOTFS_ID="$SUITE-$( (cat "$HERE/rootfs.sh"; echo "$LIBS $PYHOME") | sha256sum | cut -c1-12)"
ROOTFS_TAR="$CACHE_DIR/standin-rootfs-$ROOTFS_ID.tar"
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/standin-rootfs-$SUITE.lock"
flock 9
[ -f "$ROOTFS_TAR" ] || bash "$HERE/rootfs.sh" "$SUITE" "$LIBS" "$PYHOME" "$ROOTFS_TAR"

echo "==> docker import rootfs"
docker import "$ROOTFS_TAR" "trainer-runtime-standin-rootfs:$ROOTFS_ID" >/dev/null
flock -u 9

OLD_ID=$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)
CONTEXT=$(mktemp -d)
cp "$PINS" "$CONTEXT/pins.txt"
resolved > "$CONTEXT/resolved.txt"
tr ' ' '\n' <<< "$WITH" > "$CONTEXT/with.txt"
tr ' ' '\n' <<< "$AFTER" | grep . > "$CONTEXT/after.txt" || true
{ cat "$HERE/Dockerfile"; printf '%s\n' "$BASE_LINES"; } > "$CONTEXT/Dockerfile"
echo "==> docker build $TAG (pip installs tfx[docker-image]==$TFX_VERSION under pins; several minutes the first time)"
docker build --network host --build-arg ROOTFS="trainer-runtime-standin-rootfs:$ROOTFS_ID" \
  --build-arg TFX_VERSION="$TFX_VERSION" --build-arg PIP_VERSION="$PIP_VERSION" \
  --build-arg INSTALL_FLAGS="$INSTALL_FLAGS" --label recipe-hash="$HASH" -t "$TAG" "$CONTEXT"
rm -rf "$CONTEXT"
# Older recipes' leftovers for this suite: rootfs images and cached tarballs.
docker images --format '{{.Repository}}:{{.Tag}}' trainer-runtime-standin-rootfs | grep ":$SUITE-" \
  | grep -v ":$ROOTFS_ID\$" | xargs -r docker rmi >/dev/null 2>&1 || true
find "$CACHE_DIR" -maxdepth 1 -name "standin-rootfs-$SUITE-*.tar" ! -name "standin-rootfs-$ROOTFS_ID.tar" -delete
find "$CACHE_DIR" -maxdepth 1 -name 'standin-rootfs-????????????????.tar' -delete  # the one-base recipe's
# The image this tag had (an older recipe's) and its own layers; never `docker image prune`: another
# base's build running beside this one has untagged layers of its own in progress (measured: a prune here
# deleted the 1.17 build's layer between two of its steps, "No such image").
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$(docker image inspect -f '{{.Id}}' "$TAG")" ]; then
  docker rmi "$OLD_ID" >/dev/null 2>&1 || true
fi
echo "==> stand-in $TAG built (recipe $HASH)"
