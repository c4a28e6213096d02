#!/usr/bin/env bash
# The images no registry gives on a machine that has none, built from Debian's packages:
#   images.sh rootfs DIR        a minimal Debian bookworm tree with python3 and python3-venv in DIR
#                               (debootstrap; needs root and Debian's mirror, not docker)
#   images.sh base DIR          that tree as the Python base image, $BASE_IMAGE_TAG
#   images.sh zookeeper         the stand-in for zookeeper:3.8 on that base, $ZOOKEEPER_IMAGE_TAG
#   images.sh minio             the stand-in for minio/minio and minio/mc (the object-store
#                               profile) on that base, $MINIO_IMAGE_TAG: moto's S3 server
#   images.sh                   all three, in a temporary directory
# make compose-test runs them (rootfs in parallel with installing docker); by hand they give the
# images docs/compose.md's commands run on here:
#   docker build -f docker/Dockerfile --build-arg BASE_IMAGE=zootrain-compose/python:3.11-bookworm \
#     -t zootrain:latest .
#   export ZOOKEEPER_IMAGE=zootrain-compose/zookeeper:3.8-debian
set -euo pipefail
cd "$(dirname "$0")/../.."

BASE_IMAGE_TAG=${BASE_IMAGE_TAG:-zootrain-compose/python:3.11-bookworm}
ZOOKEEPER_IMAGE_TAG=${ZOOKEEPER_IMAGE_TAG:-zootrain-compose/zookeeper:3.8-debian}
MINIO_IMAGE_TAG=${MINIO_IMAGE_TAG:-zootrain-compose/minio:moto}
SUITE=bookworm  # its python3 is 3.11, what `make wheelhouse` fetches wheels for
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# The recipe's fingerprint, kept as a label on the base image: make compose-test reuses a base
# image only when it was made by these very steps (the functions below, as bash prints them).
recipe() { printf '%s\n' "$SUITE" "$(declare -f rootfs base)" | sha256sum | cut -c1-16; }

rootfs() {
  local dir=$1
  # minbase: essential packages and apt only. python3-venv brings ensurepip, which Debian's python3
  # leaves out; the image makes its venv with it.
  as_root debootstrap --variant=minbase --include=python3,python3-venv "$SUITE" "$dir" "$MIRROR"
  # apt's downloaded packages and lists are build leftovers (the ZooKeeper image updates its own).
  as_root rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin \
    "$dir"/var/lib/apt/lists/*
}

base() {
  local dir=$1
  # docker import makes an image of a tarball: no Dockerfile, no registry. /dev, /proc and /sys
  # are the runtime's to fill.
  as_root tar -C "$dir" --numeric-owner --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* \
      -c . \
    | docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --change "LABEL org.zootrain.recipe=$(recipe)" \
        - "$BASE_IMAGE_TAG"
}

zookeeper() {
  docker build --force-rm --build-arg BASE_IMAGE="$BASE_IMAGE_TAG" -t "$ZOOKEEPER_IMAGE_TAG" \
    tests/compose/zookeeper
}

minio() {
  # moto's wheels for the base's Python, fetched with this machine's pip like the wheelhouse.
  scripts/wheelhouse.sh "${VENV:-.venv}/bin/python" tests/compose/minio/wheels 'moto[server]>=5,<6'
  docker build --force-rm --build-arg BASE_IMAGE="$BASE_IMAGE_TAG" -t "$MINIO_IMAGE_TAG" \
    tests/compose/minio
}

case ${1:-all} in
  rootfs) rootfs "$2" ;;
  base) base "$2" ;;
  zookeeper) zookeeper ;;
  minio) minio ;;
  recipe) recipe ;;
  all)
    work=$(mktemp -d)
    trap 'as_root rm -rf --one-file-system "$work"' EXIT
    rootfs "$work/rootfs"
    base "$work/rootfs"
    zookeeper
    minio
    ;;
  *) echo "usage: $0 [rootfs DIR | base DIR | zookeeper | minio]" >&2; exit 2 ;;
esac
