"""MFA: token providers (functions and commands), static codes, prompts, the CLI options."""

from __future__ import annotations

import os
import pty
import select
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
import time_machine

import assume_role_chain as arc
from tests.conftest import SentRequests, role_arn
from tests.faults import at

SERIAL = "arn:aws:iam::123456789012:mfa/alice"


def token_codes(sent: SentRequests) -> list[str]:
    return [fields["TokenCode"][0] for fields in sent]


def test_provider_called_once_per_fetch_and_never_on_cache_hits(
    parent: boto3.Session, clock: time_machine.Traveller, sent_assume_role_requests: SentRequests, tmp_path: Path
) -> None:
    codes = iter(f"{n:06d}" for n in range(100, 200))
    calls: list[str] = []

    def provider() -> str:
        calls.append(code := next(codes))
        return code

    cache = arc.JSONFileCache(tmp_path)
    session = arc.assume_role(parent, role_arn("A"), DurationSeconds=900, SerialNumber=SERIAL, mfa_token_provider=provider, cache=cache)
    s3 = session.client("s3")
    for cycle in range(4):
        for step in range(20):
            clock.move_to(at(cycle * 675 + step * 30))
            s3.list_buckets()
    assert calls == ["000100", "000101", "000102", "000103"]
    assert token_codes(sent_assume_role_requests) == calls
    assert all(fields["SerialNumber"] == [SERIAL] for fields in sent_assume_role_requests)
    # A second session on the same cache is served from it: the provider is not called.
    again = arc.assume_role(parent, role_arn("A"), DurationSeconds=900, SerialNumber=SERIAL, mfa_token_provider=provider, cache=cache)
    again.client("s3").list_buckets()
    assert len(calls) == 4


def test_provider_kwargs_are_passed_to_a_callable(parent: boto3.Session, sent_assume_role_requests: SentRequests) -> None:
    def provider(device: str) -> str:
        return "654321" if device == "yubikey" else "000000"

    arc.whoami(arc.assume_role(parent, role_arn("A"), SerialNumber=SERIAL, mfa_token_provider=provider, mfa_token_provider_kwargs={"device": "yubikey"}))
    assert token_codes(sent_assume_role_requests) == ["654321"]


def test_provider_returning_garbage_is_a_clear_error(parent: boto3.Session) -> None:
    session = arc.assume_role(parent, role_arn("A"), SerialNumber=SERIAL, mfa_token_provider=lambda: "12ab")
    with pytest.raises(arc.MFATokenError, match="six digits"):
        arc.whoami(session)


@pytest.fixture
def scripts(tmp_path: Path) -> Callable[[str], list[str]]:
    def make(body: str) -> list[str]:
        path = tmp_path / f"mfa_{abs(hash(body))}.py"
        path.write_text(textwrap.dedent(body))
        return [sys.executable, str(path)]

    return make


def test_command_provider_takes_the_last_six_digit_number(parent: boto3.Session, sent_assume_role_requests: SentRequests, scripts: Callable[[str], list[str]]) -> None:
    command = scripts("""
        print("Touch your YubiKey... device 1234567 slot 12")
        print("code for account 123456789012 is:")
        print("   482913   ")
    """)
    arc.whoami(arc.assume_role(parent, role_arn("A"), SerialNumber=SERIAL, mfa_token_provider=command))
    assert token_codes(sent_assume_role_requests) == ["482913"]


def test_command_as_a_string_is_split_without_a_shell(parent: boto3.Session, sent_assume_role_requests: SentRequests, scripts: Callable[[str], list[str]], tmp_path: Path) -> None:
    command = scripts("""
        import sys
        print(sys.argv[1], "and then", sys.argv[2])
    """)
    marker = tmp_path / "shell-ran"
    line = f"{command[0]} {command[1]} 'first arg; touch {marker}' 271828"
    arc.whoami(arc.assume_role(parent, role_arn("A"), SerialNumber=SERIAL, mfa_token_provider=line))
    assert token_codes(sent_assume_role_requests) == ["271828"]
    assert not marker.exists()


@pytest.mark.parametrize(
    ("body", "kwargs", "message"),
    [
        ("import sys; print('oops: device 123456 locked', file=sys.stderr); sys.exit(3)", {}, "exited with status 3"),
        ("import time; time.sleep(30)", {"timeout": 0.5}, "timed out after 0.5"),
        ("pass", {}, "printed no six-digit code"),
    ],
    ids=["failing", "hanging", "silent"],
)
def test_command_failures_are_clear_and_never_show_a_code(
    parent: boto3.Session, scripts: Callable[[str], list[str]], body: str, kwargs: dict[str, Any], message: str
) -> None:
    session = arc.assume_role(parent, role_arn("A"), SerialNumber=SERIAL, mfa_token_provider=scripts(body), mfa_token_provider_kwargs=kwargs)
    with pytest.raises(arc.MFATokenError) as raised:
        arc.whoami(session)
    assert message in str(raised.value)
    assert "123456" not in str(raised.value)


def test_static_code_is_used_for_the_first_fetch_only(parent: boto3.Session, clock: time_machine.Traveller, sent_assume_role_requests: SentRequests) -> None:
    session = arc.assume_role(parent, role_arn("A"), DurationSeconds=900, SerialNumber=SERIAL, TokenCode="135790")
    s3 = session.client("s3")
    s3.list_buckets()
    assert token_codes(sent_assume_role_requests) == ["135790"]
    clock.move_to(at(700))  # advisory: the refresh needs a new code, stdin is not a TTY
    s3.list_buckets()  # still served (static stability)
    clock.move_to(at(850))
    with pytest.raises(arc.MFATokenError, match="mfa_token_provider"):
        s3.list_buckets()
    assert token_codes(sent_assume_role_requests) == ["135790"], "the static code is never sent twice"


PROMPT_SCRIPT = """
import datetime as dt, os, sys, boto3
import assume_role_chain as arc
now = [dt.datetime.now(dt.timezone.utc)]
session = arc.assume_role(boto3.Session(), "{role}", DurationSeconds=900, SerialNumber="{serial}",
                          TokenCode="111111", clock=lambda: now[0])
credentials = session.get_credentials()
first = credentials.get_frozen_credentials().access_key
now[0] += dt.timedelta(seconds=860)
second = credentials.get_frozen_credentials().access_key
print("REFRESHED" if first != second else "SAME", flush=True)
"""


def test_prompts_on_a_terminal_when_a_new_code_is_needed(aws_env: str, tmp_path: Path) -> None:
    script = tmp_path / "prompt.py"
    script.write_text(PROMPT_SCRIPT.format(role=role_arn("A"), serial=SERIAL))
    pid, fd = pty.fork()  # the child gets a real controlling terminal
    if pid == 0:
        os.execv(sys.executable, [sys.executable, str(script)])
    output = b""
    try:
        output += read_until(fd, b"MFA code for")
        os.write(fd, b"222222\n")
        output += read_until(fd, b"REFRESHED", b"SAME", b"Error")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, output
    assert b"REFRESHED" in output
    assert b"222222" not in output, "getpass does not echo the code"


def read_until(fd: int, *markers: bytes, timeout: float = 60) -> bytes:
    """Read the terminal until one of ``markers`` appears or the child closes it."""
    data = b""
    while not any(marker in data for marker in markers):
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise AssertionError(f"none of {markers!r} in {data!r}")
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        data += chunk
    return data


def test_cli_mfa_options(aws_env: str, capsys: pytest.CaptureFixture[str], scripts: Callable[[str], list[str]], tmp_path: Path) -> None:
    command = " ".join(scripts("print('code 864209')"))
    assert arc.main([role_arn("A"), role_arn("B"), "--SerialNumber", SERIAL, "--mfa-command", command, "--json"]) == 0
    assert arc.main([role_arn("A"), "--SerialNumber", SERIAL, "--TokenCode", "123456"]) == 0
    assert arc.main([role_arn("A"), "--SerialNumber", SERIAL, "--TokenCode", "12345"]) == arc.EXIT_BAD_ARGUMENTS
    err = capsys.readouterr().err
    assert "TokenCode" in err and "12345" not in err
    # --SerialNumber alone reads the code from the terminal or stdin: tests/test_cli.py


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"SerialNumber": SERIAL}, "SerialNumber"),
        ({"mfa_token_provider": lambda: "123456"}, "mfa_token_provider"),
        ({"SerialNumber": SERIAL, "TokenCode": "1234567"}, "TokenCode"),
        ({"SerialNumber": SERIAL, "mfa_token_provider": 3.14}, "mfa_token_provider"),
        ({"SerialNumber": SERIAL, "mfa_token_provider": []}, "mfa_token_provider"),
        ({"SerialNumber": SERIAL, "mfa_token_provider": "unterminated 'quote"}, "mfa_token_provider"),
        ({"SerialNumber": SERIAL, "mfa_token_provider": "echo 1", "mfa_token_provider_kwargs": "timeout=3"}, "mfa_token_provider_kwargs"),
    ]
    + [({"SerialNumber": SERIAL, "mfa_token_provider": ["echo", "123456"], "mfa_token_provider_kwargs": {option: True}}, option)
       for option in ("shell", "executable", "preexec_fn", "stdout", "stderr")],
)
def test_mfa_argument_errors(parent: boto3.Session, connections: list[Any], kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError, match=param):
        arc.assume_role(parent, role_arn("A"), **kwargs)
    assert connections == []


def test_refused_command_options_even_without_validation(parent: boto3.Session) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError, match="shell"):
        arc.assume_role(parent, role_arn("A"), SerialNumber=SERIAL, mfa_token_provider="echo 123456", mfa_token_provider_kwargs={"shell": True}, validate=False)


def test_mfa_on_chain_hops_and_patched_methods(parent: boto3.Session, sent_assume_role_requests: SentRequests) -> None:
    chain = arc.assume_role_chain(parent, [{"RoleArn": role_arn("A"), "SerialNumber": SERIAL, "mfa_token_provider": lambda: "909090"}, role_arn("B")])
    arc.whoami(chain)
    arc.patch_boto3()
    patched = parent.assume_role(role_arn("C"), SerialNumber=SERIAL, mfa_token_provider=lambda: "808080")  # type: ignore[attr-defined]
    arc.whoami(patched)
    assert token_codes(sent_assume_role_requests) == ["909090", "808080"]
