"""Fleet caches (RedisCache, DynamoDBCache) against a real redis-server and the moto server.

The store contract runs over JSONFileCache too; the fleet tests start real
processes that share nothing but the store.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
import redis
import time_machine

import assume_role_chain as arc
import iot_x509
from tests.conftest import role_arn, user_session
from tests.faults import FaultProxy, fault_proxy
from tests.fleet import FAILING_WORKER, ROOT, RedisServer, Relay, make_store, run_fleet

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
TABLE = "arc-fleet"
STORES = ["json", "redis", "redis-sealed", "dynamodb", "dynamodb-sealed"]
FLEET_STORES = STORES[1:]


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def table(aws_env: str) -> str:
    arc.DynamoDBCache.create_table(TABLE)
    return TABLE


def store_spec(name: str, request: pytest.FixtureRequest, tmp_path: Path, lock_timeout: float = 30.0) -> dict[str, Any]:
    kind, _, sealed = name.partition("-")
    spec: dict[str, Any] = {"kind": kind, "key": KEY.hex() if sealed else None, "lock_timeout": lock_timeout}
    if kind == "json":
        spec["where"] = str(tmp_path / "cache")
    elif kind == "redis":
        spec["where"], spec["prefix"] = request.getfixturevalue("redis_url"), "test:"
    else:
        spec["where"] = request.getfixturevalue("table")
    return spec


@pytest.fixture(params=STORES)
def spec(request: pytest.FixtureRequest, aws_env: str, tmp_path: Path) -> dict[str, Any]:
    return store_spec(request.param, request, tmp_path)


@pytest.fixture(params=FLEET_STORES)
def fleet_spec(request: pytest.FixtureRequest, aws_env: str, tmp_path: Path) -> dict[str, Any]:
    return store_spec(request.param, request, tmp_path)


@pytest.fixture(params=["redis-sealed", "dynamodb-sealed"])
def sealed_spec(request: pytest.FixtureRequest, aws_env: str, tmp_path: Path) -> dict[str, Any]:
    return store_spec(request.param, request, tmp_path)


def entry(hours: float = 1.0, secret: str = "secret-value-of-a-test-entry") -> dict[str, str]:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    return {
        "AccessKeyId": "ASIATESTENTRY0000000",
        "SecretAccessKey": secret,
        "SessionToken": "token-value-of-a-test-entry",
        "Expiration": (now + dt.timedelta(hours=hours)).isoformat().replace("+00:00", "Z"),
        "Issued": now.isoformat().replace("+00:00", "Z"),
    }


# -- raw access to what the stores hold ------------------------------------------------------


def entry_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def raw_get(spec: dict[str, Any], key: str) -> str:
    if spec["kind"] == "redis":
        value = redis.Redis.from_url(spec["where"]).get(f"{spec['prefix']}entry:{entry_id(key)}")
        assert isinstance(value, bytes)
        return value.decode()
    item = boto3.client("dynamodb").get_item(TableName=spec["where"], Key={"pk": {"S": entry_id(key)}})["Item"]
    return str(item["entry"]["S"])


def raw_put(spec: dict[str, Any], key: str, text: str) -> None:
    if spec["kind"] == "redis":
        redis.Redis.from_url(spec["where"]).set(f"{spec['prefix']}entry:{entry_id(key)}", text, ex=3600)
    else:
        item = {"pk": {"S": entry_id(key)}, "entry": {"S": text}, "expires_at": {"N": "4102444800"}}
        boto3.client("dynamodb").put_item(TableName=spec["where"], Item=item)


def raw_values(spec: dict[str, Any]) -> list[str]:
    if spec["kind"] == "redis":
        client = redis.Redis.from_url(spec["where"])
        return [str(client.get(name)) for name in client.keys(f"{spec['prefix']}*")]
    return [json.dumps(item) for item in boto3.client("dynamodb").scan(TableName=spec["where"])["Items"]]


# -- the store contract -----------------------------------------------------------------------


def test_mapping_operations_agree(spec: dict[str, Any]) -> None:
    store = make_store(spec)
    assert "k1" not in store and len(store) == 0 and list(store) == []
    with pytest.raises(KeyError):
        store["k1"]
    first, second = entry(), entry(2.0, secret="another-secret-of-a-test-entry")
    store["k1"], store["k2"] = first, second
    assert store["k1"] == first and store["k2"] == second
    assert "k1" in store and sorted(store) == ["k1", "k2"] and len(store) == 2
    assert make_store(spec)["k1"] == first  # another instance reads it too
    store["k1"] = second  # overwrite
    assert store["k1"] == second
    del store["k1"]
    assert "k1" not in store and list(store) == ["k2"]
    with pytest.raises(KeyError):
        del store["k1"]


def test_lock_excludes_a_second_holder_in_another_thread(spec: dict[str, Any]) -> None:
    holder, waiter = make_store(spec), make_store({**spec, "lock_timeout": 0.3})
    outcome: list[bool] = []

    def wait() -> None:
        with waiter.lock("k") as acquired:
            outcome.append(acquired)

    with holder.lock("k") as held:
        assert held
        thread = threading.Thread(target=wait)
        thread.start()
        thread.join(10)
        with waiter.lock("another key") as independent:
            assert independent
    assert outcome == [False]
    with waiter.lock("k") as acquired:
        assert acquired  # released


HOLDER = textwrap.dedent("""
    import json, sys
    from tests.fleet import make_store
    with make_store(json.loads(sys.argv[1])).lock("k") as held:
        print("held" if held else "not held", flush=True)
        sys.stdin.readline()
""")


def hold_lock_in_child(spec: dict[str, Any]) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, json.dumps(spec)], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_lock_excludes_a_second_holder_in_another_process(spec: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    holder = hold_lock_in_child(spec)
    waiter = make_store({**spec, "lock_timeout": 0.3})
    with waiter.lock("k") as acquired:
        assert not acquired
    assert "not acquired" in caplog.text
    holder.communicate("release\n", timeout=30)
    assert holder.returncode == 0
    with waiter.lock("k") as acquired:
        assert acquired


def test_a_killed_lock_holder_blocks_others_at_most_lock_timeout(spec: dict[str, Any]) -> None:
    holder = hold_lock_in_child({**spec, "lock_timeout": 1.0})  # its lease: 1 s
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    with make_store({**spec, "lock_timeout": 5.0}).lock("k") as acquired:
        assert acquired  # within its own 5 s deadline


def lock_is_held(spec: dict[str, Any]) -> bool:
    if spec["kind"] == "redis":
        return bool(redis.Redis.from_url(spec["where"]).keys(f"{spec['prefix']}lock:*"))
    items = boto3.client("dynamodb").scan(TableName=spec["where"])["Items"]
    return any(item["pk"]["S"].startswith("lock#") for item in items)


FETCHER = textwrap.dedent("""
    import json, sys, boto3
    import assume_role_chain as arc
    from tests.fleet import make_store
    session = arc.assume_role(boto3.Session(), sys.argv[2], cache=make_store(json.loads(sys.argv[1])))
    session.client("s3").list_buckets()
""")


def test_a_process_killed_while_fetching_costs_others_at_most_lock_timeout(
    fleet_spec: dict[str, Any], proxy: FaultProxy, sts_calls: Callable[[], int]
) -> None:
    proxy.fault = ("stall", 60)  # the fetcher's AssumeRole never comes back
    fetcher = subprocess.Popen([sys.executable, "-c", FETCHER, json.dumps({**fleet_spec, "lock_timeout": 1.0}), role_arn("A")],
                               cwd=ROOT, stderr=subprocess.PIPE)
    try:
        for _ in range(600):
            if proxy.count("AssumeRole") or fetcher.poll() is not None:
                break
            time.sleep(0.05)
        assert proxy.count("AssumeRole") == 1 and lock_is_held(fleet_spec), "the fetcher never fetched under the lock"
    finally:
        fetcher.kill()
        fetcher.communicate(timeout=10)
    proxy.fault = None
    session = arc.assume_role(boto3.Session(), role_arn("A"), cache=make_store({**fleet_spec, "lock_timeout": 5.0}))
    session.client("s3").list_buckets()  # no error: the dead fetcher's lease ran out
    assert sts_calls() == 1 and proxy.count("AssumeRole") == 2
    assert not lock_is_held(fleet_spec)  # released


def test_entries_expire(fleet_spec: dict[str, Any]) -> None:
    store = make_store(fleet_spec)
    short = entry(hours=0.5)
    store["k"] = short
    expiry = dt.datetime.fromisoformat(short["Expiration"].replace("Z", "+00:00"))
    if fleet_spec["kind"] == "redis":  # the store drops it at the expiry itself
        left_ms = redis.Redis.from_url(fleet_spec["where"]).pttl(f"test:entry:{entry_id('k')}")
        assert 0 < left_ms <= 1800 * 1000
    else:
        item = boto3.client("dynamodb").get_item(TableName=TABLE, Key={"pk": {"S": entry_id("k")}})["Item"]
        assert int(item["expires_at"]["N"]) == int(expiry.timestamp())
    with time_machine.travel(expiry + dt.timedelta(seconds=1)):  # and readers check it (moto never deletes)
        assert "k" not in store and list(store) == []
        with pytest.raises(KeyError):
            store["k"]
        store["old"] = short  # already expired: not stored
    assert "old" not in store


def test_an_expired_entry_is_not_served(spec: dict[str, Any], sts_calls: Callable[[], int]) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    with time_machine.travel(now, tick=False) as traveller:
        first = arc.assume_role(boto3.Session(), role_arn("A"), DurationSeconds=900, cache=make_store(spec))
        first_key = first.get_credentials().get_frozen_credentials().access_key  # type: ignore[union-attr]
        assert sts_calls() == 1
        again = arc.assume_role(boto3.Session(), role_arn("A"), DurationSeconds=900, cache=make_store(spec))
        assert again.get_credentials().get_frozen_credentials().access_key == first_key  # type: ignore[union-attr]
        assert sts_calls() == 1
        traveller.shift(dt.timedelta(seconds=901))
        later = arc.assume_role(boto3.Session(), role_arn("A"), DurationSeconds=900, cache=make_store(spec))
        assert later.get_credentials().get_frozen_credentials().access_key != first_key  # type: ignore[union-attr]
        assert sts_calls() == 2


def test_the_stores_are_accepted_by_every_entry_point(fleet_spec: dict[str, Any], sts_calls: Callable[[], int]) -> None:
    store = make_store(fleet_spec)
    hop = arc.assume_role(boto3.Session(), role_arn("A"), cache=store)
    chain = arc.assume_role_chain(boto3.Session(), [role_arn("A"), role_arn("B")], cache=store)
    assert ":assumed-role/A/" in arc.whoami(hop)["Arn"]
    assert ":assumed-role/B/" in arc.whoami(chain)["Arn"]
    assert sts_calls() == 2  # the chain's first hop came from the store
    fetches: list[int] = []

    def fetch() -> dict[str, str]:
        fetches.append(1)
        return entry()

    for _ in range(2):
        arc.refreshable_session(fetch, cache=store, cache_key="custom").get_credentials().get_frozen_credentials()  # type: ignore[union-attr]
    assert len(fetches) == 1
    with pytest.raises(iot_x509.IoTError) as raised:  # the cache is accepted; the missing certificate is not
        iot_x509.iot_session("/nonexistent/cert.pem", "/nonexistent/key.pem", "alias", endpoint="x.credentials.iot.us-east-1.amazonaws.com", cache=store)
    assert "cache" not in str(raised.value)


# -- a fleet: hosts x processes on one store ------------------------------------------------


@pytest.mark.parametrize("name", ["redis-sealed", "dynamodb"])
def test_three_hosts_of_eight_processes_make_one_call(name: str, request: pytest.FixtureRequest, aws_env: str, tmp_path: Path, sts_calls: Callable[[], int]) -> None:
    spec = store_spec(name, request, tmp_path)
    arns = run_fleet(spec, role_arn("Shared"), hosts=3, per_host=8, home=tmp_path)
    assert len(arns) == 24 and len(set(arns)) == 1 and ":assumed-role/Shared/" in arns[0]
    assert sts_calls() == 1
    assert run_fleet(spec, role_arn("Shared"), hosts=3, per_host=8, home=tmp_path) == arns
    assert sts_calls() == 1


# -- outages ------------------------------------------------------------------------------------


class Outage:
    """Takes a store down and brings it back."""

    def __init__(self, down: Callable[[], None], up: Callable[[], None]) -> None:
        self.down, self.up = down, up


@pytest.fixture(params=["redis", "dynamodb"])
def outage_store(request: pytest.FixtureRequest, aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Outage]]:
    if request.param == "redis":
        server = RedisServer()
        server.start()
        try:
            yield arc.RedisCache.from_url(server.url, encryption_key=KEY), Outage(server.stop, server.start)
        finally:
            server.stop()
    else:
        arc.DynamoDBCache.create_table(TABLE)
        relay = Relay(int(aws_env.rsplit(":", 1)[1]))
        relay.up()
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", relay.url)  # STS still goes straight to moto
        try:
            yield arc.DynamoDBCache(TABLE), Outage(relay.down, relay.up)
        finally:
            relay.down()


def test_a_store_outage_costs_no_api_call_and_warns_once(outage_store: tuple[Any, Outage], sts_calls: Callable[[], int], caplog: pytest.LogCaptureFixture) -> None:
    store, outage = outage_store

    def new_session_works() -> None:
        session = arc.assume_role(boto3.Session(), role_arn("A"), cache=store)
        session.client("s3").list_buckets()

    def warnings_() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name == "assume_role_chain"]

    new_session_works()
    new_session_works()
    assert sts_calls() == 1 and warnings_() == []  # shared through the store
    outage.down()
    for calls in (2, 3, 4):
        new_session_works()  # straight from STS
        assert sts_calls() == calls
    assert len(warnings_()) == 1 and "going on without it" in warnings_()[0]
    outage.up()
    new_session_works()  # the store answers again (an empty Redis: one fetch, then shared)
    new_session_works()
    assert sts_calls() in (4, 5)
    shared = sts_calls()
    new_session_works()
    assert sts_calls() == shared
    assert "answers again" in caplog.text
    outage.down()
    new_session_works()
    assert len(warnings_()) == 2  # one per outage


# -- encryption --------------------------------------------------------------------------------------


def test_sealed_entries_hold_no_secret(sealed_spec: dict[str, Any]) -> None:
    session = arc.assume_role(boto3.Session(), role_arn("A"), cache=make_store(sealed_spec))
    credentials = session.get_credentials().get_frozen_credentials()  # type: ignore[union-attr]
    values = raw_values(sealed_spec)
    assert values and all(credentials.secret_key not in v and str(credentials.token) not in v for v in values)
    # And another process with the key reads what this one wrote.
    reader = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import json, sys
        from tests.fleet import make_store
        store = make_store(json.loads(sys.argv[1]))
        print(next(iter(store)), store[next(iter(store))]["AccessKeyId"])
    """), json.dumps(sealed_spec)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert reader.returncode == 0, reader.stderr
    assert reader.stdout.split()[1] == credentials.access_key


def flip_a_byte(text: str) -> str:
    envelope = json.loads(text)
    raw = bytearray(base64.b64decode(envelope["Sealed"]))
    raw[20] ^= 0x01
    envelope["Sealed"] = base64.b64encode(bytes(raw)).decode()
    return json.dumps(envelope)


def moved_to(text: str, key: str) -> str:
    return json.dumps({**json.loads(text), "Key": key})  # even with the envelope rewritten


@pytest.mark.parametrize("damage", ["flipped byte", "wrong key", "moved", "garbage", "plaintext"])
def test_entries_that_do_not_open_are_misses_and_are_replaced(sealed_spec: dict[str, Any], damage: str, caplog: pytest.LogCaptureFixture) -> None:
    store = make_store(sealed_spec)
    store["k"] = entry()
    key = "k"
    if damage == "flipped byte":
        raw_put(sealed_spec, "k", flip_a_byte(raw_get(sealed_spec, "k")))
    elif damage == "wrong key":
        store = make_store({**sealed_spec, "key": OTHER_KEY.hex()})
    elif damage == "moved":
        raw_put(sealed_spec, "other", moved_to(raw_get(sealed_spec, "k"), "other"))
        key = "other"
    elif damage == "garbage":
        raw_put(sealed_spec, "k", "\x00not json{")
    else:  # written without a key
        make_store({**sealed_spec, "key": None})["k"] = entry()
    for _ in range(3):
        with pytest.raises(KeyError):
            store[key]
        assert key not in store and key not in list(store)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    replacement = entry(secret="the-replacement-secret-of-a-test")
    store[key] = replacement
    assert store[key] == replacement


def test_a_session_replaces_an_entry_that_does_not_open(sealed_spec: dict[str, Any], sts_calls: Callable[[], int]) -> None:
    first = arc.assume_role(boto3.Session(), role_arn("A"), cache=make_store(sealed_spec))
    first.get_credentials().get_frozen_credentials()  # type: ignore[union-attr]
    (key,) = list(make_store(sealed_spec))
    raw_put(sealed_spec, key, flip_a_byte(raw_get(sealed_spec, key)))
    second = arc.assume_role(boto3.Session(), role_arn("A"), cache=make_store(sealed_spec))
    second.client("s3").list_buckets()  # no error: a miss
    assert sts_calls() == 2
    third = arc.assume_role(boto3.Session(), role_arn("A"), cache=make_store(sealed_spec))
    third.client("s3").list_buckets()
    assert sts_calls() == 2  # replaced by the second


# -- construction -------------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "param"), [
    (lambda: arc.RedisCache(object()), "client"),
    (lambda: arc.RedisCache(redis.Redis(), prefix=""), "prefix"),
    (lambda: arc.RedisCache(redis.Redis(), encryption_key=KEY[:31]), "encryption_key"),
    (lambda: arc.RedisCache(redis.Redis(), encryption_key=KEY.hex()), "encryption_key"),
    (lambda: arc.RedisCache(redis.Redis(), lock_timeout=-1), "lock_timeout"),
    (lambda: arc.RedisCache.from_url("redis://127.0.0.1:1/0", operation_timeout=0), "operation_timeout"),
    (lambda: arc.RedisCache.from_url("http://127.0.0.1:1/0"), "url"),
    (lambda: arc.DynamoDBCache(""), "table_name"),
    (lambda: arc.DynamoDBCache(TABLE, session="default"), "session"),
    (lambda: arc.DynamoDBCache(TABLE, encryption_key=b"x" * 33), "encryption_key"),
    (lambda: arc.DynamoDBCache(TABLE, operation_timeout=float("nan")), "operation_timeout"),
    (lambda: arc.DynamoDBCache.create_table("a b"), "table_name"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_bad_arguments_are_refused_before_any_connection(make: Callable[[], Any], param: str, aws_env: str, connections: list[Any]) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError) as raised:
        make()
    assert f"Invalid {param}" in str(raised.value)
    assert KEY.hex() not in str(raised.value)
    assert connections == []


def test_from_url_takes_the_class_keywords_and_no_other(aws_env: str, connections: list[Any]) -> None:
    cache = arc.RedisCache.from_url("redis://127.0.0.1:1/0", prefix="p:", lock_timeout=2, operation_timeout=0.5)
    assert (cache.prefix, cache.lock_timeout, cache.operation_timeout) == ("p:", 2, 0.5)
    assert cache.client.connection_pool.connection_kwargs["socket_timeout"] == 0.5
    with pytest.raises(TypeError, match="'prefx'"):
        arc.RedisCache.from_url("redis://127.0.0.1:1/0", prefx="p:")
    assert connections == []


def test_construction_makes_no_connection_and_repr_shows_no_key(aws_env: str, connections: list[Any]) -> None:
    stores = [
        arc.RedisCache.from_url("redis://127.0.0.1:1/0", encryption_key=KEY),
        arc.RedisCache(redis.Redis(host="127.0.0.1", port=1, socket_timeout=1)),
        arc.DynamoDBCache(TABLE, encryption_key=KEY, session=boto3.Session()),
    ]
    assert connections == []
    assert [repr(store) for store in stores] == [
        "RedisCache(127.0.0.1:1/0, prefix='assume-role-chain:', encrypted)",
        "RedisCache(127.0.0.1:1/0, prefix='assume-role-chain:')",
        "DynamoDBCache('arc-fleet', encrypted)",
    ]


def test_importing_the_module_imports_neither_redis_nor_cryptography() -> None:
    probe = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys, assume_role_chain as arc
        arc.DynamoDBCache("arc-fleet")
        print(sorted(name for name in ("redis", "cryptography") if name in sys.modules))
    """)], cwd=ROOT, capture_output=True, text=True, timeout=60, env={"AWS_DEFAULT_REGION": "us-east-1", "PATH": ""})
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"


# -- shared keys: the parent's principal, not its access key ----------------------------------


def frozen_key(session: boto3.Session) -> str:
    return str(session.get_credentials().get_frozen_credentials().access_key)  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["json", "redis-sealed", "dynamodb"])
def test_two_access_keys_of_one_principal_share_an_entry_and_two_principals_never_do(
    name: str, request: pytest.FixtureRequest, aws_env: str, tmp_path: Path, sts_calls: Callable[[], int],
) -> None:
    store = make_store(store_spec(name, request, tmp_path))
    first, second = user_session("lambda-role"), user_session("lambda-role")  # two instances of one function
    assert frozen_key(first) != frozen_key(second)
    keys = [frozen_key(arc.assume_role(parent, role_arn("Shared"), cache=store)) for parent in (first, second)]
    assert keys[0] == keys[1] and sts_calls() == 1
    other = frozen_key(arc.assume_role(user_session("someone-else"), role_arn("Shared"), cache=store))
    assert other != keys[0] and sts_calls() == 2


def test_a_chain_hop_is_keyed_by_its_parent_hop_without_get_caller_identity(proxy: FaultProxy, tmp_path: Path, sts_calls: Callable[[], int]) -> None:
    cache = arc.JSONFileCache(tmp_path)
    hops = [arc.assume_role(boto3.Session(), role_arn("Hop")) for _ in range(2)]  # two processes' first hops, not cached
    assert frozen_key(hops[0]) != frozen_key(hops[1])
    keys = [frozen_key(arc.assume_role(hop, role_arn("Target"), cache=cache)) for hop in hops]
    assert keys[0] == keys[1] and sts_calls() == 3  # two first hops, one shared second hop
    assert proxy.count("GetCallerIdentity") == 0
    named = arc.assume_role(boto3.Session(), role_arn("Hop"), RoleSessionName="other-name")  # another principal
    assert frozen_key(arc.assume_role(named, role_arn("Target"), cache=cache)) != keys[0]
    assert proxy.count("GetCallerIdentity") == 0


def test_get_caller_identity_is_asked_once_per_parent_access_key(proxy: FaultProxy, tmp_path: Path) -> None:
    parent = user_session("counted")
    for role in ("One", "Two", "Three"):
        frozen_key(arc.assume_role(parent, role_arn(role), cache=arc.JSONFileCache(tmp_path)))
    assert proxy.count("GetCallerIdentity") == 1
    frozen_key(arc.assume_role(parent, role_arn("One")))  # no cache: no question
    assert proxy.count("GetCallerIdentity") == 1


def test_a_failing_get_caller_identity_costs_no_credentials(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            sts_calls: Callable[[], int], caplog: pytest.LogCaptureFixture) -> None:
    with fault_proxy(aws_env, target="GetCallerIdentity") as refusing:
        refusing.fault = ("status", 403)
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", refusing.url)
        cache = arc.JSONFileCache(tmp_path)
        session = arc.assume_role(user_session("unidentified"), role_arn("A"), cache=cache)
        assert frozen_key(session).startswith("ASIA")
    assert sts_calls() == 1 and len(cache) == 0  # fetched without the cache
    assert any("GetCallerIdentity failed" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


# -- negative caching ---------------------------------------------------------------------------


def test_a_failed_fetch_is_recorded_and_others_raise_it_without_calling_sts(proxy: FaultProxy, clock: Any, tmp_path: Path) -> None:
    cache = arc.JSONFileCache(tmp_path)
    proxy.fault = ("status", 400)  # Throttling

    def attempt() -> botocore.exceptions.ClientError:
        with pytest.raises(botocore.exceptions.ClientError) as raised:
            frozen_key(arc.assume_role(boto3.Session(), role_arn("A"), cache=cache))
        return raised.value

    first = attempt()
    assert first.response["Error"]["Code"] == "Throttling" and proxy.count("AssumeRole") == 1
    for _ in range(3):
        again = attempt()  # recorded: the same code and message, no call
        assert again.response["Error"]["Code"] == "Throttling" and again.operation_name == "AssumeRole"
        assert again.response["Error"]["Message"] == first.response["Error"]["Message"]
    assert proxy.count("AssumeRole") == 1
    record = cache[next(key for key in cache if key.endswith("#failure"))]
    assert record["Failure"] == "ClientError" and record["Count"] == 1
    for failures, delay in ((2, 5), (3, 10), (4, 20)):  # 5 s doubling
        clock.shift(delay - 1)
        attempt()
        assert proxy.count("AssumeRole") == failures - 1
        clock.shift(1.5)
        attempt()
        assert proxy.count("AssumeRole") == failures
    proxy.fault = None
    clock.shift(41)
    assert frozen_key(arc.assume_role(boto3.Session(), role_arn("A"), cache=cache)).startswith("ASIA")
    assert frozen_key(arc.assume_role(boto3.Session(), role_arn("A"), cache=cache)).startswith("ASIA")
    assert proxy.count("AssumeRole") == 5  # recovered, and shared again


def test_holders_of_valid_credentials_keep_serving_them_while_a_failure_is_recorded(proxy: FaultProxy, clock: Any, tmp_path: Path) -> None:
    cache = arc.JSONFileCache(tmp_path)
    holder = arc.assume_role(boto3.Session(), role_arn("A"), cache=cache)
    held = frozen_key(holder)
    proxy.fault = ("status", 400)
    clock.shift(3600 - 12 * 60)  # in the advisory window: due for refresh, still valid
    with pytest.raises(botocore.exceptions.ClientError):
        frozen_key(arc.assume_role(boto3.Session(), role_arn("A"), cache=cache))  # a newcomer: none to serve
    calls = proxy.count("AssumeRole")
    assert frozen_key(holder) == held  # static stability: the recorded failure costs the holder nothing
    assert proxy.count("AssumeRole") == calls  # and it did not call STS again


def test_a_recorded_failure_that_is_not_a_client_error_keeps_its_type_name_and_message(aws_env: str) -> None:
    cache: dict[str, Any] = {}
    calls: list[int] = []

    def fetch() -> dict[str, str]:
        calls.append(1)
        raise ValueError("the broker said no")

    for _ in range(3):
        with pytest.raises(botocore.exceptions.CredentialRetrievalError if calls else ValueError) as raised:
            arc.refreshable_session(fetch, cache=cache, cache_key="broker").get_credentials().get_frozen_credentials()  # type: ignore[union-attr]
        assert "the broker said no" in str(raised.value)
    assert "ValueError" in str(raised.value) and len(calls) == 1


def test_twenty_four_processes_make_a_handful_of_calls_while_sts_refuses(proxy: FaultProxy, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    proxy.fault = ("status", 400)
    spec = {**store_spec("redis-sealed", request, tmp_path), "operation_timeout": 10.0}  # a loaded machine: no store timeouts
    outcomes = run_fleet(spec, role_arn("Refused"), hosts=3, per_host=8, home=tmp_path, worker_script=FAILING_WORKER)
    assert outcomes == ["ClientError Throttling"] * 24  # the recorded error, code preserved
    assert 1 <= proxy.count("AssumeRole") <= 3, proxy.count("AssumeRole")


# -- a failing store within one refresh ------------------------------------------------------------


class CountingBrokenStore(dict[str, Any]):
    """A dict-like store whose reads hang up (a store that fails); counts what it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def __getitem__(self, key: str) -> Any:
        self.asked.append("read")
        raise TimeoutError("store did not answer")

    def __setitem__(self, key: str, value: Any) -> None:
        self.asked.append("write")

    def lock(self, key: str) -> Any:
        self.asked.append("lock")
        return contextlib.nullcontext(True)


def test_after_a_store_failure_a_refresh_asks_it_nothing_more(parent: boto3.Session, sts_calls: Callable[[], int]) -> None:
    store = CountingBrokenStore()
    assert frozen_key(arc.assume_role(parent, role_arn("A"), cache=store)).startswith("ASIA")
    assert store.asked == ["read"] and sts_calls() == 1


def test_an_expired_failure_record_in_a_store_without_ttl_starts_the_backoff_over(aws_env: str, clock: Any) -> None:
    cache: dict[str, Any] = {}  # a dict keeps what it is given

    def fetch() -> dict[str, str]:
        raise TimeoutError("the broker did not answer")

    def fail_once() -> int:
        with pytest.raises(TimeoutError):
            arc.refreshable_session(fetch, cache=cache, cache_key="broker").get_credentials().get_frozen_credentials()  # type: ignore[union-attr]
        return int(cache["broker#failure"]["Count"])

    assert fail_once() == 1
    clock.shift(6)  # past the retry time, within the record's life: the count goes on
    assert fail_once() == 2
    clock.shift(31)  # past the record's expiration (retry time 10 s + 10 s)
    assert fail_once() == 1
