#!/usr/bin/env bash
# Installs everything the tests need, then runs the linters and the tests in two
# environments:
#   .venv        the newest boto3/botocore: ruff, mypy --strict, every test
#                (including tests/packaging: stubs, sdist/wheel, fresh venv);
#   .venv/floor  the oldest boto3/botocore the project supports (the floor in
#                pyproject.toml's dependencies): every other test, run against
#                assume_role_chain.py vendored alone (tests/packaging/vendored.py).
# Usage: bash tests/run.sh [pytest arguments]   (the same arguments go to both runs)
# ARC_PARALLEL=1 runs the two test runs side by side (faster; tests with tight
# timing may flake under the load). On a developer's machine ARC_SKIP_FLOOR=1
# skips the floor run and ARC_SKIP_PACKAGING=1 the slow packaging tests; with
# CI=true both always run.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
user_args=$#
in_ci=false
[ "$(printf %s "${CI:-}" | tr '[:upper:]' '[:lower:]')" = true ] && in_ci=true

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi

# System packages for the IoT tests (PKCS#11 and MQTT) and the fleet-cache tests (Redis).
missing=()
command -v softhsm2-util >/dev/null 2>&1 || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || missing+=(opensc)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)  # fleet-cache tests
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

pip_install() { "$1/bin/python" -m pip install -q --disable-pip-version-check "${@:2}"; }
versions() { "$1/bin/python" -c 'import boto3, botocore; print(f"boto3 {boto3.__version__}, botocore {botocore.__version__}")'; }
# pytest's exit status 5 (no test collected) is no failure when the arguments chose the tests.
passed() { [ "$1" = 0 ] || { [ "$1" = 5 ] && [ "$user_args" -gt 0 ]; }; }

pip_install .venv -e ".[test]"
pip_install .venv --upgrade boto3 botocore  # the newest release, also in an old .venv

echo "== ruff" && .venv/bin/ruff check assume_role_chain.py iot_x509.py assume_role_chain-stubs iot_x509-stubs tests examples bench
echo "== mypy --strict" && .venv/bin/mypy --strict assume_role_chain.py iot_x509.py \
    && .venv/bin/mypy --strict --follow-imports=silent tests/packaging
status=0
floor_pid=""
if [ "${ARC_SKIP_FLOOR:-}" = 1 ] && [ $in_ci = false ]; then
    echo "== floor environment skipped (ARC_SKIP_FLOOR=1)"
else
    # The floor: the minimum versions in pyproject.toml's dependencies, pinned.
    floor=$(grep -oE '"(boto3|botocore)>=[0-9.]+"' pyproject.toml | tr -d '"' | sed 's/>=/==/')
    [ "$(echo "$floor" | wc -w)" = 2 ] || { echo "tests/run.sh: no boto3/botocore floor in pyproject.toml" >&2; exit 1; }
    [ -x .venv/floor/bin/python ] || "$python" -m venv .venv/floor
    # shellcheck disable=SC2086
    pip_install .venv/floor -e ".[test]" $floor
    floor_run=(.venv/floor/bin/python -m pytest -p tests.packaging.vendored --ignore=tests/packaging "$@")
    floor_title="== pytest, floor: $(versions .venv/floor), assume_role_chain.py vendored alone"
    if [ "${ARC_PARALLEL:-}" = 1 ]; then  # alongside the newest run, output after it: faster, timing tests may flake
        floor_log=$(mktemp)
        trap '[ -n "$floor_pid" ] && kill "$floor_pid" 2>/dev/null; rm -f "$floor_log"' EXIT
        "${floor_run[@]}" >"$floor_log" 2>&1 &
        floor_pid=$!
    fi
fi

echo "== pytest, newest: $(versions .venv)"
s=0; .venv/bin/python -m pytest "$@" || s=$?
passed $s || status=1

if [ -n "$floor_pid" ]; then
    s=0; wait "$floor_pid" || s=$?
    floor_pid=""
    echo "$floor_title (run alongside)"
    cat "$floor_log"
    passed $s || status=1
elif [ -n "${floor_title:-}" ]; then
    echo "$floor_title"
    s=0; "${floor_run[@]}" || s=$?
    passed $s || status=1
fi
echo "== tests/run.sh: $([ $status = 0 ] && echo passed || echo FAILED) in $((SECONDS - started)) s"
exit $status
