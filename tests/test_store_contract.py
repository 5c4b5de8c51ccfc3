"""The store contract: what every credential store must do for the cached source.

Each store kind is a factory of two handles on one backing store (two
processes, or two hosts, looking at the same data). A new store (Redis,
DynamoDB) joins by adding a factory to ``STORES``; every test here must pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

import assume_role_chain as arc
from tests.conftest import role_arn

ENTRY = {
    "AccessKeyId": "ASIACONTRACTTEST0001",
    "SecretAccessKey": "contract-secret",
    "SessionToken": "contract-token",
    "Expiration": "2099-01-01T00:00:00Z",
    "Issued": "2098-12-31T23:00:00Z",
}

Pair = tuple[Any, Any]  # two handles on one backing store


def file_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Pair:
    return arc.JSONFileCache(tmp_path / "cache", lock_timeout=0.3), arc.JSONFileCache(tmp_path / "cache", lock_timeout=0.3)


def dict_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Pair:
    shared: dict[str, Any] = {}
    return arc._as_store(shared), arc._as_store(shared)


# A fleet store's lock_timeout is both how long a waiter waits and the lease of a
# holder (a dead holder blocks the others at most that long): the first handle
# holds with a long lease, the second waits briefly.


def redis_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Pair:
    url = request.getfixturevalue("redis_url")
    return arc.RedisCache.from_url(url, lock_timeout=30), arc.RedisCache.from_url(url, lock_timeout=0.3)


def sealed_redis_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Pair:
    url, key = request.getfixturevalue("redis_url"), bytes(range(32))
    return (arc.RedisCache.from_url(url, encryption_key=key, lock_timeout=30),
            arc.RedisCache.from_url(url, encryption_key=key, lock_timeout=0.3))


def dynamodb_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Pair:
    request.getfixturevalue("aws_env")
    arc.DynamoDBCache.create_table("contract")
    return arc.DynamoDBCache("contract", lock_timeout=30), arc.DynamoDBCache("contract", lock_timeout=0.3)


STORES: dict[str, Callable[[pytest.FixtureRequest, Path], Pair]] = {
    "json-file": file_stores, "dict": dict_stores,
    "redis": redis_stores, "redis-sealed": sealed_redis_stores, "dynamodb": dynamodb_stores,
}


@pytest.fixture(params=list(STORES))
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Pair:
    first, second = STORES[request.param](request, tmp_path)
    return arc._as_store(first), arc._as_store(second)


def test_a_missing_key_reads_as_none(stores: Pair) -> None:
    first, _ = stores
    assert first.read("never-written") is None


def test_an_entry_written_by_one_handle_is_read_by_the_other(stores: Pair) -> None:
    first, second = stores
    first.write("k", dict(ENTRY))
    read = second.read("k")
    assert read is not None
    assert {name: read[name] for name in ENTRY} == ENTRY


def test_a_write_replaces_the_entry_and_keys_do_not_mix(stores: Pair) -> None:
    first, second = stores
    first.write("k", dict(ENTRY))
    first.write("other", {**ENTRY, "AccessKeyId": "ASIAOTHERKEY00000001"})
    second.write("k", {**ENTRY, "AccessKeyId": "ASIAREPLACED00000001"})
    assert first.read("k")["AccessKeyId"] == "ASIAREPLACED00000001"
    assert first.read("other")["AccessKeyId"] == "ASIAOTHERKEY00000001"


def test_the_lock_yields_a_bool_and_a_held_lock_excludes_other_holders(stores: Pair) -> None:
    first, second = stores
    with first.lock("k") as held:
        assert isinstance(held, bool)
        if not held:
            return  # a store without locks (the dict adapter) promises nothing more
        outcome: list[bool] = []
        waiter = threading.Thread(target=lambda: outcome.append(_try_lock(second, "k")))
        waiter.start()
        waiter.join(10)
        assert outcome == [False], "a second holder got a lock that was held"
    assert _try_lock(second, "k") is True, "the lock was not released"


def test_locks_of_different_keys_do_not_exclude_each_other(stores: Pair) -> None:
    first, second = stores
    with first.lock("k") as held:
        if held:
            assert _try_lock(second, "another-key") is True


def _try_lock(store: Any, key: str) -> bool:
    with store.lock(key) as held:
        return bool(held)


@pytest.fixture(params=list(STORES))
def cache_pair(request: pytest.FixtureRequest, tmp_path: Path) -> Pair:
    first, second = STORES[request.param](request, tmp_path)
    unwrap: Callable[[Any], Any] = lambda store: getattr(store, "mapping", store)  # noqa: E731
    return unwrap(first), unwrap(second)


def test_sessions_on_two_handles_share_one_fetch(parent: boto3.Session, sts_calls: Callable[[], int], cache_pair: Pair) -> None:
    first, second = cache_pair
    one = arc.assume_role(parent, role_arn("Contract"), cache=first)
    two = arc.assume_role(parent, role_arn("Contract"), cache=second)
    keys = [session.get_credentials().get_frozen_credentials().access_key for session in (one, two)]  # type: ignore[union-attr]
    assert keys[0] == keys[1]
    assert sts_calls() == 1

