"""Typed configs, STS client options, refresh tuning, eager refresh, credential inspection."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
import time_machine

import assume_role_chain as arc
from tests.conftest import SentRequests, role_arn
from tests.faults import START, at

# -- typed configs ----------------------------------------------------------------------


def test_assume_role_config_reads_by_dot_and_key() -> None:
    config = arc.AssumeRoleConfig(RoleArn=role_arn("A"), DurationSeconds=900)
    assert config.RoleArn == config["RoleArn"] == role_arn("A")
    assert config.DurationSeconds == 900
    assert config.ExternalId is None and config["ExternalId"] is None
    assert dict(config) == {"RoleArn": role_arn("A"), "DurationSeconds": 900}
    assert "ExternalId" not in config and "DurationSeconds" in config
    assert config == {"RoleArn": role_arn("A"), "DurationSeconds": 900}
    with pytest.raises(AttributeError, match="Nope"):
        config.Nope  # noqa: B018
    with pytest.raises(AttributeError, match="immutable"):
        config.DurationSeconds = 1000  # type: ignore[misc]


def test_assume_role_config_repr_hides_the_token_code() -> None:
    config = arc.AssumeRoleConfig(RoleArn=role_arn("A"), SerialNumber="arn:aws:iam::123456789012:mfa/alice", TokenCode="246810")
    assert "246810" not in repr(config) and "TokenCode" in repr(config)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"RoleArn": role_arn("A"), "Unknown": 1}, "Unknown"),
        ({"RoleArn": role_arn("A"), "TokenCode": "12345"}, "TokenCode"),
        ({"RoleArn": role_arn("A"), "DurationSeconds": 100}, "DurationSeconds"),
        ({"RoleArn": "arn:aws:s3:::bucket"}, "RoleArn"),
        ({"DurationSeconds": 900}, "RoleArn"),
        ({"RoleArn": role_arn("A"), "Tags": "x"}, "Tags"),
    ],
)
def test_assume_role_config_validates_at_construction(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError, match=param):
        arc.AssumeRoleConfig(**kwargs)


def test_config_and_dict_produce_the_same_request(parent: boto3.Session, sent_assume_role_requests: SentRequests) -> None:
    fields = {
        "RoleArn": role_arn("A"), "RoleSessionName": "same", "DurationSeconds": 1800, "ExternalId": "ext-7",
        "Tags": {"team": "blue"}, "Policy": {"Version": "2012-10-17", "Statement": []},
        "PolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"], "SourceIdentity": "dave",
    }
    arc.whoami(arc.assume_role(parent, arc.AssumeRoleConfig(**fields)))
    arc.whoami(arc.assume_role(parent, dict(fields)))
    arc.whoami(arc.assume_role(parent, fields.pop("RoleArn"), **fields))
    first, second, third = sent_assume_role_requests
    assert first == second == third


def test_keyword_arguments_override_the_config(parent: boto3.Session, sent_assume_role_requests: SentRequests) -> None:
    config = arc.AssumeRoleConfig(RoleArn=role_arn("A"), RoleSessionName="from-config", DurationSeconds=1800)
    arc.whoami(arc.assume_role(parent, config, RoleSessionName="from-keyword"))
    assert sent_assume_role_requests[0]["RoleSessionName"] == ["from-keyword"]
    assert sent_assume_role_requests[0]["DurationSeconds"] == ["1800"]


def test_configs_in_chains_and_patched_methods(parent: boto3.Session) -> None:
    chain = arc.assume_role_chain(parent, [arc.AssumeRoleConfig(RoleArn=role_arn("A")), arc.AssumeRoleConfig(RoleArn=role_arn("B"), RoleSessionName="cfg")])
    assert arc.whoami(chain)["Arn"].endswith(":assumed-role/B/cfg")
    arc.patch_boto3()
    patched = parent.assume_role(arc.AssumeRoleConfig(RoleArn=role_arn("C"), RoleSessionName="patched-cfg"))  # type: ignore[attr-defined]
    assert arc.whoami(patched)["Arn"].endswith(":assumed-role/C/patched-cfg")


def test_sts_client_config() -> None:
    config = arc.STSClientConfig(region_name="eu-west-1", endpoint_url="https://sts.eu-west-1.amazonaws.com")
    assert config.region_name == "eu-west-1" and config.verify is None
    for bad, param in (
        ({"service_name": "s3"}, "service_name"),
        ({"aws_secret_access_key": "x"}, "aws_secret_access_key"),
        ({"endpoint_url": "ftp://x"}, "endpoint_url"),
        ({"config": {"retries": 3}}, "config"),
        ({"region": "eu-west-1"}, "region"),
    ):
        with pytest.raises(botocore.exceptions.ParamValidationError, match=param):
            arc.STSClientConfig(bad)


# -- STS client options -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def second_moto() -> Iterator[str]:
    """A second, separate moto server (its own process and state)."""
    port = free_port()
    process = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)


def identity_at(endpoint: str, credentials: dict[str, Any]) -> str:
    client = boto3.client("sts", endpoint_url=endpoint, aws_access_key_id=credentials["access_key"],
                          aws_secret_access_key=credentials["secret_key"], aws_session_token=credentials["token"])
    return str(client.get_caller_identity()["Arn"])


@pytest.mark.parametrize("as_config", [False, True])
def test_sts_endpoint_url_is_where_assume_role_goes(parent: boto3.Session, second_moto: str, sts_calls: Callable[[], int], aws_env: str, as_config: bool) -> None:
    options: dict[str, Any] = {"endpoint_url": second_moto, "config": botocore.config.Config(retries={"total_max_attempts": 2})}
    session = arc.assume_role(parent, role_arn("A"), RoleSessionName="vpce", sts_client_kwargs=arc.STSClientConfig(options) if as_config else options)
    current = arc.get_credentials(session)
    assert sts_calls() == 0, "the first server saw no AssumeRole"
    assert identity_at(second_moto, current).endswith(":assumed-role/A/vpce"), "the second server issued them"


def test_sts_client_follows_the_parents_region_by_default(parent: boto3.Session, sent_assume_role_requests: SentRequests, monkeypatch: pytest.MonkeyPatch) -> None:
    scopes: list[str] = []

    def record(request: Any, **_: Any) -> None:
        authorization = request.headers["Authorization"]
        scopes.append((authorization.decode() if isinstance(authorization, bytes) else authorization).split("/")[2])

    parent._session.register("before-send.sts.AssumeRole", record)
    parent._session.set_config_variable("region", "ap-southeast-2")
    arc.whoami(arc.assume_role(parent, role_arn("A")))
    assert scopes == ["ap-southeast-2"], "signed for the parent's region"


def test_cli_sts_client_kwargs_and_whoami(aws_env: str, second_moto: str, capsys: pytest.CaptureFixture[str], sts_calls: Callable[[], int]) -> None:
    assert arc.main([role_arn("A"), "--RoleSessionName", "cli-who", "--whoami"]) == 0
    assert json.loads(capsys.readouterr().out)["Arn"].endswith(":assumed-role/A/cli-who")
    assert arc.main([role_arn("B"), "--sts-client-kwargs", json.dumps({"endpoint_url": second_moto}), "--json"]) == 0
    assert sts_calls() == 1
    assert arc.main([role_arn("B"), "--sts-client-kwargs", '{"aws_access_key_id": "x"}']) == arc.EXIT_BAD_ARGUMENTS
    assert "aws_access_key_id" in capsys.readouterr().err


# -- refresh tuning -------------------------------------------------------------------------


def refresh_moment(parent: boto3.Session, clock: time_machine.Traveller, sts_calls: Callable[[], int], **kwargs: Any) -> int:
    """The first half-minute mark at which the session refreshes its 3600 s credentials."""
    s3 = arc.assume_role(parent, role_arn("A"), DurationSeconds=3600, eager=False, **kwargs).client("s3")
    s3.list_buckets()
    before = sts_calls()
    for second in range(30, 3600, 60):
        clock.move_to(at(second))
        s3.list_buckets()
        if sts_calls() > before:
            return second
    raise AssertionError("never refreshed")


def test_windows_set_by_hand_change_when_refresh_happens(parent: boto3.Session, clock: time_machine.Traveller, sts_calls: Callable[[], int]) -> None:
    assert refresh_moment(parent, clock, sts_calls) == 2730  # default: 15 min before expiry
    clock.move_to(START)
    assert refresh_moment(parent, clock, sts_calls, advisory_timeout=300, mandatory_timeout=120) == 3330
    clock.move_to(START)
    assert refresh_moment(parent, clock, sts_calls, advisory_timeout=1800) == 1830


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"advisory_timeout": -1}, "advisory_timeout"),
        ({"mandatory_timeout": "60"}, "mandatory_timeout"),
        ({"advisory_timeout": 60, "mandatory_timeout": 120}, "mandatory_timeout"),
        ({"advisory_timeout": 4000, "DurationSeconds": 3600}, "advisory_timeout"),
        ({"defer_refresh": True, "eager": True}, "defer_refresh"),
    ],
)
def test_nonsensical_windows_are_rejected(parent: boto3.Session, kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError, match=param):
        arc.assume_role(parent, role_arn("A"), **kwargs)


def test_windows_longer_than_the_lifetime_are_warned_about(aws_env: str) -> None:
    def fetch() -> dict[str, Any]:
        return {"AccessKeyId": "AKIA", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=900)}

    credentials = arc.refreshable_session(fetch, advisory_timeout=1200).get_credentials()
    assert credentials is not None
    with pytest.warns(arc.RefreshWindowWarning, match="not shorter than the credentials' lifetime"):
        credentials.get_frozen_credentials()


# -- eager, proactive refresh -------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("option", [{"eager": True}, {"defer_refresh": False}])
def test_eager_sessions_refresh_in_the_background(parent: boto3.Session, clock: time_machine.Traveller, sts_calls: Callable[[], int], option: dict[str, Any]) -> None:
    session = arc.assume_role(parent, role_arn("A"), DurationSeconds=900, **option)
    assert sts_calls() == 1, "fetched at construction"
    first = arc.get_credentials(session)["access_key"]
    refreshed_by: list[str] = []

    def listener(event: arc.RefreshEvent) -> None:
        refreshed_by.append(threading.current_thread().name)

    arc.add_refresh_listener(listener)
    try:
        clock.move_to(at(680))  # advisory window; nobody makes a call
        assert wait_for(lambda: bool(refreshed_by)), "the background thread refreshed"
    finally:
        arc.remove_refresh_listener(listener)
    assert refreshed_by == ["assume-role-chain-refresh"] and sts_calls() == 2
    assert arc.get_credentials(session)["access_key"] != first
    clock.move_to(at(700))
    time.sleep(1.2)  # a poll interval: no refresh while the new credentials are fresh
    assert sts_calls() == 2


def test_eager_sessions_are_released_when_dropped(parent: boto3.Session) -> None:
    import gc
    import weakref

    session = arc.assume_role(parent, role_arn("A"), eager=True)
    credentials = weakref.ref(session.get_credentials())  # type: ignore[arg-type]
    del session
    time.sleep(1.2)  # let the background thread run a poll with the session registered
    gc.collect()
    assert credentials() is None


def test_eager_construction_fails_fast(parent: boto3.Session) -> None:
    def refuse(**_: object) -> None:
        raise botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "AssumeRole")

    parent._session.register("before-call.sts.AssumeRole", refuse)
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        arc.assume_role(parent, role_arn("A"), defer_refresh=False)


def test_defer_refresh_true_is_lazy(parent: boto3.Session, sts_calls: Callable[[], int]) -> None:
    arc.assume_role(parent, role_arn("A"), defer_refresh=True)
    assert sts_calls() == 0


# -- credential inspection ------------------------------------------------------------------------


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


def test_background_thread_survives_a_fork(parent: boto3.Session) -> None:
    import os

    session = arc.assume_role(parent, role_arn("A"), eager=True)
    assert any(t.name == "assume-role-chain-refresh" for t in threading.enumerate())
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            arc.whoami(session)
            code = 0 if any(t.name == "assume-role-chain-refresh" for t in threading.enumerate()) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
