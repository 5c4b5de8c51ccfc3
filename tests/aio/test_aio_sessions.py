"""The asyncio API: parents and what they return, chains, validation (the sync errors),
caches shared with synchronous sessions, events and log lines, patch_aioboto3.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aioboto3
import aiobotocore.credentials
import aiobotocore.session
import boto3
import botocore.exceptions
import pytest

import assume_role_chain as arc
import assume_role_chain_aio as aio
from tests.aio.conftest import ROLE, ROLE_2
from tests.conftest import Clock
from tests.faults import at


def role_name(arn: str) -> str:
    return arn.split("/")[-1]


def assumed_role(identity: dict[str, Any]) -> str:
    return str(identity["Arn"].split("/")[1])


# -- parents and what they return ---------------------------------------------------


def test_an_aioboto3_parent_gives_an_aioboto3_session_whose_clients_sign_with_our_credentials(
    aio_parent: aioboto3.Session, sts_calls: Callable[[], int]
) -> None:
    session = aio.assume_role(aio_parent, ROLE)
    assert isinstance(session, aioboto3.Session)
    assert sts_calls() == 0, "construction does no I/O"

    async def scenario() -> None:
        async with session.client("sts") as sts:
            identity = await sts.get_caller_identity()
        assert assumed_role(identity) == role_name(ROLE)
        credentials = await session.get_credentials()
        assert isinstance(credentials, aiobotocore.credentials.AioDeferredRefreshableCredentials)
        assert (await aio.whoami(session))["Arn"] == identity["Arn"]

    asyncio.run(scenario())
    assert session.assume_role_parent_session is aio_parent  # type: ignore[attr-defined]
    assert sts_calls() == 1


def test_an_aiobotocore_parent_gives_an_aiobotocore_session(aws_env: str) -> None:
    parent = aiobotocore.session.get_session()
    session = aio.assume_role(parent, ROLE)
    assert isinstance(session, aiobotocore.session.AioSession)
    assert assumed_role(asyncio.run(aio.whoami(session))) == role_name(ROLE)


def test_a_sync_boto3_parent_is_read_in_a_worker_thread_and_gives_an_aioboto3_session(
    parent: boto3.Session,
) -> None:
    session = aio.assume_role(parent, ROLE)
    assert isinstance(session, aioboto3.Session)
    assert assumed_role(asyncio.run(aio.whoami(session))) == role_name(ROLE)


@pytest.mark.parametrize("not_a_session", [None, "default", object(), aiobotocore.session.AioSession])
def test_any_other_parent_is_a_param_validation_error(aws_env: str, not_a_session: Any) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError, match=r"Invalid session: must be an aioboto3\.Session"):
        aio.assume_role(not_a_session, ROLE)


def test_get_credentials_returns_one_generation_with_its_expiry(aio_parent: aioboto3.Session, clock: Clock) -> None:
    session = aio.assume_role(aio_parent, ROLE, DurationSeconds=900)
    credentials = asyncio.run(aio.get_credentials(session))
    assert credentials["expiry_time"] == arc._iso(at(900))
    assert credentials["access_key"] and credentials["secret_key"] and credentials["token"]
    plain = asyncio.run(aio.get_credentials(aio_parent))  # a session that is not ours
    assert plain["access_key"] == "AKIAPARENTEXAMPLE000" and plain["expiry_time"] is None


def test_patch_aioboto3_adds_the_methods_idempotently(aio_parent: aioboto3.Session) -> None:
    aio.patch_aioboto3()
    aio.patch_aioboto3()
    one = aio_parent.assume_role(ROLE)  # type: ignore[attr-defined]
    chained = aio_parent.assume_role_chain([ROLE, ROLE_2])  # type: ignore[attr-defined]
    assert assumed_role(asyncio.run(aio.whoami(one))) == role_name(ROLE)
    assert assumed_role(asyncio.run(aio.whoami(chained))) == role_name(ROLE_2)


# -- chains ------------------------------------------------------------------------


def test_each_hop_of_a_chain_refreshes_from_its_parent_and_the_1_hour_clamp_applies(
    aio_parent: aioboto3.Session, clock: Clock, sts_calls: Callable[[], int]
) -> None:
    with pytest.warns(arc.DurationClampedWarning, match="lowered to 3600"):
        session = aio.assume_role_chain(aio_parent, [ROLE, {"RoleArn": ROLE_2, "DurationSeconds": 7200}])
    first = asyncio.run(aio.get_credentials(session))
    assert sts_calls() == 2
    assert first["expiry_time"] == arc._iso(at(3600)), "the chained hop lasts one hour"
    assert assumed_role(asyncio.run(aio.whoami(session))) == role_name(ROLE_2)
    clock.move_to(at(3500))  # both hops are in their mandatory windows
    second = asyncio.run(aio.get_credentials(session))
    assert second["access_key"] != first["access_key"]
    assert sts_calls() == 4


def test_a_chain_from_a_sync_parent_is_clamped_at_the_first_fetch(
    aws_env: str, monkeypatch: pytest.MonkeyPatch, sts_calls: Callable[[], int]
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-temporary-parent-token-value")
    session = aio.assume_role(boto3.Session(), ROLE, DurationSeconds=7200)
    with pytest.warns(arc.DurationClampedWarning, match="lowered to 3600"):
        expiry = asyncio.run(aio.get_credentials(session))["expiry_time"]
    assert expiry is not None
    lifetime = dt.datetime.fromisoformat(expiry.replace("Z", "+00:00")) - dt.datetime.now(dt.timezone.utc)
    assert lifetime <= dt.timedelta(seconds=3600)


# -- validation: the synchronous functions' errors ------------------------------------

BAD_ARGUMENTS: list[tuple[Any, dict[str, Any]]] = [
    ("not-an-arn", {}),
    (ROLE, {"DurationSeconds": 10}),
    (ROLE, {"RoleSessionName": "has spaces", "ExternalId": ""}),
    (ROLE, {"Policy": {"Statement": set()}}),
    (ROLE, {"Tags": {"": "x"}}),
    (ROLE, {"TokenCode": "123456"}),
    (ROLE, {"advisory_timeout": -1}),
    (ROLE, {"mandatory_timeout": 100, "advisory_timeout": 50}),
    (ROLE, {"region_name": "nowhere-1"}),
    (ROLE, {"cache": 42}),
    (ROLE, {"sts_client_kwargs": {"endpoint": "x"}}),
    (ROLE, {"eager": True, "defer_refresh": True}),
    ({"RoleArn": ROLE, "DurationSeconds": "1h"}, {}),
]


def error_of(call: Callable[[], Any]) -> str:
    with pytest.raises(botocore.exceptions.ParamValidationError) as raised:
        call()
    return str(raised.value)


@pytest.mark.parametrize(("role", "kwargs"), BAD_ARGUMENTS)
def test_assume_role_raises_the_sync_functions_errors(
    parent: boto3.Session, aio_parent: aioboto3.Session, role: Any, kwargs: dict[str, Any]
) -> None:
    assert error_of(lambda: aio.assume_role(aio_parent, role, **kwargs)) == error_of(
        lambda: arc.assume_role(parent, role, **kwargs)
    )


def test_a_missing_region_for_an_sts_endpoint_is_the_sync_error_for_every_parent(
    aws_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    expected = error_of(lambda: arc.assume_role(boto3.Session(), ROLE))
    assert "cannot be reached without a region" in expected
    for parent in (aioboto3.Session(), aiobotocore.session.get_session(), boto3.Session()):
        assert error_of(lambda parent=parent: aio.assume_role(parent, ROLE)) == expected


def test_unknown_arguments_are_type_errors_as_in_sync(aio_parent: aioboto3.Session) -> None:
    with pytest.raises(TypeError, match="Nonsense"):
        aio.assume_role(aio_parent, ROLE, Nonsense=1)


@pytest.mark.parametrize(
    ("roles", "common"),
    [([], {}), ("arn", {}), ([ROLE, 42], {}), ([{"RoleArn": ROLE, "Bogus": 1}], {}), ([ROLE, ROLE_2], {"DurationSeconds": 1})],
)
def test_assume_role_chain_raises_the_sync_functions_errors(
    parent: boto3.Session, aio_parent: aioboto3.Session, roles: Any, common: dict[str, Any]
) -> None:
    assert error_of(lambda: aio.assume_role_chain(aio_parent, roles, **common)) == error_of(
        lambda: arc.assume_role_chain(parent, roles, **common)
    )


@pytest.mark.parametrize(
    ("fetch", "kwargs"),
    [("not callable", {}), (dict, {"cache": {}}), (dict, {"region_name": True}), (dict, {"clock": 5})],
)
def test_refreshable_session_raises_the_sync_functions_errors(fetch: Any, kwargs: dict[str, Any]) -> None:
    assert error_of(lambda: aio.refreshable_session(fetch, **kwargs)) == error_of(
        lambda: arc.refreshable_session(fetch, **kwargs)
    )


# -- caches shared with synchronous sessions ------------------------------------------


def test_sync_and_async_sessions_sharing_a_cache_folder_make_one_assume_role(
    parent: boto3.Session, aio_parent: aioboto3.Session, tmp_path: Path, sts_calls: Callable[[], int], clock: Clock
) -> None:
    folder = tmp_path / "cache"
    sync_session = arc.assume_role(parent, ROLE, cache=arc.JSONFileCache(folder))
    async_session = aio.assume_role(aio_parent, ROLE, cache=arc.JSONFileCache(folder))
    written = arc.get_credentials(sync_session)
    read = asyncio.run(aio.get_credentials(async_session))
    assert read == written and sts_calls() == 1

    clock.move_to(at(3200))  # mandatory window: the other way round, async fetches and sync reads
    other_sync = arc.assume_role(parent, ROLE, cache=arc.JSONFileCache(folder))
    fetched = asyncio.run(aio.get_credentials(async_session))
    assert arc.get_credentials(other_sync) == fetched and sts_calls() == 2


def test_a_failing_store_costs_no_credentials(aio_parent: aioboto3.Session, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(dict[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise OSError("store down")

        def __setitem__(self, key: str, value: Any) -> None:
            raise OSError("store down")

    session = aio.assume_role(aio_parent, ROLE, cache=Broken())
    with caplog.at_level(logging.WARNING, logger="assume_role_chain"):
        assert assumed_role(asyncio.run(aio.whoami(session))) == role_name(ROLE)
    assert "credential cache Broken failed to read (OSError); going on without it" in caplog.text


# -- events and log lines ------------------------------------------------------------


def test_refresh_events_and_log_lines_are_the_sync_ones_without_secrets(
    aio_parent: aioboto3.Session, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[arc.RefreshEvent] = []
    arc.add_refresh_listener(events.append)
    try:
        cache = arc.JSONFileCache(tmp_path / "cache")
        with caplog.at_level(logging.DEBUG, logger="assume_role_chain"):
            fetched = asyncio.run(aio.get_credentials(aio.assume_role(aio_parent, ROLE, cache=cache)))
            asyncio.run(aio.get_credentials(aio.assume_role(aio_parent, ROLE, cache=cache)))
    finally:
        arc.remove_refresh_listener(events.append)
    assert [(e.source, e.outcome) for e in events] == [(ROLE, "fetched"), (ROLE, "cache-hit")]
    messages = [r.getMessage() for r in caplog.records if r.name == "assume_role_chain"]
    assert f"refreshing credentials for {ROLE}" in messages
    assert any(m.startswith(f"credentials for {ROLE} fetched in ") for m in messages)
    assert any(m.startswith(f"credentials for {ROLE} cache-hit in ") for m in messages)
    assert fetched["secret_key"] not in caplog.text and str(fetched["token"]) not in caplog.text


def test_a_failed_first_fetch_raises_and_is_an_event(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    events: list[arc.RefreshEvent] = []
    arc.add_refresh_listener(events.append)
    try:
        session = aio.assume_role(aioboto3.Session(), ROLE)
        with pytest.raises(botocore.exceptions.NoCredentialsError):
            asyncio.run(aio.get_credentials(session))
        with pytest.raises(botocore.exceptions.NoCredentialsError):  # backing off: the same error, no call
            asyncio.run(aio.get_credentials(session))
    finally:
        arc.remove_refresh_listener(events.append)
    assert [e.outcome for e in events] == ["failed"]


def test_refreshable_session_takes_a_coroutine_function(clock: Clock) -> None:
    calls: list[int] = []

    async def fetch() -> dict[str, Any]:
        calls.append(1)
        await asyncio.sleep(0)
        return {"access_key": "ASIACOROUTINE0000001", "secret_key": "coroutine-secret-not-printed",
                "token": "coroutine-token-not-printed", "expiry_time": at(900).isoformat()}

    session = aio.refreshable_session(fetch, region_name="eu-west-1")
    assert isinstance(session, aioboto3.Session) and session.region_name == "eu-west-1"
    assert asyncio.run(aio.get_credentials(session))["access_key"] == "ASIACOROUTINE0000001"
    assert asyncio.run(aio.get_credentials(session))["access_key"] == "ASIACOROUTINE0000001"
    assert len(calls) == 1


def test_eager_starts_the_first_fetch_in_the_background(aio_parent: aioboto3.Session, sts_calls: Callable[[], int]) -> None:
    async def scenario() -> None:
        session = aio.assume_role(aio_parent, ROLE, eager=True)
        for _ in range(1000):
            if sts_calls():
                break
            await asyncio.sleep(0.01)
        assert sts_calls() == 1
        await aio.get_credentials(session)
        assert sts_calls() == 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(scenario())


# -- pytest-asyncio's loop per test: one session, two tests, two loops ---------------

_shared: dict[str, Any] = {}


@pytest.mark.asyncio
async def test_loop_per_test_first(aio_parent: aioboto3.Session, clock: Clock) -> None:
    _shared["session"] = aio.assume_role(aio_parent, ROLE, DurationSeconds=900)
    _shared["keys"] = (await aio.get_credentials(_shared["session"]))["access_key"]


@pytest.mark.asyncio
async def test_loop_per_test_second_uses_the_same_session_on_a_new_loop(aio_parent: aioboto3.Session, clock: Clock) -> None:
    if "session" not in _shared:
        pytest.fail("run with test_loop_per_test_first")
    clock.move_to(at(800))  # the clock starts again at START: the mandatory window of the first test's keys
    assert (await aio.get_credentials(_shared["session"]))["access_key"] != _shared["keys"]


# -- the README's example ------------------------------------------------------------


def test_the_readme_asyncio_example_runs(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## asyncio\n", 1)[1].split("\n## ", 1)[0]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("HOME", str(tmp_path))  # JSONFileCache()'s default folder
    done = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    arn, expiry = done.stdout.split()
    assert arn.startswith("arn:aws:sts::222222222222:assumed-role/reader/nightly-report")
    assert expiry.endswith("Z")


def test_an_unknown_keyword_is_a_type_error_naming_it(aio_parent: aioboto3.Session) -> None:
    with pytest.raises(TypeError, match="'regoin_name'"):
        aio.refreshable_session(dict, regoin_name="eu-west-1")
    with pytest.raises(TypeError, match="'regoin_name'"):
        aio.assume_role(aio_parent, ROLE, regoin_name="eu-west-1")
