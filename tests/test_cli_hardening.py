"""Attacks on the command line (docs/RELIABILITY.md, "Attacks on the command lines").

A hostile or broken STS behind ``AWS_ENDPOINT_URL`` (a stub answering
AssumeRole with whatever a test sets), secrets typed after a misspelt option,
forged error lines, a closed stdout, and a real shell evaluating ``--env``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

import assume_role_chain as arc
from tests.conftest import role_arn
from tests.servers import LocalSTS

SCRIPT = str(Path(sys.executable).parent / "assume-role-chain")
GOOD = {
    "AccessKeyId": "ASIASTUBEXAMPLE00001",
    "SecretAccessKey": "stub-secret-access-key-0123456789abcdef",
    "SessionToken": "stub-session-token-0123456789abcdefghijklmnop",
}


def xml_text(value: str) -> str:
    """XML character data that keeps every character, newlines and tabs included."""
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")


class StubSTS(LocalSTS):
    """An STS endpoint on 127.0.0.1 answering AssumeRole with the credentials or error a test sets."""

    def __init__(self) -> None:
        self.credentials = dict(GOOD)
        self.error: tuple[str, str] | None = None  # (Code, Message)
        super().__init__()

    def answer(self) -> tuple[int, bytes]:
        if self.error is not None:
            code, message = (xml_text(part) for part in self.error)
            return 403, (
                '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
                f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>stub</RequestId></ErrorResponse>"
            ).encode()
        expiry = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        fields = "".join(f"<{name}>{xml_text(value)}</{name}>" for name, value in self.credentials.items())
        return 200, (
            '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
            f"<Credentials>{fields}<Expiration>{expiry}</Expiration></Credentials>"
            "<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/A/stub</Arn>"
            "<AssumedRoleId>AROASTUBEXAMPLE:stub</AssumedRoleId></AssumedRoleUser>"
            "</AssumeRoleResult><ResponseMetadata><RequestId>stub</RequestId></ResponseMetadata></AssumeRoleResponse>"
        ).encode()


@pytest.fixture
def stub_sts(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[StubSTS]:
    """STS answers come from the stub; other services still reach moto."""
    stub = StubSTS()
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", stub.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    yield stub
    stub.stop()


def run_cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=60, env=os.environ.copy(), **kwargs)


# -- credentials with whitespace or control characters -------------------------------------

HOSTILE = [
    "token\nAWS_ACCESS_KEY_ID=AKIAINJECTEDEXAMPLE0",
    "token\rAWS_REGION=injected-region-1",
    "token injected $(touch pwned)",
    "token\tinjected-tab-separated",
    "token\x1b[2Kinjected-escape",
    "token\u2028injected-line-separator",
    "token\u00a0injected-no-break-space",
]


@pytest.mark.parametrize("field", ["AccessKeyId", "SecretAccessKey", "SessionToken"])
@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_credentials_with_whitespace_or_control_characters_are_refused(field: str, value: str) -> None:
    session = arc.refreshable_session(lambda: {**GOOD, field: value, "Expiration": "2099-01-01T00:00:00Z"})
    with pytest.raises(arc.InvalidCredentialsError) as caught:
        session.get_credentials().get_frozen_credentials()  # type: ignore[union-attr]
    assert field in str(caught.value) and "whitespace or control characters" in str(caught.value)
    assert "injected" not in str(caught.value), "the value is never echoed"


def test_a_cache_entry_with_hostile_values_is_a_miss() -> None:
    fetched: list[int] = []

    def fetch() -> dict[str, str]:
        fetched.append(1)
        return {**GOOD, "Expiration": "2099-01-01T00:00:00Z"}

    cache = {"entry": {**GOOD, "SessionToken": HOSTILE[0], "Expiration": "2099-01-01T00:00:00Z"}}
    session = arc.refreshable_session(fetch, cache=cache, cache_key="entry")
    assert session.get_credentials().get_frozen_credentials().token == GOOD["SessionToken"]  # type: ignore[union-attr]
    assert fetched == [1] and cache["entry"]["SessionToken"] == GOOD["SessionToken"]


@pytest.mark.parametrize("field", ["AccessKeyId", "SecretAccessKey", "SessionToken"])
def test_hostile_sts_values_are_refused_by_the_library_and_the_command_line(stub_sts: StubSTS, parent: boto3.Session, field: str) -> None:
    stub_sts.credentials[field] = HOSTILE[0]
    with pytest.raises(arc.InvalidCredentialsError):
        arc.get_credentials(arc.assume_role(parent, role_arn("A")))
    for output in ("--env", "--json"):
        result = run_cli(role_arn("A"), output)
        assert result.returncode == arc.EXIT_ASSUME_ROLE_FAILED and result.stdout == ""
        assert result.stderr.count("\n") == 1 and field in result.stderr
        assert "INJECTED" not in result.stderr


def test_env_output_is_quoted_for_a_real_shell(stub_sts: StubSTS, tmp_path: Path) -> None:
    """Shell syntax without whitespace passes the check; quoting keeps it inert."""
    hostile = {
        "SecretAccessKey": "secret'$(touch${IFS}pwned-1)'\"`touch${IFS}pwned-2`\";touch${IFS}pwned-3",
        "SessionToken": "token$HOME|&;<>*?[]{}~#!\\'end",
    }
    stub_sts.credentials.update(hostile)
    shell = (
        f'eval "$({SCRIPT} {role_arn("A")} --env)" || exit 9; '
        'printf "%s\\n%s\\n%s" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "$AWS_SESSION_TOKEN"'
    )
    (workdir := tmp_path / "cwd").mkdir()
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60, cwd=workdir, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n") == [GOOD["AccessKeyId"], hostile["SecretAccessKey"], hostile["SessionToken"]]
    assert list(workdir.iterdir()) == [], "no command ran"


def test_env_output_works_with_export_and_eval(aws_env: str) -> None:
    """Real credentials need no quotes, so `export $(...)` (aws-assume-role-lib's usage) still works."""
    expected = json.loads(run_cli(role_arn("A"), "--json", "--RoleSessionName", "same").stdout)
    for form in ('export $({cmd})', 'eval "$({cmd})"'):
        shell = form.format(cmd=f"{SCRIPT} {role_arn('A')} --RoleSessionName same") + '; printf "%s %s" "$AWS_ACCESS_KEY_ID" "$AWS_SESSION_TOKEN"'
        result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60, env=os.environ.copy())
        key, token = result.stdout.split(" ")
        assert key.startswith("ASIA") and len(token) == len(expected["SessionToken"]), result.stderr


# -- usage errors never echo values ----------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--token-code", "493817"],
        ["--token-code=493817"],
        ["--TokenCode=493817", "--bogus"],
        ["--TokenCode", "493817", "--bogus", "493817"],
        ["--whoami=493817"],
        ["-t493817"],
        ["--DurationSeconds", "493817x"],
        ["--output", "493817"],
    ],
)
def test_usage_errors_redact_values(aws_env: str, args: list[str]) -> None:
    result = run_cli(role_arn("A"), *args)
    assert result.returncode == arc.EXIT_BAD_ARGUMENTS and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "493817" not in result.stderr
    assert result.stderr.startswith("assume-role-chain: bad arguments: ")


def test_a_misspelt_option_is_named_and_its_value_redacted(aws_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert arc.main([role_arn("A"), "--token-code", "493817"]) == arc.EXIT_BAD_ARGUMENTS
    assert capsys.readouterr().err == "assume-role-chain: bad arguments: unrecognized arguments: --token-code ***\n"


# -- one failure, one line -------------------------------------------------------------------


def test_error_text_from_sts_cannot_forge_lines(stub_sts: StubSTS) -> None:
    stub_sts.error = ("AccessDenied", "denied\nassume-role-chain: credentials OK\r\u202eback\u2028\tx")
    result = run_cli(role_arn("A"))
    assert result.returncode == arc.EXIT_ASSUME_ROLE_FAILED
    assert result.stderr == (
        "assume-role-chain: AssumeRole refused [AccessDenied]: "
        "denied\\nassume-role-chain: credentials OK\\r\\u202eback\\u2028\\tx\n"
    )


def test_an_answer_that_does_not_parse_is_one_line_without_the_answer(stub_sts: StubSTS) -> None:
    """botocore's parser error ends with the whole answer, which may hold credentials."""
    stub_sts.credentials["SecretAccessKey"] = "unparsed-secret-\x1b-0123456789abcdef"  # ESC is not XML
    result = run_cli(role_arn("A"))
    assert result.returncode == arc.EXIT_ASSUME_ROLE_FAILED and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("assume-role-chain: AssumeRole failed: Unable to parse")
    assert "unparsed-secret" not in result.stderr and "stub-session-token" not in result.stderr


def test_a_failure_is_one_line_without_the_engine_warning(stub_sts: StubSTS) -> None:
    """The engine logs a WARNING for the failed fetch; the command line prints one line."""
    stub_sts.error = ("AccessDenied", "Not authorized to perform sts:AssumeRole")
    result = run_cli(role_arn("A"), role_arn("B"))
    assert result.returncode == arc.EXIT_ASSUME_ROLE_FAILED
    assert result.stderr == "assume-role-chain: AssumeRole refused [AccessDenied]: Not authorized to perform sts:AssumeRole\n"


def test_warnings_of_a_success_are_one_line_each(aws_env: str) -> None:
    result = run_cli(role_arn("A"), role_arn("B"), "--DurationSeconds", "7200", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["Version"] == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("assume-role-chain: warning: ") and "3600" in line


# -- a closed stdout -------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["--env", "--json", "--whoami"])
def test_a_closed_stdout_exits_quietly(aws_env: str, output: str) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        result = subprocess.run([SCRIPT, role_arn("A"), output], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (arc.EXIT_CLOSED_STDOUT, "")


def test_head_c1_in_a_shell_prints_nothing_on_stderr(aws_env: str) -> None:
    result = subprocess.run(
        ["bash", "-c", f"{SCRIPT} {role_arn('A')} | head -c1"], capture_output=True, text=True, timeout=60, env=os.environ.copy()
    )
    assert result.returncode == 0 and result.stdout == "A" and result.stderr == ""

