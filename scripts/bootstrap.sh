#!/usr/bin/env bash
# Installs what `make up` and `make test` need and is missing, then returns:
#   Debian packages: redis-server, a Java 17 runtime and Maven (for the Kafka jars), prometheus,
#   chromium (headless, for a test) - without their recommends (no node exporter);
#   the project's .venv (Python 3.11's venv module) with uv (from PyPI, inside the venv unless
#   uv is on PATH) and requirements.lock.
# Prerequisites: bash, Python 3.11 on PATH; as root on Debian/Ubuntu the rest is installed
# (redis-server, openjdk-17-jre-headless, maven, prometheus, chromium, python3.11-venv), otherwise it is named.
# Idempotent and quick when nothing changed (a stamp keyed by the lock file's hash).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)  # headless, for the Feast UI's browser test
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${missing[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "error: missing ${missing[*]}; install them (Debian: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

PY=$(command -v python3.11 || true)
if [ -z "$PY" ]; then
  echo "error: Python 3.11 not found on PATH; install it (Debian 12: apt-get install python3.11; or pyenv install 3.11)" >&2
  exit 1
fi
# A distro Python may lack venv support (Debian splits it into python3.11-venv) and refuses
# `pip install` outside a virtual environment (PEP 668), so nothing is installed into it:
# the project's .venv is made with its venv module and uv goes inside that venv.
if ! "$PY" -c "import ensurepip, venv" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing python3.11-venv from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11-venv >/dev/null
  else
    echo "error: $PY cannot create virtual environments; install python3.11-venv (Debian: sudo apt-get install python3.11-venv)" >&2
    exit 1
  fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if command -v uv >/dev/null 2>&1; then
  UV=$(command -v uv)
else
  if [ ! -x .venv/bin/uv ]; then
    echo "bootstrap: installing uv from PyPI into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check uv
  fi
  UV=.venv/bin/uv
fi

stamp=".venv/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing Python dependencies into .venv (uv)"
  $UV pip install -q -p .venv/bin/python -r requirements.lock
  $UV pip install -q -p .venv/bin/python --no-deps -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi
