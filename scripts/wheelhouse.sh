#!/usr/bin/env bash
# make wheelhouse: wheels/ holds every dependency of zootrain (and its build backend) as wheels for
# the image's Python, fetched with this machine's pip, so that docker/Dockerfile installs with no
# package index (the image's own build never reaches the network).
# The wheels are chosen for the image, not for this machine: CPython $WHEELHOUSE_PYTHON (3.11: the
# default python:3.11-slim and Debian bookworm's python3), glibc up to $WHEELHOUSE_GLIBC (2.36:
# bookworm's), this machine's architecture.
# Other requirements than zootrain's may follow the two arguments (tests/compose/images.sh uses
# that for its S3 stand-in).
set -euo pipefail
python=${1:-.venv/bin/python}
out=${2:-wheels}
shift 2 || shift $#
target=${WHEELHOUSE_PYTHON:-3.11}
glibc=${WHEELHOUSE_GLIBC:-2.36}
arch=$(uname -m)

# pip matches --platform tags exactly: name every manylinux level the image's glibc accepts.
platforms=(--platform "manylinux2014_$arch")  # pip adds manylinux2010 and manylinux1
for minor in $(seq 17 "${glibc#2.}"); do
  platforms+=(--platform "manylinux_2_${minor}_$arch")
done
if [ $# -gt 0 ]; then
  requirements=("$@")
else
  # zootrain's dependencies, and pyproject.toml's build-system requirements: pip builds
  # zootrain itself in the image.
  mapfile -t requirements < <("$python" -c '
import tomllib
print(".")
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')
fi

# A fresh directory each time: an old version left beside a new one would make the image's
# `pip install wheels/*.whl` install both.
rm -rf "$out.new"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Quiet unless it fails (building zootrain's metadata prints setuptools' deprecation notices).
if ! "$python" -m pip download --disable-pip-version-check --dest "$out.new" \
  --only-binary=:all: --implementation cp --python-version "$target" \
  --abi "cp${target/./}" "${platforms[@]}" \
  "${requirements[@]}" > "$log" 2>&1; then
  cat "$log" >&2
  echo "wheelhouse: pip could not fetch every dependency as a wheel for CPython $target" \
    "($arch, glibc <= $glibc); see above" >&2
  exit 1
fi
rm -rf "$out"
mv "$out.new" "$out"
echo "wheelhouse: $(find "$out" -name '*.whl' | wc -l) wheels in $out/ ($(du -sh "$out" | cut -f1))" \
  "for CPython $target, $arch, glibc $glibc"
