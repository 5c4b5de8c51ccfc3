"""ARN helpers, Lambda session names, whoami/get_identity and get_credentials."""

from __future__ import annotations

import re

import boto3
import botocore.exceptions
import pytest
import time_machine

import assume_role_chain as arc
from tests.conftest import role_arn
from tests.faults import at


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((123456789012, "Reader"), "arn:aws:iam::123456789012:role/Reader"),
        ((1234, "Reader"), "arn:aws:iam::000000001234:role/Reader"),
        ((0, "Reader"), "arn:aws:iam::000000000000:role/Reader"),
        ((10**12 - 1, "Reader"), "arn:aws:iam::999999999999:role/Reader"),
        (("000000000042", "Reader"), "arn:aws:iam::000000000042:role/Reader"),
        (("123456789012", "team/ops/Reader"), "arn:aws:iam::123456789012:role/team/ops/Reader"),
        (("123456789012", "Reader", "/team/"), "arn:aws:iam::123456789012:role/team/Reader"),
        (("123456789012", "Reader", "team"), "arn:aws:iam::123456789012:role/team/Reader"),
        (("123456789012", "Reader", "/"), "arn:aws:iam::123456789012:role/Reader"),
        (("123456789012", "Reader", "", "aws-cn"), "arn:aws-cn:iam::123456789012:role/Reader"),
    ],
)
def test_get_role_arn(args: tuple[object, ...], expected: str) -> None:
    assert arc.get_role_arn(*args) == expected  # type: ignore[arg-type]


BAD_ACCOUNT_IDS = ["abc", "42", -5, 10**12, "12345678901", "1234567890123", "123456789012\n", " 123456789012",
                   "١٢٣٤٥٦٧٨٩٠١٢", True, 123456789012.0, None, b"123456789012"]


@pytest.mark.parametrize("account_id", BAD_ACCOUNT_IDS, ids=[repr(a) for a in BAD_ACCOUNT_IDS])
def test_account_ids_must_be_twelve_digits(account_id: object) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError, match="account_id"):
        arc.get_role_arn(account_id, "Reader")  # type: ignore[arg-type]
    with pytest.raises(botocore.exceptions.ParamValidationError, match="account_id"):
        arc.get_assumed_role_session_arn(account_id, "Reader", "me")  # type: ignore[arg-type]


def test_lambda_session_name_outside_lambda_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    with pytest.raises(botocore.exceptions.ParamValidationError, match=r"function_name.*AWS_LAMBDA_FUNCTION_NAME"):
        arc.generate_lambda_session_name()
    with pytest.raises(botocore.exceptions.ParamValidationError, match="function_name"):
        arc.generate_lambda_session_name("", "1", "id")
    assert arc.generate_lambda_session_name("fn", "1", "id") == "fn.1.id"


def test_get_role_arn_refuses_two_paths() -> None:
    with pytest.raises(ValueError, match="path"):
        arc.get_role_arn("123456789012", "team/Reader", path="other")


def test_get_assumed_role_session_arn_drops_the_path() -> None:
    assert arc.get_assumed_role_session_arn(7, "team/Reader", "me") == "arn:aws:sts::000000000007:assumed-role/Reader/me"
    assert arc.get_assumed_role_session_arn("123456789012", "Reader", "me", "aws-us-gov") == "arn:aws-us-gov:sts::123456789012:assumed-role/Reader/me"


def test_assumed_role_session_arn_matches_sts(parent: boto3.Session) -> None:
    session = arc.assume_role(parent, arc.get_role_arn(123456789012, "team/Reader"), RoleSessionName="matching")
    assert arc.whoami(session)["Arn"] == arc.get_assumed_role_session_arn(123456789012, "team/Reader", "matching")


def test_lambda_session_name_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "my-function")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "7")
    monkeypatch.setenv("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/21/[7]0123456789abcdef0123456789abcdef")
    assert arc.generate_lambda_session_name() == "my-function.7.0123456789abcdef0123456789abcdef"


def test_lambda_session_name_never_includes_latest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fn")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    monkeypatch.setenv("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/21/[$LATEST]abc123")
    assert arc.generate_lambda_session_name() == "fn.abc123"


def test_lambda_session_name_arguments_and_truncation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_LAMBDA_LOG_STREAM_NAME", raising=False)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_VERSION", raising=False)
    assert arc.generate_lambda_session_name("f", "3", "id") == "f.3.id"
    long_name = "n" * 70
    assert arc.generate_lambda_session_name(long_name, "3", "id") == "n" * 64
    assert arc.generate_lambda_session_name("n" * 58, "12", "identifier") == "n" * 58 + ".ident"
    assert len(arc.generate_lambda_session_name("n" * 40, "1", "x" * 40)) == 64
    timestamped = arc.generate_lambda_session_name("fn")
    assert re.fullmatch(r"fn\.\d{14,}", timestamped)
    random_id = arc.generate_lambda_session_name("n" * 50)
    assert re.fullmatch(r"n{50}\.[a-z0-9]{13}", random_id)


def test_lambda_session_name_is_a_valid_role_session_name(monkeypatch: pytest.MonkeyPatch) -> None:
    name = arc.generate_lambda_session_name("my fn:with/bad*chars", "1", "id")
    assert re.fullmatch(r"[\w+=,.@-]{2,64}", name)


def test_whoami_is_the_identity_of_that_session(parent: boto3.Session) -> None:
    assert arc.whoami(parent)["Arn"].endswith(":user/moto")
    child = arc.assume_role(parent, role_arn("A"), RoleSessionName="who")
    identity = arc.whoami(child)
    assert identity["Arn"] == "arn:aws:sts::123456789012:assumed-role/A/who"
    assert set(identity) == {"UserId", "Account", "Arn"}


# -- credential inspection: get_credentials, get_identity -------------------------------


def test_get_credentials_returns_the_current_generation(parent: boto3.Session, clock: time_machine.Traveller) -> None:
    session = arc.assume_role(parent, role_arn("A"), DurationSeconds=900)
    current = arc.get_credentials(session)
    assert set(current) == {"access_key", "secret_key", "token", "expiry_time"}
    assert current["expiry_time"] == "2026-11-21T12:15:00Z"
    clock.move_to(at(700))
    refreshed = arc.get_credentials(session)
    assert refreshed["access_key"] != current["access_key"] and refreshed["expiry_time"] == "2026-11-21T12:26:40Z"
    static = arc.get_credentials(parent)
    assert static["access_key"] == "AKIAPARENTEXAMPLE000" and static["expiry_time"] is None


def test_get_identity_is_whoami(parent: boto3.Session) -> None:
    assert arc.get_identity is arc.whoami
    assert arc.get_identity(arc.assume_role(parent, role_arn("A"), RoleSessionName="me"))["Arn"].endswith("/A/me")


def test_get_credentials_without_credentials(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(botocore.exceptions.NoCredentialsError):
        arc.get_credentials(boto3.Session())
