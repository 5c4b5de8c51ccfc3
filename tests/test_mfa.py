"""MFA: token providers (functions and commands), static codes, prompts, the CLI options."""

from __future__ import annotations

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
from tests.conftest import SentRequests, on_a_terminal, role_arn
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
    with on_a_terminal([sys.executable, str(script)]) as terminal:
        terminal.read_until(b"MFA code for")
        terminal.type(b"222222\n")
        terminal.read_until(b"REFRESHED", b"SAME", b"Error")
    assert terminal.exit_code == 0, terminal.output
    assert b"REFRESHED" in terminal.output
    assert b"222222" not in terminal.output, "getpass does not echo the code"


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


PROMPT_ONLY_SCRIPT = """
import datetime as dt, sys, urllib.parse, boto3
import assume_role_chain as arc
now = [dt.datetime.now(dt.timezone.utc)]
parent = boto3.Session()
codes = []
def record(request, **_):
    fields = urllib.parse.parse_qs(request.body.decode() if isinstance(request.body, bytes) else request.body)
    codes.extend(fields.get("TokenCode", []))
parent._session.register("before-send.sts", record)
session = arc.assume_role(parent, "{role}", DurationSeconds=900, SerialNumber="{serial}", clock=lambda: now[0])
credentials = session.get_credentials()
print("CONSTRUCTED", flush=True)
first = credentials.get_frozen_credentials().access_key
now[0] += dt.timedelta(seconds=860)
second = credentials.get_frozen_credentials().access_key
ok = first != second and codes == ["246810", "135791"]
print("PROMPTED-TWICE" if ok else "WRONG %d" % len(codes), flush=True)
"""


def test_serial_number_alone_prompts_on_a_terminal_at_each_fetch(aws_env: str, tmp_path: Path) -> None:
    script = tmp_path / "prompt_only.py"
    script.write_text(PROMPT_ONLY_SCRIPT.format(role=role_arn("A"), serial=SERIAL))
    with on_a_terminal([sys.executable, str(script)]) as terminal:  # stdin is a real terminal: no TokenCode or provider is needed
        terminal.read_until(b"MFA code for", b"Error")
        assert b"CONSTRUCTED" in terminal.output, "nothing is asked before the first fetch"
        terminal.type(b"246810\n")
        terminal.read_until(b"MFA code for", b"Error")  # the refresh asks again
        terminal.type(b"135791\n")
        terminal.read_until(b"PROMPTED-TWICE", b"WRONG", b"Error")
    assert terminal.exit_code == 0, terminal.output
    output = terminal.output
    assert b"PROMPTED-TWICE" in output and output.count(b"MFA code for") == 2
    assert b"246810" not in output and b"135791" not in output, "getpass does not echo the code"


def test_serial_number_alone_without_a_terminal_is_refused_at_construction(parent: boto3.Session, connections: list[Any]) -> None:
    assert not sys.stdin.isatty()
    with pytest.raises(botocore.exceptions.ParamValidationError, match=r"SerialNumber.*terminal"):
        arc.assume_role(parent, role_arn("A"), SerialNumber=SERIAL)
    assert connections == []


def test_token_code_without_serial_number(parent: boto3.Session, connections: list[Any], sent_assume_role_requests: SentRequests) -> None:
    for build in (
        lambda: arc.assume_role(parent, role_arn("A"), TokenCode="123456"),
        lambda: arc.assume_role_chain(parent, [{"RoleArn": role_arn("A"), "TokenCode": "123456"}]),
    ):
        with pytest.raises(botocore.exceptions.ParamValidationError, match=r"TokenCode.*SerialNumber") as raised:
            build()
        assert "123456" not in str(raised.value)
    assert connections == []
    # SerialNumber may also come in additional_kwargs
    arc.whoami(arc.assume_role(parent, role_arn("A"), TokenCode="314159", additional_kwargs={"SerialNumber": SERIAL}))
    assert token_codes(sent_assume_role_requests) == ["314159"]


def yubikey(device: str, *, slot: int = 1) -> str:
    return "654321"


@pytest.mark.parametrize(
    ("provider", "kwargs", "unknown", "accepted"),
    [
        (["echo", "123456"], {"timeot": 5}, "timeot", ["timeout", "cwd", "env"]),
        ("echo 123456", {"timeout": 5, "enviroment": {}}, "enviroment", ["timeout", "env"]),
        (yubikey, {"device": "usb", "slots": 2}, "slots", ["device", "slot"]),
        (lambda: "123456", {"device": "usb"}, "device", []),
    ],
    ids=["command-list", "command-string", "function", "function-without-parameters"],
)
def test_unknown_provider_kwargs_are_refused_at_construction(
    parent: boto3.Session, connections: list[Any], provider: Any, kwargs: dict[str, Any], unknown: str, accepted: list[str]
) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError) as raised:
        arc.assume_role(parent, role_arn("A"), SerialNumber=SERIAL, mfa_token_provider=provider, mfa_token_provider_kwargs=kwargs)
    message = str(raised.value)
    assert f"mfa_token_provider_kwargs['{unknown}']" in message and "accepted" in message
    assert all(name in message for name in accepted)
    assert len(message.splitlines()) == 2, "only the unknown key is reported"
    assert connections == []


def test_known_provider_kwargs_and_keyword_catch_alls_are_accepted(parent: boto3.Session, sent_assume_role_requests: SentRequests) -> None:
    def anything(**options: Any) -> str:
        return "112233" if options == {"whatever": 1} else "000000"

    arc.whoami(arc.assume_role(parent, role_arn("A"), SerialNumber=SERIAL, mfa_token_provider=anything, mfa_token_provider_kwargs={"whatever": 1}))
    arc.whoami(arc.assume_role(parent, role_arn("A"), SerialNumber=SERIAL, mfa_token_provider=yubikey, mfa_token_provider_kwargs={"device": "usb", "slot": 2}))
    assert token_codes(sent_assume_role_requests) == ["112233", "654321"]


@pytest.mark.parametrize(
    ("returned", "described"),
    [
        ("otp123456", "9 characters (ASCII digits, letters)"),
        (" 12345", "6 characters (ASCII digits, whitespace)"),
        ("123456\n", "7 characters (ASCII digits, whitespace)"),
        ("12345", "5 characters (ASCII digits)"),
        ("1234567", "7 characters (ASCII digits)"),
        ("١٢٣٤٥٦", "6 characters (other digits)"),
        ("12-456", "6 characters (ASCII digits, other characters)"),
        ("", "0 characters (empty)"),
        (None, "a NoneType"),
        (123456.0, "a float"),
        (True, "a bool"),
        (1234567, "an int that is negative or has more than six digits"),
        (-1, "an int that is negative or has more than six digits"),
    ],
)
def test_provider_results_that_are_not_six_digits(parent: boto3.Session, returned: Any, described: str) -> None:
    session = arc.assume_role(parent, role_arn("A"), SerialNumber=SERIAL, mfa_token_provider=lambda: returned)
    with pytest.raises(arc.MFATokenError) as raised:
        arc.whoami(session)
    message = str(raised.value)
    assert described in message and "six digits" in message
    for secret_part in ("12345", "otp", "١٢٣"):
        assert secret_part not in message, "the value is never echoed"


@pytest.mark.parametrize(("returned", "sent"), [(123456, "123456"), (42, "000042"), ("000123", "000123")])
def test_provider_may_return_an_int(parent: boto3.Session, sent_assume_role_requests: SentRequests, returned: Any, sent: str) -> None:
    arc.whoami(arc.assume_role(parent, role_arn("A"), SerialNumber=SERIAL, mfa_token_provider=lambda: returned))
    assert token_codes(sent_assume_role_requests) == [sent]
