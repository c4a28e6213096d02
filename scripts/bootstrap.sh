#!/usr/bin/env bash
# Create the virtual environment and install zootrain with its test tools into it.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "zootrain needs Python 3.11 or newer ($python is $("$python" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    # Debian and Ubuntu ship venv's ensurepip separately.
    rm -rf "$venv"
    minor=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "python${minor}-venv" || \
      as_root apt-get install -y -qq --no-install-recommends python3-venv
    "$python" -m venv "$venv"
  fi
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e '.[test]'
