#!/usr/bin/env bash
# Installs everything the tests need, then runs the linters and the tests.
# Usage: bash tests/run.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi

# System packages for the IoT tests (PKCS#11 and MQTT).
missing=()
command -v softhsm2-util >/dev/null 2>&1 || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || missing+=(opensc)
command -v mosquitto >/dev/null 2>&1 && [ -x "$(command -v mosquitto)" ] || { [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto); }
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "tests/run.sh: installing ${missing[*]} with apt-get" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "tests/run.sh: missing system packages: ${missing[*]} (install them as root; the IoT tests that need them will be skipped, or fail when CI=true)" >&2
    fi
fi

.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"

echo "== ruff" && .venv/bin/ruff check assume_role_chain.py iot_x509.py tests examples bench
echo "== mypy --strict" && .venv/bin/mypy --strict assume_role_chain.py iot_x509.py
echo "== pytest" && .venv/bin/python -m pytest "$@"
