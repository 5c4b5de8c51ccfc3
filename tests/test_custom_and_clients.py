"""refreshable_session with custom functions, and cached clients."""

from __future__ import annotations

import datetime as dt
import gc
import threading
import weakref
from collections.abc import Callable
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
import time_machine

import assume_role_chain as arc
from tests.conftest import role_arn
from tests.faults import at


def moto_credentials(parent: boto3.Session, duration: int = 900) -> dict[str, Any]:
    """Real temporary credentials from moto, in the STS shape."""
    return dict(parent.client("sts").assume_role(RoleArn=role_arn("Custom"), RoleSessionName="custom", DurationSeconds=duration)["Credentials"])


SHAPES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "sts-aware-datetime": lambda c: c,
    "sts-naive-datetime": lambda c: {**c, "Expiration": c["Expiration"].astimezone(dt.timezone.utc).replace(tzinfo=None)},
    "sts-iso-string": lambda c: {**c, "Expiration": c["Expiration"].isoformat()},
    "sts-iso-no-offset": lambda c: {**c, "Expiration": c["Expiration"].astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")},
    "sts-epoch": lambda c: {**c, "Expiration": c["Expiration"].timestamp()},
    "botocore-shape": lambda c: {"access_key": c["AccessKeyId"], "secret_key": c["SecretAccessKey"], "token": c["SessionToken"], "expiry_time": c["Expiration"].isoformat()},
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_custom_function_shapes_work_end_to_end(parent: boto3.Session, shape: str) -> None:
    calls = []

    def fetch() -> dict[str, Any]:
        calls.append(1)
        return SHAPES[shape](moto_credentials(parent))

    session = arc.refreshable_session(fetch, region_name="eu-west-1")
    assert type(session) is boto3.Session and session.region_name == "eu-west-1"
    assert arc.whoami(session)["Arn"].endswith(":assumed-role/Custom/custom")
    arc.whoami(session)
    assert calls == [1]


@pytest.mark.parametrize(
    ("result", "field"),
    [
        ({"SecretAccessKey": "s", "SessionToken": "t", "Expiration": "2099-01-01T00:00:00Z"}, "AccessKeyId"),
        ({"AccessKeyId": "A", "SessionToken": "t", "Expiration": "2099-01-01T00:00:00Z"}, "SecretAccessKey"),
        ({"AccessKeyId": "A", "SecretAccessKey": "s", "Expiration": "2099-01-01T00:00:00Z"}, "SessionToken"),
        ({"AccessKeyId": "A", "SecretAccessKey": "s", "SessionToken": "t"}, "Expiration"),
        ({"access_key": "A", "secret_key": "s", "token": "t"}, "expiry_time"),
        ({"AccessKeyId": "A", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": "next tuesday"}, "Expiration"),
        ({"AccessKeyId": "A", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": [2099]}, "Expiration"),
        ({"AccessKeyId": "A", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": "2020-01-01T00:00:00Z"}, "Expiration"),
        ({"AccessKeyId": 5, "SecretAccessKey": "s", "SessionToken": "t", "Expiration": "2099-01-01T00:00:00Z"}, "AccessKeyId"),
        ("not a mapping", "mapping"),
    ],
)
def test_bad_results_name_the_field(aws_env: str, result: Any, field: str) -> None:
    session = arc.refreshable_session(lambda: result)
    credentials = session.get_credentials()
    assert credentials is not None
    with pytest.raises(arc.InvalidCredentialsError, match=field) as raised:
        credentials.get_frozen_credentials()
    assert "secret" not in str(raised.value).lower().replace("secretaccesskey", "")


def test_custom_source_one_fetch_per_lifetime_and_single_flight(aws_env: str, clock: time_machine.Traveller) -> None:
    fetches: list[dt.datetime] = []
    gate = threading.Event()

    def fetch() -> dict[str, Any]:
        now = dt.datetime.now(dt.timezone.utc)
        fetches.append(now)
        if len(fetches) > 1:
            gate.wait(10)
        return {"AccessKeyId": f"AKIA{len(fetches)}", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": now + dt.timedelta(seconds=900)}

    credentials = arc.refreshable_session(fetch, source_name="broker").get_credentials()
    assert credentials is not None
    for step in range(200):
        clock.move_to(at(step * 3.3))
        credentials.get_frozen_credentials()
    assert len(fetches) == 1
    clock.move_to(at(800))  # mandatory window: 32 threads wait for one fetch
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(credentials.get_frozen_credentials().access_key)) for _ in range(32)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(20)
    assert results == ["AKIA2"] * 32 and len(fetches) == 2


def test_custom_source_with_a_file_cache(aws_env: str, tmp_path: Any) -> None:
    calls = []

    def fetch() -> dict[str, Any]:
        calls.append(1)
        return {"AccessKeyId": "AKIA", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)}

    for _ in range(3):
        arc.refreshable_session(fetch, cache=arc.JSONFileCache(tmp_path), cache_key="broker-1", eager=True)
    assert calls == [1]


# -- cached clients ---------------------------------------------------------------------


def test_one_client_per_key_under_32_threads(parent: boto3.Session, monkeypatch: pytest.MonkeyPatch) -> None:
    created = []
    real_client = boto3.Session.client

    def counting_client(self: boto3.Session, *args: Any, **kwargs: Any) -> Any:
        created.append(args)
        return real_client(self, *args, **kwargs)

    monkeypatch.setattr(boto3.Session, "client", counting_client)
    barrier = threading.Barrier(32)
    clients: list[Any] = []

    def work() -> None:
        barrier.wait()
        clients.append(arc.cached_client(parent, "s3", region_name="eu-west-1"))

    threads = [threading.Thread(target=work) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(clients) == 32 and len({id(c) for c in clients}) == 1 and len(created) == 1


def test_keyed_on_every_argument_including_config(parent: boto3.Session) -> None:
    base = arc.cached_client(parent, "s3")
    assert arc.cached_client(parent, "s3") is base
    assert arc.cached_client(parent, "s3", region_name="eu-west-1") is not base
    slow = arc.cached_client(parent, "s3", config=botocore.config.Config(retries={"max_attempts": 9}))
    assert arc.cached_client(parent, "s3", config=botocore.config.Config(retries={"max_attempts": 9})) is slow
    assert arc.cached_client(parent, "s3", config=botocore.config.Config(retries={"max_attempts": 2})) is not slow
    assert arc.cached_client(parent, "sqs") is not base


def test_cached_client_uses_the_credentials_of_its_own_session(parent: boto3.Session) -> None:
    child = arc.assume_role(parent, role_arn("A"), RoleSessionName="child")
    assert arc.cached_client(child, "sts").get_caller_identity()["Arn"].endswith(":assumed-role/A/child")
    assert arc.cached_client(parent, "sts").get_caller_identity()["Arn"].endswith(":user/moto")
    assert arc.cached_client(child, "sts") is not arc.cached_client(parent, "sts")
    # and the session's own sts client is never the internal one that calls AssumeRole
    assert child.client("sts").get_caller_identity()["Arn"].endswith(":assumed-role/A/child")


def test_lru_and_lfu_eviction_order(parent: boto3.Session) -> None:
    for region in ("r1", "r2", "r3"):
        arc.cached_client(parent, "s3", max_size=3, region_name=f"eu-west-{region[1]}")
    lru = arc.client_cache(parent, "client", "LRU")
    arc.cached_client(parent, "s3", max_size=3, region_name="eu-west-1")  # r1 is now the most recent
    arc.cached_client(parent, "s3", max_size=3, region_name="eu-west-4")  # evicts r2
    assert [dict(key[1])["region_name"] for key in lru] == ["eu-west-3", "eu-west-1", "eu-west-4"]

    for region, uses in (("1", 3), ("2", 1), ("3", 2)):
        for _ in range(uses):
            arc.cached_client(parent, "sqs", eviction_policy="LFU", max_size=3, region_name=f"us-west-{region}")
    lfu = arc.client_cache(parent, "client", "LFU")
    arc.cached_client(parent, "sqs", eviction_policy="LFU", max_size=3, region_name="us-east-2")  # evicts the least used: 2
    assert sorted(dict(key[1])["region_name"] for key in lfu) == ["us-east-2", "us-west-1", "us-west-3"]
    lfu.clear()
    assert len(lfu) == 0


def test_unbounded_cache(parent: boto3.Session) -> None:
    for index in range(15):
        arc.cached_client(parent, "s3", max_size=None, endpoint_url=f"http://127.0.0.1:{9000 + index}")
    assert len(arc.client_cache(parent)) == 15


def test_cached_resource(parent: boto3.Session) -> None:
    resource = arc.cached_resource(parent, "s3")
    assert arc.cached_resource(parent, "s3") is resource
    assert list(resource.buckets.all()) == []


def test_clients_are_released_with_their_session(aws_env: str) -> None:
    session = boto3.Session()
    arc.cached_client(session, "s3")
    arc.cached_resource(session, "s3")
    ref = weakref.ref(session)
    del session
    gc.collect()
    assert ref() is None


def test_max_size_is_fixed_when_the_cache_is_made(parent: boto3.Session, connections: list[Any]) -> None:
    first = arc.cached_client(parent, "s3", max_size=50)
    cache = arc.client_cache(parent)
    assert cache.max_size == 50
    with pytest.raises(botocore.exceptions.ParamValidationError, match=r"max_size: 5 differs from 50"):
        arc.cached_client(parent, "s3", max_size=5)
    with pytest.raises(botocore.exceptions.ParamValidationError, match="max_size"):
        arc.cached_client(parent, "sqs", max_size=None)
    assert cache.max_size == 50, "nobody resized it"
    assert arc.cached_client(parent, "s3") is first  # omitted: the cache's size
    assert arc.cached_client(parent, "s3", max_size=50) is first  # the same size again is fine
    with pytest.raises(AttributeError):
        cache.max_size = 5  # type: ignore[misc]
    # Each policy and kind has its own cache, made with its own size; a new one defaults to 10.
    arc.cached_client(parent, "s3", eviction_policy="LFU", max_size=2)
    assert arc.client_cache(parent, "client", "LFU").max_size == 2
    arc.cached_resource(parent, "s3")
    assert arc.client_cache(parent, "resource").max_size == 10
    with pytest.raises(botocore.exceptions.ParamValidationError, match="max_size"):
        arc.cached_resource(parent, "s3", max_size=11)
    assert connections == []


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"eviction_policy": "FIFO"}, "eviction_policy"), ({"max_size": 0}, "max_size"), ({"max_size": "10"}, "max_size")],
)
def test_cache_argument_errors(parent: boto3.Session, kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError, match=param):
        arc.cached_client(parent, "s3", **kwargs)
    with pytest.raises(botocore.exceptions.ParamValidationError, match="session"):
        arc.cached_client("nope", "s3")  # type: ignore[arg-type]


# -- typed configs as keys ------------------------------------------------------------------


def test_equal_configs_hash_equal(aws_env: str) -> None:
    def assume_role_config() -> arc.AssumeRoleConfig:
        return arc.AssumeRoleConfig(
            RoleArn=role_arn("A"), DurationSeconds=900, Policy={"Version": "2012-10-17", "Statement": []},
            Tags=[{"Key": "team", "Value": "blue"}], PolicyArns=["arn:aws:iam::aws:policy/ReadOnlyAccess"],
        )

    a, b = assume_role_config(), assume_role_config()
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert {a: "value"}[b] == "value"
    assert len({a, arc.AssumeRoleConfig(RoleArn=role_arn("A"), DurationSeconds=901)}) == 2
    config = botocore.config.Config(retries={"max_attempts": 3})
    s1 = arc.STSClientConfig(region_name="eu-west-1", endpoint_url="https://sts.eu-west-1.amazonaws.com", config=config)
    s2 = arc.STSClientConfig({"endpoint_url": "https://sts.eu-west-1.amazonaws.com"}, region_name="eu-west-1", config=config)
    assert s1 == s2 and hash(s1) == hash(s2) and len({s1, s2}) == 1
    assert len({s1, arc.STSClientConfig(region_name="eu-west-2")}) == 2
