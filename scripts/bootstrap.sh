#!/usr/bin/env bash
# Installs what `make up` and `make test` need and is missing, then returns:
#   Debian packages: redis-server, a Java 17 runtime and Maven (for the Kafka jars);
#   uv (from PyPI) and the project's .venv from requirements.lock.
# Idempotent and quick when nothing changed (a stamp keyed by the lock file's hash).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${missing[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "error: missing ${missing[*]}; install them (Debian: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

PY=$(command -v python3.11 || true)
if [ -z "$PY" ]; then
  echo "error: Python 3.11 not found on PATH; install it (pyenv install 3.11, or apt-get install python3.11)" >&2
  exit 1
fi
if ! command -v uv >/dev/null 2>&1; then
  echo "bootstrap: installing uv from PyPI"
  "$PY" -m pip install -q uv
fi
UV=$(command -v uv || echo "$PY -m uv")

stamp=".venv/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || $UV venv -q -p "$PY" .venv
  echo "bootstrap: installing Python dependencies into .venv (uv)"
  $UV pip install -q -p .venv/bin/python -r requirements.lock
  $UV pip install -q -p .venv/bin/python --no-deps -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi
