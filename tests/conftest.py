"""Shared fixtures: a real moto server (HTTP on 127.0.0.1) and an isolated AWS environment."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import importlib.util
import json
import logging
import os
import pty
import select
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import time_machine
from moto.server import ThreadedMotoServer
from moto.sts.models import STSBackend, sts_backends

import assume_role_chain as arc
from tests.faults import START, FaultProxy, fault_proxy
from tests.fleet import RedisServer

ACCOUNT = "123456789012"

# The asyncio tests need aioboto3, whose aiobotocore pins an older botocore than the
# newest: they run in an environment of their own (.venv-aio, tests/run.sh, always
# with CI=true). Where aioboto3 or pytest-asyncio is missing they are not collected.
collect_ignore = [] if all(importlib.util.find_spec(name) for name in ("aioboto3", "pytest_asyncio")) else ["aio"]

pytest_plugins = ["tests.hygiene_plugin"]  # secret hygiene over the whole session (docs/RELIABILITY.md)

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request log


def role_arn(name: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:iam::{account}:role/{name}"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """URL of an in-process moto server (real HTTP, real SigV4 requests).

    In-process so that time-machine moves moto's clock with ours and the
    tests can count AssumeRole calls on the server side.
    """
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def reset_moto(endpoint: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST", data=b"")
    urllib.request.urlopen(request, timeout=10).read()


def assume_role_calls() -> int:
    """AssumeRole calls the in-process moto server has answered since its reset."""
    total = 0
    for by_partition in sts_backends.values():
        for backend in by_partition.values():
            total += len(backend.assumed_roles)
    return total


@pytest.fixture(autouse=True)
def _collect_sessions_of_earlier_tests() -> Iterator[None]:
    """Sessions of finished tests must not refresh (eager ones do so in the background)."""
    gc.collect()
    yield
    gc.collect()


@pytest.fixture
def aws_env(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An environment that can only reach moto: no real profile, no real keys."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    config = tmp_path / "aws-config"
    credentials = tmp_path / "aws-credentials"
    config.write_text("")
    credentials.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAPARENTEXAMPLE000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "parent-secret-never-printed")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    reset_moto(moto_endpoint)
    return moto_endpoint


@pytest.fixture
def parent(aws_env: str) -> boto3.Session:
    return boto3.Session()


@pytest.fixture
def sts_calls(aws_env: str) -> Callable[[], int]:
    """Returns the number of AssumeRole calls made during this test."""
    return assume_role_calls


@pytest.fixture
def session_token_calls(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Returns the number of GetSessionToken calls the in-process moto server answered during this test."""
    calls: list[int] = []
    original = STSBackend.get_session_token

    def counting(self: STSBackend, duration: int) -> Any:
        calls.append(duration)
        return original(self, duration)

    monkeypatch.setattr(STSBackend, "get_session_token", counting)
    return lambda: len(calls)


class SentRequests(list[dict[str, list[str]]]):
    """Form fields of the AssumeRole requests sent by clients of watched sessions."""

    def watch(self, session: boto3.Session) -> None:
        session._session.register("before-send.sts", self._record)

    def _record(self, request: Any, **_: Any) -> None:
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        fields = urllib.parse.parse_qs(body)
        if fields.get("Action") == ["AssumeRole"]:
            self.append(fields)


@pytest.fixture
def sent_assume_role_requests(parent: boto3.Session) -> SentRequests:
    """AssumeRole requests sent with ``parent``'s credentials (watch more with ``.watch``)."""
    sent = SentRequests()
    sent.watch(parent)
    return sent


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every TCP connection attempted by this process during the test."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def counting_connect(self: socket.socket, address: Any) -> Any:
        attempts.append(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", counting_connect)
    return attempts


def user_session(name: str) -> boto3.Session:
    """A session with a new access key of IAM user ``name`` on moto (the user is made if need be)."""
    iam = boto3.client("iam")
    if name not in {user["UserName"] for user in iam.list_users()["Users"]}:
        iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return boto3.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the test session (fails clearly if it is not installed)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's redis-server, emptied."""
    import redis

    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


def json_dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)



class Clock:
    """time-machine's frozen wall clock, and the engine's monotonic clock with it.

    time-machine (3.0 and later) leaves ``time.monotonic`` alone, and the engine
    times backoff with a monotonic clock, so this one drives the engine's
    (``assume_role_chain._monotonic``): every move forwards advances both clocks
    by the same amount; a move backwards moves only the wall clock, as an NTP
    correction does, never the monotonic one.
    """

    def __init__(self, traveller: time_machine.Traveller) -> None:
        self.traveller = traveller
        self.monotonic = time.monotonic()

    def move_to(self, destination: dt.datetime) -> None:
        before = time.time()
        self.traveller.move_to(destination)
        self.monotonic += max(time.time() - before, 0.0)

    def shift(self, delta: float | dt.timedelta) -> None:
        """Move by ``delta`` (seconds or a timedelta), as time-machine's ``shift`` does."""
        seconds = delta.total_seconds() if isinstance(delta, dt.timedelta) else delta
        self.move_to(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """A frozen clock at ``tests.faults.START``; moto (in-process) moves with it."""
    with time_machine.travel(START, tick=False) as traveller:
        running = Clock(traveller)
        monkeypatch.setattr(arc, "_monotonic", lambda: running.monotonic)
        yield running


@pytest.fixture
def proxy(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """All STS traffic goes through a fault proxy; botocore makes one attempt per call."""
    with fault_proxy(aws_env) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", running.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        monkeypatch.setenv("AWS_RETRY_MODE", "standard")
        yield running


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


def read_until(fd: int, *markers: bytes, timeout: float = 60) -> bytes:
    """Read a pty until one of ``markers`` appears or the child closes it (no marker: until it closes)."""
    data = b""
    while not any(marker in data for marker in markers):
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise AssertionError(f"none of {markers!r} in {data!r}")
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        data += chunk
    return data


class Terminal:
    """A child process's controlling pseudo-terminal: what it has shown, and typing into it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.output = b""
        self.exit_code: int | None = None

    def read_until(self, *markers: bytes) -> None:
        self.output += read_until(self.fd, *markers)

    def type(self, line: bytes) -> None:
        os.write(self.fd, line)


@contextlib.contextmanager
def on_a_terminal(argv: list[str]) -> Iterator[Terminal]:
    """Run ``argv`` with a real pseudo-terminal as its controlling terminal (getpass reads
    from it); leaving the block waits for the child and sets ``exit_code``."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execv(argv[0], argv)
    terminal = Terminal(fd)
    try:
        yield terminal
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        terminal.exit_code = os.waitstatus_to_exitcode(status)
