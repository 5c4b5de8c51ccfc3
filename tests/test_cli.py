"""The command line: env and credential_process output, exit codes, option parsing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

import assume_role_chain as arc
from tests.conftest import role_arn

SCRIPT = str(Path(sys.executable).parent / "assume-role-chain")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=60, env=os.environ.copy())


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


def test_options_reach_sts(aws_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, list[str]]] = []
    import urllib.parse

    class WatchedSession(boto3.Session):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self._session.register("before-send.sts.AssumeRole", lambda request, **_: sent.append(urllib.parse.parse_qs(request.body.decode() if isinstance(request.body, bytes) else request.body)))

    monkeypatch.setattr(boto3, "Session", WatchedSession)
    code = arc.main([
        role_arn("A"), "--Tags", "team=blue,cost=a=b", "--PolicyArns", "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "--Policy", '{"Version": "2012-10-17", "Statement": []}', "--DurationSeconds", "1200",
        "--TransitiveTagKeys", "team", "--ExternalId", "ext-1", "--SourceIdentity", "carol",
    ])
    assert code == 0, capsys.readouterr().err
    [fields] = sent
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
    ],
)
def test_bad_arguments_exit_2_with_one_line(aws_env: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert arc.main(args) == arc.EXIT_BAD_ARGUMENTS
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


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
