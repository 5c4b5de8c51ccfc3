"""MFA sessions: one code (STS GetSessionToken) for many roles, processes and hours."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import urllib.parse
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
import time_machine

import assume_role_chain as arc
from tests.conftest import ACCOUNT, SentRequests, role_arn, user_session
from tests.hardening import Emissions, Secrets, assert_no_leaks, captured

SERIAL = "arn:aws:iam::123456789012:mfa/daily-user"
SCRIPT = str(Path(sys.executable).parent / "assume-role-chain")
ROOT = Path(__file__).resolve().parent.parent


class Codes:
    """An MFA token provider that counts how often it was asked."""

    def __init__(self, code: str = "246810") -> None:
        self.code = code
        self.asked = 0

    def __call__(self) -> str:
        self.asked += 1
        return self.code


def session_token_requests(session: boto3.Session) -> list[dict[str, list[str]]]:
    """Form fields of the GetSessionToken requests ``session``'s clients send."""
    sent: list[dict[str, list[str]]] = []

    def record(request: Any, **_: Any) -> None:
        fields = urllib.parse.parse_qs(request.body.decode() if isinstance(request.body, bytes) else request.body)
        if fields.get("Action") == ["GetSessionToken"]:
            sent.append(fields)

    session._session.register("before-send.sts", record)  # type: ignore[attr-defined]
    return sent


def test_one_code_for_three_roles(
    parent: boto3.Session, sts_calls: Callable[[], int], session_token_calls: Callable[[], int]
) -> None:
    codes = Codes()
    sent = session_token_requests(parent)
    mfa = arc.mfa_session(parent, SERIAL, mfa_token_provider=codes)
    for name in ("A", "B", "C"):
        role = arc.assume_role(mfa, role_arn(name), RoleSessionName="daily")
        assert arc.whoami(role)["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/daily"
    assert codes.asked == 1
    assert session_token_calls() == 1 and sts_calls() == 3
    assert sent[0]["SerialNumber"] == [SERIAL] and sent[0]["TokenCode"] == [codes.code]
    assert sent[0]["DurationSeconds"] == ["43200"]


def test_a_second_process_reuses_the_cached_session_without_a_code(
    parent: boto3.Session, tmp_path: Path, session_token_calls: Callable[[], int]
) -> None:
    cache_dir = tmp_path / "cache"
    mfa = arc.mfa_session(parent, SERIAL, TokenCode="135790", cache=arc.JSONFileCache(cache_dir))
    first = arc.get_credentials(mfa)
    child = textwrap.dedent(f"""
        import boto3, assume_role_chain as arc
        mfa = arc.mfa_session(boto3.Session(), {SERIAL!r}, mfa_token_provider=["false"],
                              cache=arc.JSONFileCache({str(cache_dir)!r}))
        print(arc.get_credentials(mfa)["access_key"])
        print(arc.whoami(arc.assume_role(mfa, {role_arn("A")!r}, RoleSessionName="child"))["Arn"])
    """)
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [first["access_key"], f"arn:aws:sts::{ACCOUNT}:assumed-role/A/child"]
    assert session_token_calls() == 1  # the child asked for no code: its provider would have failed


def test_the_cache_is_per_parent_and_device(parent: boto3.Session, tmp_path: Path, session_token_calls: Callable[[], int]) -> None:
    cache = arc.JSONFileCache(tmp_path / "cache")
    arc.get_credentials(arc.mfa_session(parent, SERIAL, TokenCode="135790", cache=cache))
    arc.get_credentials(arc.mfa_session(parent, SERIAL + "-other", TokenCode="135790", cache=cache))
    other_user = user_session("mfa-other-user")  # another principal (GetCallerIdentity tells them apart)
    arc.get_credentials(arc.mfa_session(other_user, SERIAL, TokenCode="135790", cache=cache))
    arc.get_credentials(arc.mfa_session(parent, SERIAL, mfa_token_provider=["false"], cache=cache))
    assert session_token_calls() == 3
    assert len(cache) == 3


def test_refresh_after_expiry_asks_exactly_once(
    parent: boto3.Session, clock: time_machine.Traveller, session_token_calls: Callable[[], int]
) -> None:
    codes = Codes()
    mfa = arc.mfa_session(parent, SERIAL, mfa_token_provider=codes, DurationSeconds=900)
    role = arc.assume_role(mfa, role_arn("A"), DurationSeconds=900)
    arc.whoami(role)
    arc.whoami(role)
    assert codes.asked == 1
    clock.shift(dt.timedelta(seconds=901))
    for _ in range(3):
        arc.whoami(role)
    assert codes.asked == 2 and session_token_calls() == 2


def test_a_role_assumed_from_an_mfa_session_is_not_clamped(
    parent: boto3.Session, sent_assume_role_requests: SentRequests
) -> None:
    mfa = arc.mfa_session(parent, SERIAL, TokenCode="135790")
    sent_assume_role_requests.watch(mfa)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        role = arc.assume_role(mfa, role_arn("A"), DurationSeconds=4 * 3600)
        arc.whoami(role)
    assert not [w for w in caught if issubclass(w.category, arc.DurationClampedWarning)]
    assert sent_assume_role_requests[-1]["DurationSeconds"] == ["14400"]
    expiry = dt.datetime.strptime(str(arc.get_credentials(role)["expiry_time"]), "%Y-%m-%dT%H:%M:%S%z")
    assert (expiry - dt.datetime.now(dt.timezone.utc)).total_seconds() > 3 * 3600


def test_the_clamp_still_applies_to_a_role_parent(parent: boto3.Session, sent_assume_role_requests: SentRequests) -> None:
    mfa = arc.mfa_session(parent, SERIAL, TokenCode="135790")
    role = arc.assume_role(mfa, role_arn("A"))
    sent_assume_role_requests.watch(role)
    with pytest.warns(arc.DurationClampedWarning):
        chained = arc.assume_role(role, role_arn("B"), DurationSeconds=4 * 3600)
    arc.whoami(chained)
    assert sent_assume_role_requests[-1]["DurationSeconds"] == ["3600"]


def test_the_code_never_reaches_a_cache_file_or_a_log(parent: boto3.Session, tmp_path: Path) -> None:
    code = "975319"
    secrets = Secrets()
    secrets.add(code, "MFA code")
    cache_dir = tmp_path / "cache"
    with captured(Emissions()) as emissions:
        mfa = arc.mfa_session(parent, SERIAL, TokenCode=code, cache=arc.JSONFileCache(cache_dir))
        arc.whoami(arc.assume_role(mfa, role_arn("A")))
        emissions.add_repr(mfa.get_credentials())
    files = list(cache_dir.rglob("*"))
    assert [path for path in files if path.suffix == ".json"]
    for path in files:
        assert code not in path.name
        if path.is_file():
            assert code.encode() not in path.read_bytes()
    assert_no_leaks(emissions, secrets)


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"DurationSeconds": 899}, "DurationSeconds"),
    ({"DurationSeconds": 129601}, "DurationSeconds"),
    ({"DurationSeconds": "12h"}, "DurationSeconds"),
    ({"DurationSeconds": True}, "DurationSeconds"),
    ({"TokenCode": "12345"}, "TokenCode"),
    ({"SerialNumber": None}, "SerialNumber"),
    ({"SerialNumber": "has spaces in it"}, "SerialNumber"),
    ({"mfa_token_provider": 42}, "mfa_token_provider"),
    ({"mfa_token_provider": ["cmd"], "mfa_token_provider_kwargs": {"shell": True}}, "mfa_token_provider_kwargs"),
    ({"region_name": "nowhere"}, "region_name"),
    ({"cache": 3}, "cache"),
])
def test_bad_arguments_are_refused_before_any_call(
    parent: boto3.Session, session_token_calls: Callable[[], int], kwargs: dict[str, Any], param: str
) -> None:
    arguments: dict[str, Any] = {"SerialNumber": SERIAL, "TokenCode": "135790", **kwargs}
    if "mfa_token_provider" in kwargs:
        del arguments["TokenCode"]
    with pytest.raises(botocore.exceptions.ParamValidationError, match=f"Invalid {param}"):
        arc.mfa_session(parent, **arguments)
    assert session_token_calls() == 0


def test_36_hours_and_a_timedelta_are_accepted(parent: boto3.Session) -> None:
    sent = session_token_requests(parent)
    arc.get_credentials(arc.mfa_session(parent, SERIAL, TokenCode="135790", DurationSeconds=dt.timedelta(hours=36)))
    assert sent[0]["DurationSeconds"] == ["129600"]


# -- the command line ----------------------------------------------------------


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def test_cli_mfa_session_is_cached_in_the_user_folder(
    aws_env: str, tmp_path: Path, session_token_calls: Callable[[], int], sts_calls: Callable[[], int]
) -> None:
    first = run_cli("--mfa-session", "--SerialNumber", SERIAL, "--TokenCode", "135790", role_arn("A"), role_arn("B"),
                    "--DurationSeconds", "3600", "--whoami", home=tmp_path)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["Arn"].startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/B/")
    assert len(list((tmp_path / ".aws" / "assume-role-chain" / "cache").glob("*.json"))) == 1
    again = run_cli("--mfa-session", "--SerialNumber", SERIAL, role_arn("A"), "--json", home=tmp_path)
    assert again.returncode == 0, again.stderr  # no code on stdin: none was needed
    assert session_token_calls() == 1 and sts_calls() == 3


def test_cli_four_hours_from_an_mfa_session_are_not_clamped(aws_env: str, tmp_path: Path) -> None:
    result = run_cli("--mfa-session", "--no-cache", "--SerialNumber", SERIAL, "--TokenCode", "135790",
                     role_arn("A"), "--DurationSeconds", str(4 * 3600), "--json", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    expiry = dt.datetime.strptime(json.loads(result.stdout)["Expiration"], "%Y-%m-%dT%H:%M:%S%z")
    assert (expiry - dt.datetime.now(dt.timezone.utc)).total_seconds() > 3 * 3600
    assert not (tmp_path / ".aws").exists()


def test_cli_mfa_session_needs_a_serial_number(aws_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert arc.main(["--mfa-session", role_arn("A")]) == 2
    assert "--mfa-session needs --SerialNumber" in capsys.readouterr().err


def test_cli_serve_with_an_mfa_session(aws_env: str, tmp_path: Path, session_token_calls: Callable[[], int]) -> None:
    child = "import boto3; print(boto3.Session().client('sts').get_caller_identity()['Arn'])"
    result = run_cli("serve", role_arn("A"), "--mfa-session", "--SerialNumber", SERIAL, "--TokenCode", "135790",
                     "--RoleSessionName", "served", "--exec", "--", sys.executable, "-c", child, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"arn:aws:sts::{ACCOUNT}:assumed-role/A/served"
    assert session_token_calls() == 1
