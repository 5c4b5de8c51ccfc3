"""The command line: env and credential_process output, exit codes, option parsing."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

import assume_role_chain as arc
from tests.conftest import on_a_terminal, role_arn

SCRIPT = str(Path(sys.executable).parent / "assume-role-chain")
SERIAL = "arn:aws:iam::123456789012:mfa/cli-user"


def run_cli(*args: str, stdin: str | None = None, home: Path | None = None, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")} if home else {}), **(extra_env or {})}
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=60, env=env, input=stdin)


@pytest.fixture
def cli_requests(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, list[str]]]:
    """Form fields of the AssumeRole requests that in-process ``main`` calls send."""
    sent: list[dict[str, list[str]]] = []

    def record(request: Any, **_: Any) -> None:
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        sent.append(urllib.parse.parse_qs(body))

    class WatchedSession(boto3.Session):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._session.register("before-send.sts.AssumeRole", record)

    monkeypatch.setattr(boto3, "Session", WatchedSession)
    return sent


def test_env_output_is_export_friendly(aws_env: str) -> None:
    result = run_cli(role_arn("A"), "--RoleSessionName", "cli")
    assert result.returncode == 0, result.stderr
    values = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert set(values) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CREDENTIALS_EXPIRATION"}
    identity = boto3.Session(
        aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=values["AWS_SESSION_TOKEN"],
    ).client("sts").get_caller_identity()
    assert identity["Arn"].endswith(":assumed-role/A/cli")


def test_json_output_is_credential_process_format(aws_env: str) -> None:
    result = run_cli(role_arn("A"), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["Version"] == 1
    assert set(data) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert data["Expiration"].endswith("Z")


def test_several_arns_make_a_chain(aws_env: str, capsys: pytest.CaptureFixture[str], sts_calls: Callable[[], int]) -> None:
    assert arc.main([role_arn("A"), role_arn("B"), role_arn("C"), "--json", "--RoleSessionName", "chained"]) == 0
    data = json.loads(capsys.readouterr().out)
    session = boto3.Session(aws_access_key_id=data["AccessKeyId"], aws_secret_access_key=data["SecretAccessKey"], aws_session_token=data["SessionToken"])
    assert arc.whoami(session)["Arn"].endswith(":assumed-role/C/chained")
    assert sts_calls() == 3


def test_options_reach_sts(cli_requests: list[dict[str, list[str]]], capsys: pytest.CaptureFixture[str]) -> None:
    code = arc.main([
        role_arn("A"), "--Tags", "team=blue,cost=a=b", "--PolicyArns", "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "--Policy", '{"Version": "2012-10-17", "Statement": []}', "--DurationSeconds", "1200",
        "--TransitiveTagKeys", "team", "--ExternalId", "ext-1", "--SourceIdentity", "carol",
    ])
    assert code == 0, capsys.readouterr().err
    [fields] = cli_requests
    tags = {fields[f"Tags.member.{i}.Key"][0]: fields[f"Tags.member.{i}.Value"][0] for i in (1, 2)}
    assert tags == {"team": "blue", "cost": "a=b"}
    assert fields["PolicyArns.member.1.arn"] == ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    assert fields["DurationSeconds"] == ["1200"] and fields["ExternalId"] == ["ext-1"]
    assert fields["TransitiveTagKeys.member.1"] == ["team"] and fields["RoleSessionName"] == ["carol"]


def test_tags_as_json(aws_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert arc.main([role_arn("A"), "--Tags", '{"team": "blue", "x": "1"}']) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--json"], "RoleArn"),
        (["not-an-arn"], "RoleArn"),
        ([role_arn("A"), "--DurationSeconds", "ten"], "DurationSeconds"),
        ([role_arn("A"), "--DurationSeconds", "60"], "DurationSeconds"),
        ([role_arn("A"), "--Tags", "novalue"], "Tags"),
        ([role_arn("A"), "--Policy", "[1]"], "Policy"),
        ([role_arn("A"), "--env", "--json"], "--json"),
        ([role_arn("A"), "--TransitiveTagKeys", '{"a": "b"}'], "--TransitiveTagKeys"),
        ([role_arn("A"), "--TransitiveTagKeys", "[oops"], "--TransitiveTagKeys"),
        ([role_arn("A"), "--PolicyArns", "[oops"], "--PolicyArns"),
        ([role_arn("A"), "--PolicyArns", '[{"arn": 1}]'], "--PolicyArns"),
        ([role_arn("A"), "--PolicyArns", '[{"Arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}]'], "--PolicyArns"),
        ([role_arn("A"), "--Tags", "[1]"], "--Tags"),
        ([role_arn("A"), "--Policy", "{oops"], "--Policy"),
        ([role_arn("A"), "--output", "yaml"], "--output"),
        ([role_arn("A"), "--no-cache", "--cache-dir", "/tmp/x"], "--cache-dir"),
        ([role_arn("A"), "--cache", "redis://127.0.0.1:1/0", "--cache-dir", "/tmp/x"], "--cache-dir"),
        ([role_arn("A"), "--cache", "memcached://127.0.0.1:1"], "--cache"),
        ([role_arn("A"), "--cache", "dynamodb://a"], "--cache"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(aws_env: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert arc.main(args) == arc.EXIT_BAD_ARGUMENTS
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not re.search(r"(?<![\w-])_[a-z]", err), "no message names an internal function"


def test_no_credentials_exit_3(aws_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert arc.main([role_arn("A")]) == arc.EXIT_NO_CREDENTIALS
    assert "no starting credentials" in capsys.readouterr().err


def test_missing_profile_exit_3(aws_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert arc.main(["--profile", "nope", role_arn("A")]) == arc.EXIT_NO_CREDENTIALS


def test_refused_assume_role_exit_4(aws_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert arc.main([role_arn("A")]) == arc.EXIT_ASSUME_ROLE_FAILED
    err = capsys.readouterr().err
    assert "AssumeRole failed" in err and err.count("\n") == 1
    assert "parent-secret" not in err


def test_access_denied_exit_4(aws_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.exceptions

    def deny(**_: object) -> None:
        raise botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied", "Message": "not trusted"}}, "AssumeRole")

    class DenyingSession(boto3.Session):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self._session.register("before-call.sts.AssumeRole", deny)

    monkeypatch.setattr(boto3, "Session", DenyingSession)
    assert arc.main([role_arn("A")]) == arc.EXIT_ASSUME_ROLE_FAILED
    assert "AssumeRole refused [AccessDenied]: not trusted" in capsys.readouterr().err


def test_cache_dir_option(aws_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], sts_calls: Callable[[], int]) -> None:
    for _ in range(2):
        assert arc.main([role_arn("A"), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert sts_calls() == 1


@pytest.mark.parametrize("store", ["redis", "dynamodb"])
@pytest.mark.parametrize("sealed", [False, True])
def test_cache_url_option_shares_credentials_between_runs(
    store: str, sealed: bool, aws_env: str, request: pytest.FixtureRequest, tmp_path: Path, sts_calls: Callable[[], int],
) -> None:
    if store == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        arc.DynamoDBCache.create_table("cli-cache")
        url = "dynamodb://cli-cache"
    key = base64.b64encode(bytes(range(32))).decode() if sealed else ""
    outputs = []
    for host in ("one", "two"):  # two hosts: nothing shared but the store
        result = run_cli(role_arn("A"), "--json", "--cache", url, home=tmp_path / host, extra_env={"ASSUME_ROLE_CHAIN_CACHE_KEY": key})
        assert result.returncode == 0, result.stderr
        outputs.append(json.loads(result.stdout)["AccessKeyId"])
    assert outputs[0] == outputs[1] and sts_calls() == 1


def test_a_bad_cache_key_in_the_environment_exits_2_without_echoing_it(aws_env: str, tmp_path: Path) -> None:
    result = run_cli(role_arn("A"), "--cache", "redis://127.0.0.1:1/0", home=tmp_path, extra_env={"ASSUME_ROLE_CHAIN_CACHE_KEY": "c2hvcnQta2V5"})
    assert result.returncode == arc.EXIT_BAD_ARGUMENTS
    assert "ASSUME_ROLE_CHAIN_CACHE_KEY" in result.stderr and "c2hvcnQta2V5" not in result.stderr


def test_credential_process_profile_works_with_boto3(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Path(os.environ["AWS_CONFIG_FILE"])
    config.write_text(
        "[profile base]\n"
        "aws_access_key_id = AKIABASEEXAMPLE00000\n"
        "aws_secret_access_key = base-secret\n"
        "[profile via-process]\n"
        f"credential_process = {SCRIPT} --profile base {role_arn('A')} {role_arn('B')} --RoleSessionName proc --json\n"
        "region = us-east-1\n"
    )
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    session = boto3.Session(profile_name="via-process")
    assert session.client("sts").get_caller_identity()["Arn"].endswith(":assumed-role/B/proc")
    chained = arc.assume_role(session, role_arn("C"), RoleSessionName="after-process")
    assert arc.whoami(chained)["Arn"].endswith(":assumed-role/C/after-process")


def test_module_entry_point(aws_env: str) -> None:
    result = subprocess.run([sys.executable, "-m", "assume_role_chain", role_arn("A"), "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Version"] == 1


def test_policy_arns_in_the_api_shape(cli_requests: list[dict[str, list[str]]], capsys: pytest.CaptureFixture[str]) -> None:
    """aws-assume-role-lib's documented form: a JSON list of {"arn": ...} objects."""
    policies = ["arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::123456789012:policy/Extra"]
    forms = [",".join(policies), json.dumps(policies), json.dumps([{"arn": arn} for arn in policies])]
    for form in forms:
        assert arc.main([role_arn("A"), "--PolicyArns", form]) == 0, capsys.readouterr().err
    assert [[fields[f"PolicyArns.member.{i}.arn"][0] for i in (1, 2)] for fields in cli_requests] == [policies] * 3


def test_mfa_code_from_a_pipe_on_stdin(cli_requests: list[dict[str, list[str]]], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"654321\n")
    os.close(write_end)
    with os.fdopen(read_end) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        assert arc.main([role_arn("A"), "--SerialNumber", SERIAL]) == 0, capsys.readouterr().err
    assert "AWS_SESSION_TOKEN=" in capsys.readouterr().out
    [fields] = cli_requests
    assert fields["SerialNumber"] == [SERIAL] and fields["TokenCode"] == ["654321"]


def test_mfa_code_from_stdin_through_the_installed_command(aws_env: str) -> None:
    result = run_cli(role_arn("A"), "--SerialNumber", SERIAL, "--json", stdin="135790\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Version"] == 1 and result.stderr == ""
    for bad in ("", "12345\n", "1234567\n", "abcdef\n"):
        failed = run_cli(role_arn("A"), "--SerialNumber", SERIAL, stdin=bad)
        assert failed.returncode == arc.EXIT_ASSUME_ROLE_FAILED and failed.stdout == ""
        assert failed.stderr.count("\n") == 1 and "MFA code" in failed.stderr
        assert bad.strip() == "" or bad.strip() not in failed.stderr


def test_mfa_code_from_a_real_terminal(aws_env: str) -> None:
    with on_a_terminal([SCRIPT, role_arn("A"), "--SerialNumber", SERIAL]) as terminal:
        terminal.read_until(b"MFA code for " + SERIAL.encode())
        terminal.type(b"246810\n")
        terminal.read_until()
    assert terminal.exit_code == 0, terminal.output
    assert b"AWS_ACCESS_KEY_ID=ASIA" in terminal.output
    assert b"246810" not in terminal.output, "the code is not echoed"


def test_credential_process_output_is_cached_by_default(aws_env: str, tmp_path: Path, sts_calls: Callable[[], int]) -> None:
    """The SDKs re-run a credential_process whose credentials expire within 15 minutes."""
    args = (role_arn("A"), "--output", "credential-process", "--DurationSeconds", "900", "--RoleSessionName", "proc")
    outputs = [run_cli(*args, home=tmp_path) for _ in range(2)]
    assert [result.returncode for result in outputs] == [0, 0], outputs[0].stderr
    assert outputs[0].stdout == outputs[1].stdout and json.loads(outputs[0].stdout)["Version"] == 1
    assert sts_calls() == 1
    assert len(list((tmp_path / ".aws" / "assume-role-chain" / "cache").glob("*.json"))) == 1
    for _ in range(2):
        assert run_cli(*args, "--no-cache", home=tmp_path).returncode == 0
    assert sts_calls() == 3
    for _ in range(2):
        assert run_cli(role_arn("A"), "--json", "--DurationSeconds", "900", home=tmp_path).returncode == 0
    assert sts_calls() == 5, "--json does not cache unless --cache-dir is given"


def test_credential_process_with_900_s_credentials_costs_one_assume_role(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sts_calls: Callable[[], int]) -> None:
    """botocore re-runs the command before every call here; the cache answers it."""
    Path(os.environ["AWS_CONFIG_FILE"]).write_text(
        "[profile short]\n"
        f"credential_process = {SCRIPT} {role_arn('A')} --DurationSeconds 900 --output credential-process\n"
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    sts = boto3.Session(profile_name="short").client("sts")
    for _ in range(3):
        assert sts.get_caller_identity()["Arn"].startswith("arn:aws:sts::123456789012:assumed-role/A/")
    assert sts_calls() == 1


def test_library_loggers_have_a_null_handler() -> None:
    import iot_x509

    for module in (arc, iot_x509):
        assert any(isinstance(handler, logging.NullHandler) for handler in logging.getLogger(module.__name__).handlers)


# -- STS client options ------------------------------------------------------------------


def test_cli_sts_client_kwargs_and_whoami(aws_env: str, second_moto: str, capsys: pytest.CaptureFixture[str], sts_calls: Callable[[], int]) -> None:
    assert arc.main([role_arn("A"), "--RoleSessionName", "cli-who", "--whoami"]) == 0
    assert json.loads(capsys.readouterr().out)["Arn"].endswith(":assumed-role/A/cli-who")
    assert arc.main([role_arn("B"), "--sts-client-kwargs", json.dumps({"endpoint_url": second_moto}), "--json"]) == 0
    assert sts_calls() == 1
    assert arc.main([role_arn("B"), "--sts-client-kwargs", '{"aws_access_key_id": "x"}']) == arc.EXIT_BAD_ARGUMENTS
    assert "aws_access_key_id" in capsys.readouterr().err
