"""The distribution as users get it.

Builds the sdist and the wheel (``python -m build``, the wheel from the sdist),
checks them with ``twine check --strict`` and their metadata (licence, classifiers,
URLs); checks that the sdist holds every file of the repository and that a fast
subset of the tests passes from the unpacked sdist; and makes a fresh venv holding only
boto3, where: ``assume_role_chain.py`` copied alone into an empty folder imports
and works; the wheel installs without extras; its console script and
``python -m`` entry points run; ``iot_x509`` works without awscrt for PEM keys
and names awscrt when a feature needs it; and mypy, checking a separate small
project against that venv, sees the types of both modules.

Slow (venvs, pip and the sdist, about a minute): ``ARC_SKIP_PACKAGING=1`` skips
them outside CI (``tests/run.sh`` sets it unless it is 0); with ``CI=true`` they
always run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from ..conftest import role_arn
from ..iot import conftest as iot_fixtures
from ..iot.iot_standin import IoTWorld
from . import make_stubs
from .vendored import ALLOWED, ROOT

if os.environ.get("ARC_SKIP_PACKAGING") == "1" and os.environ.get("CI", "").lower() != "true":
    pytest.skip("ARC_SKIP_PACKAGING=1 (ARC_SKIP_PACKAGING=0 or CI=true runs them)", allow_module_level=True)

iot_world, iot = iot_fixtures.iot_world, iot_fixtures.iot  # the IoT stand-in, for the smoke test
# Distributions that `pip install boto3` brings, and the venv's own pip (and setuptools before 3.12).
BOTO3_DISTRIBUTIONS = {"boto3", "botocore", "jmespath", "python-dateutil", "urllib3", "s3transfer", "six", "pip", "setuptools"}


def run(*args: Any, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, f"{args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    return out


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with boto3 (and its dependencies) only."""
    path = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", path)
    run(path / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", "boto3")
    return path


@pytest.fixture(scope="module")
def installed(venv: Path, dist: Path) -> Path:
    """The venv with the wheel installed, without extras."""
    (wheel,) = dist.glob("*.whl")
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel)
    return venv


def test_sdist_and_wheel_pass_twine_check_and_hold_modules_and_stubs(dist: Path) -> None:
    files = sorted(dist.iterdir(), key=lambda f: f.suffix)
    assert [f.suffix for f in files] == [".gz", ".whl"]
    run(sys.executable, "-m", "twine", "check", "--strict", *files)
    with zipfile.ZipFile(files[1]) as wheel:
        names = {n for n in wheel.namelist() if ".dist-info/" not in n}
        stubs = {m: wheel.read(f"{m}-stubs/__init__.pyi").decode() for m in make_stubs.MODULES}
        metadata = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert names == {f"{m}.py" for m in make_stubs.MODULES} | {f"{m}-stubs/__init__.pyi" for m in make_stubs.MODULES}
    assert stubs == {m: make_stubs.stub_path(m).read_text(encoding="utf-8") for m in make_stubs.MODULES}
    assert "Requires-Dist: boto3>=" in metadata and "Requires-Dist: awscrt" in metadata  # the latter: extra only


def test_metadata_names_licence_classifiers_and_urls(dist: Path) -> None:
    trove_classifiers = pytest.importorskip("trove_classifiers")
    (wheel_path,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel_path) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        licence = wheel.read(next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))).decode()
    fields = [line.split(": ", 1) for line in metadata.split("\n\n", 1)[0].splitlines() if ": " in line]
    values: dict[str, list[str]] = {}
    for name, value in fields:
        values.setdefault(name, []).append(value)
    assert values["License-Expression"] == ["Apache-2.0"] and values["License-File"] == ["LICENSE"]
    assert licence == (ROOT / "LICENSE").read_text() and "Apache License" in licence and "Version 2.0" in licence
    classifiers = values["Classifier"]
    assert set(classifiers) <= trove_classifiers.classifiers, set(classifiers) - trove_classifiers.classifiers
    assert {f"Programming Language :: Python :: 3.{minor}" for minor in (10, 11, 12, 13)} <= set(classifiers)
    assert any(c.startswith("Development Status ::") for c in classifiers)
    assert any(c.startswith("Intended Audience ::") for c in classifiers)
    assert any(c.startswith("Topic ::") for c in classifiers)
    assert not any(c.startswith("License ::") for c in classifiers)  # PEP 639: the expression only
    assert values["Requires-Python"] == [">=3.10"]
    urls = [value.split(", ", 1)[1] for value in values["Project-URL"]]
    assert urls and all(url.startswith("https://") for url in urls)


def repository_files() -> set[str]:
    """The files of this checkout as git tracks them (as found on disk if it is no git checkout)."""
    listed = run("git", "-C", ROOT, "ls-files", "-z", check=False)
    if listed.returncode == 0:
        return {name for name in listed.stdout.split("\0") if name}
    not_sources = {"__pycache__", "build", "dist", "PKG-INFO", "setup.cfg"}

    def is_source(parts: tuple[str, ...]) -> bool:
        hidden = [part for part in parts if part.startswith(".")]
        return hidden in ([], [".ci"]) and not not_sources & set(parts) \
            and not parts[0].endswith(".egg-info") and not parts[-1].endswith(".pyc")

    files = (path.relative_to(ROOT) for path in ROOT.rglob("*") if path.is_file())
    return {str(path) for path in files if is_source(path.parts)}


# Fast, and between them they use the suite's kinds of helper: the moto server fixtures,
# the IoT stand-in and its certificates, the secret-hygiene plugin, the vendoring
# checks, examples/ (demo.py, iot_demo.py) and the README and .ci/run.
SDIST_SUBSET = [
    "tests/test_helpers.py",
    "tests/iot/test_iot_cli.py",
    "tests/packaging/test_vendoring.py",
    "tests/packaging/test_quick_start.py",
]


def test_sdist_holds_the_repository_and_its_tests_pass_from_there(dist: Path, tmp_path: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.iterdir()
    in_sdist = {str(path.relative_to(unpacked)) for path in unpacked.rglob("*") if path.is_file()}
    assert repository_files() - {".gitignore"} - in_sdist == set()
    assert {"LICENSE", ".ci/run", "tests/run.sh", "docs/RELIABILITY.md", "examples/demo.py", "bench/run.py"} <= in_sdist

    where = run(sys.executable, "-c", "import assume_role_chain, iot_x509, tests; "
                "print(assume_role_chain.__file__, iot_x509.__file__, tests.__file__)", cwd=unpacked)
    assert all(path.startswith(str(unpacked)) for path in where.stdout.split()), where.stdout
    result = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SDIST_SUBSET, cwd=unpacked,
                 check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"^\d+ passed", result.stdout.splitlines()[-1]), result.stdout[-500:]


VENDORED_CHECK = """
import importlib.metadata, json, sys
before = set(sys.modules)
import assume_role_chain as arc
import boto3
chain = arc.assume_role_chain(boto3.Session(), sys.argv[1:], DurationSeconds=900)
arn = arc.whoami(chain)["Arn"]
new = {name.partition(".")[0] for name in set(sys.modules) - before if not name.startswith("__")}
imported = new - set(sys.stdlib_module_names) - {"assume_role_chain"}
installed = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
print(json.dumps({"file": arc.__file__, "arn": arn, "imported": sorted(imported), "installed": sorted(installed)}))
"""


def test_vendored_copy_works_with_only_boto3_installed(venv: Path, tmp_path: Path, aws_env: str) -> None:
    folder = tmp_path / "lambda"
    folder.mkdir()
    (folder / "assume_role_chain.py").write_bytes((ROOT / "assume_role_chain.py").read_bytes())
    result = run(venv / "bin" / "python", "-s", "-c", VENDORED_CHECK, role_arn("Hub"), role_arn("Reader"), cwd=folder)
    report = json.loads(result.stdout)
    assert report["file"] == str(folder / "assume_role_chain.py")
    assert report["arn"].startswith("arn:aws:sts::123456789012:assumed-role/Reader/")
    assert set(report["imported"]) <= ALLOWED
    assert set(report["installed"]) - {"assume-role-chain"} <= BOTO3_DISTRIBUTIONS


def test_wheel_installs_and_its_commands_run(installed: Path, tmp_path: Path, aws_env: str) -> None:
    python, bin_dir = installed / "bin" / "python", installed / "bin"
    where = run(python, "-c", "import assume_role_chain, iot_x509; print(assume_role_chain.__file__, iot_x509.__file__)",
                cwd=tmp_path)
    assert all(path.startswith(str(installed)) for path in where.stdout.split())
    assert "usage:" in run(bin_dir / "assume-role-chain", "--help", cwd=tmp_path).stdout
    assert "usage:" in run(python, "-m", "assume_role_chain", "--help", cwd=tmp_path).stdout
    assert "usage:" in run(python, "-m", "iot_x509", "--help", cwd=tmp_path).stdout
    document = json.loads(run(bin_dir / "assume-role-chain", role_arn("Auditor"), "--json", cwd=tmp_path).stdout)
    assert document["Version"] == 1 and document["AccessKeyId"] and document["Expiration"]


NEEDS_AWSCRT = """
import importlib.util, boto3, iot_x509
assert importlib.util.find_spec("awscrt") is None
try:
    iot_x509.mqtt_websocket_connection("a1b2c3-ats.iot.eu-west-1.amazonaws.com", "client", boto3.Session())
except Exception as error:
    print(type(error).__name__, error)
"""


def test_iot_x509_without_awscrt(installed: Path, iot: IoTWorld, tmp_path: Path) -> None:
    """PEM keys use the standard library's ssl; MQTT (awscrt) fails at the call, naming awscrt."""
    result = run(
        installed / "bin" / "python", "-m", "iot_x509", "--cert", iot.files["ec.cert"], "--key", iot.files["ec.key"],
        "--role-alias", iot.role_alias, "--endpoint", iot.endpoint, "--thing-name", "thing-ec",
        "--ca", iot.files["ca"], "--timeout", "5", cwd=tmp_path,
    )
    assert json.loads(result.stdout)["Version"] == 1
    assert "awscrt" in run(installed / "bin" / "python", "-c", NEEDS_AWSCRT, cwd=tmp_path).stdout


GOOD_USE = """
from typing import Any

import assume_role_chain as arc
import iot_x509


def use(parent: Any) -> str:
    session = arc.assume_role(parent, "arn:aws:iam::123456789012:role/Reader", DurationSeconds=900)
    config = arc.AssumeRoleConfig(RoleArn="arn:aws:iam::123456789012:role/Reader", ExternalId="partner-42")
    chain = arc.assume_role_chain(parent, [config, arc.get_role_arn("123456789012", "Next")])
    error = iot_x509.IoTHTTPError(403, "Forbidden", "https://example.com")
    status: int = error.status
    transport: iot_x509.Transport = "ssl"
    return f"{session}{chain}{status}{transport}{arc.__version__}{arc.JSONFileCache().lock_timeout}"
"""
BAD_USE = """
from typing import Any

import assume_role_chain as arc
import iot_x509


def use(parent: Any) -> None:
    arc.assume_role(parent, 123)  # error
    arc.assume_role(parent, "arn:aws:iam::123456789012:role/R", DurationSeconds="900")  # error
    arc.cached_client(parent, "s3", eviction_policy="FIFO")  # error
    iot_x509.iot_session("c.pem", "k.pem", "alias", endpoint=443)  # error
    iot_x509.iot_session("c.pem", "k.pem", "alias", endpoint="e", transport="tcp")  # error
    name: int = arc.generate_lambda_session_name()  # error
"""


def test_types_reach_mypy_users_of_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    (tmp_path / "good.py").write_text(GOOD_USE)
    (tmp_path / "bad.py").write_text(BAD_USE)
    result = run(sys.executable, "-m", "mypy", "--strict", "--python-executable", installed / "bin" / "python",
                 "--cache-dir", tmp_path / "cache", "good.py", "bad.py", cwd=tmp_path, check=False)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    expected = {f"bad.py:{n}" for n, line in enumerate(BAD_USE.splitlines(), 1) if line.endswith("# error")}
    assert {":".join(line.split(":")[:2]) for line in errors} == expected, result.stdout + result.stderr
