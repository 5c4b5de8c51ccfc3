#!/usr/bin/env bash
# The project's test command (README, "Quick start"; CI runs it with CI=true).
# Usage: bash tests/run.sh [pytest arguments]   (the same arguments go to every run)
#
# It never touches .venv (the Quick start's demo environment); each run has its own:
#   .venv-test    python3 (or $PYTHON), the newest boto3/botocore: ruff, mypy --strict,
#                 every test, in 3 pytest-xdist workers (ARC_TEST_WORKERS=N for another
#                 number; 0: one process); tests/packaging/test_packaging.py (sdist/wheel,
#                 fresh venvs, about a minute) only with CI=true or ARC_SKIP_PACKAGING=0.
# With CI=true, also:
#   .venv-floor   Python 3.10, exactly the oldest boto3/botocore pyproject.toml allows,
#                 assume_role_chain.py vendored alone (tests/packaging/vendored.py):
#                 every test but tests/packaging;
#   .venv-py313   Python 3.13, the newest boto3/botocore: every test but the slow
#                 tests/packaging/test_packaging.py;
#   .venv-aio     python3, aioboto3 with the botocore its aiobotocore pins (older than the
#                 newest): the asyncio tests (tests/aio, not collected where aioboto3 is not
#                 installed) and the stubs check, assume_role_chain_aio's included.
# Python 3.10 and 3.13 are found as python3.10/python3.13 on PATH or under pyenv;
# ARC_PYTHON310 and ARC_PYTHON313 name them explicitly.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
user_args=$#
in_ci=false
[ "$(printf %s "${CI:-}" | tr '[:upper:]' '[:lower:]')" = true ] && in_ci=true
status=0
failed=()

say() { echo "== $* [$((SECONDS - started)) s]"; }

# System packages for the IoT tests (PKCS#11, MQTT); .ci/run installs them.
missing=()
for tool in softhsm2-util:softhsm2 pkcs11-tool:opensc mosquitto:mosquitto; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${tool%%:*}" ] || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "tests/run.sh: missing Debian packages ${missing[*]} (as root: apt-get install ${missing[*]});" \
         "the IoT tests that need them are skipped, and fail with CI=true" >&2
fi

# A Python of version $1 (e.g. 3.10): $2 if set, else from PATH or pyenv; nothing if none.
find_python() {
    local version=$1 candidate candidates
    if [ -n "${2:-}" ]; then
        candidates=("$2")
    else
        candidates=("python$version" "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/"$version".*/bin/python)
    fi
    for candidate in "${candidates[@]}"; do
        if "$candidate" -c "import sys; sys.exit(f'{sys.version_info[0]}.{sys.version_info[1]}' != '$version')" 2>/dev/null; then
            command -v "$candidate"
            return
        fi
    done
}

# pip, showing what it downloads and installs but not its per-requirement chatter
# (all of it if pip fails).
pip_install() {
    local venv=$1 log pip_status
    shift
    log=$(mktemp)
    set +e
    "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off "$@" 2>&1 | tee "$log" \
        | grep --line-buffered -E '^(Collecting|Installing collected|Successfully installed)' | sed -u 's/^/    /'
    pip_status=${PIPESTATUS[0]}
    set -e
    [ "$pip_status" = 0 ] || { echo "tests/run.sh: pip install $* failed in $venv:" >&2; cat "$log" >&2; }
    rm -f "$log"
    return "$pip_status"
}

# Makes (or reuses) venv $1 with interpreter $2 and installs the project with its test extra,
# then $3... (requirements, e.g. the floor pins or --upgrade boto3 botocore).
setup_venv() {
    local venv=$1 python=$2
    shift 2
    local want
    want=$("$python" -c 'import sys; print(sys.version.split()[0])')
    if [ ! -x "$venv/bin/python" ] || [ "$("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)" != "$want" ]; then
        say "$venv: new virtualenv with Python $want ($python)"
        rm -rf "$venv"
        "$python" -m venv "$venv"
    fi
    say "$venv: pip install -e .[test] (pytest, moto, awscrt, cryptography, mypy, ruff, ...)"
    pip_install "$venv" -e ".[test]"
    if [ $# -gt 0 ]; then
        say "$venv: pip install $*"
        pip_install "$venv" "$@"
    fi
}

describe() {
    "$1/bin/python" -c 'import sys, boto3, botocore; print(f"Python {sys.version.split()[0]}, boto3 {boto3.__version__}, botocore {botocore.__version__}")'
}

# pytest's exit status 5 (no test collected) is no failure when the arguments chose the tests.
run_pytest() {
    local title=$1 venv=$2
    shift 2
    say "pytest, $title: $(describe "$venv")"
    local s=0
    "$venv/bin/python" -m pytest "$@" || s=$?
    [ "$s" = 0 ] || { [ "$s" = 5 ] && [ "$user_args" -gt 0 ]; } || { status=1; failed+=("$title"); }
}

# Outside CI the slow packaging tests (fresh venvs, pip, sdist) are skipped unless
# ARC_SKIP_PACKAGING=0; with CI=true they always run.
[ $in_ci = true ] || export ARC_SKIP_PACKAGING="${ARC_SKIP_PACKAGING:-1}"

# The AWS CLI v1, a real client of `assume-role-chain serve` (tests/test_serve.py), in an
# environment of its own: it pins its own botocore.
if [ ! -x .venv-awscli/bin/aws ]; then
    say ".venv-awscli: the AWS CLI v1, a test client of the credentials endpoint"
    rm -rf .venv-awscli
    "$(command -v "${PYTHON:-python3}")" -m venv .venv-awscli
    pip_install .venv-awscli awscli
fi

# 1. The newest boto3/botocore with python3: linters and every test.
setup_venv .venv-test "$(command -v "${PYTHON:-python3}")" --upgrade boto3 botocore
say "ruff"
.venv-test/bin/ruff check assume_role_chain.py iot_x509.py assume_role_chain_aio.py assume_role_chain-stubs iot_x509-stubs assume_role_chain_aio-stubs tests examples bench \
    || { status=1; failed+=(ruff); }
say "mypy --strict"
{ .venv-test/bin/mypy --strict assume_role_chain.py iot_x509.py \
    && .venv-test/bin/mypy --strict --follow-imports=silent tests/packaging; } || { status=1; failed+=(mypy); }
# Three pytest-xdist workers on two cores: most tests wait on child processes and servers.
run_pytest "newest" .venv-test -n "${ARC_TEST_WORKERS:-3}" "$@"

if [ $in_ci = true ]; then
    for version in 3.10 3.13; do
        override_name="ARC_PYTHON${version/./}"
        interpreter=$(find_python "$version" "${!override_name:-}")
        if [ -z "$interpreter" ]; then
            echo "tests/run.sh: no Python $version found (PATH, pyenv, or $override_name=/path/to/python)" >&2
            status=1
            failed+=("Python $version missing")
            continue
        fi
        if [ "$version" = 3.10 ]; then
            # The floor: the minimum versions in pyproject.toml's dependencies, pinned.
            floor=$(grep -oE '"(boto3|botocore)>=[0-9.]+"' pyproject.toml | tr -d '"' | sed 's/>=/==/')
            [ "$(echo "$floor" | wc -w)" = 2 ] || { echo "tests/run.sh: no boto3/botocore floor in pyproject.toml" >&2; exit 1; }
            # shellcheck disable=SC2086
            setup_venv .venv-floor "$interpreter" $floor
            run_pytest "floor, assume_role_chain.py vendored alone" .venv-floor \
                -p tests.packaging.vendored --ignore=tests/packaging "$@"
        else
            setup_venv .venv-py313 "$interpreter" --upgrade boto3 botocore
            run_pytest "Python 3.13, newest" .venv-py313 --ignore=tests/packaging/test_packaging.py "$@"
        fi
    done
    # 4. asyncio: aioboto3 pins aiobotocore, which pins botocore (e.g. 1.40.61 for aioboto3 15.5.0).
    setup_venv .venv-aio "$(command -v "${PYTHON:-python3}")" aioboto3 pytest-asyncio
    say ".venv-aio: mypy --strict assume_role_chain_aio.py"
    .venv-aio/bin/mypy --strict assume_role_chain.py assume_role_chain_aio.py || { status=1; failed+=("mypy (aio)"); }
    if [ "$user_args" -gt 0 ]; then
        aio_args=("$@")
    else
        aio_args=(tests/aio tests/packaging/test_stubs.py)
    fi
    run_pytest "asyncio, aioboto3 $(.venv-aio/bin/python -c 'import importlib.metadata as m; print(m.version("aioboto3"), "/ aiobotocore", m.version("aiobotocore"))')" \
        .venv-aio -o asyncio_default_fixture_loop_scope=function "${aio_args[@]}"
fi

if [ $status = 0 ]; then
    say "tests/run.sh: passed"
else
    say "tests/run.sh: FAILED ($(printf '%s; ' "${failed[@]}" | sed 's/; $//'))"
fi
exit $status
