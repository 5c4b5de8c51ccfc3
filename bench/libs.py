"""One adapter per library: how to make an assumed-role session with it.

Each adapter returns a zero-argument factory, so that set-up (imports, the
parent session, the cache object) is done once and only session creation is
timed. Adapters import their library lazily: each measurement process imports
only the library it measures.
"""

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from bench.env import ROLE_ARN, ROLE_SESSION_NAME

if TYPE_CHECKING:
    from mypy_boto3_sts import STSClient

SessionFactory = Callable[[], boto3.Session]

# Enough pooled connections for the 64-thread test. Passing a config also keeps
# boto3-refresh-session from handing back its cached STS client, which carries
# the *parent* credentials (its ``session.client("sts")`` is the client it uses
# to call AssumeRole).
API_CLIENT_CONFIG = Config(max_pool_connections=64)


@dataclass(frozen=True)
class Library:
    key: str  # the distribution name
    module: str
    cross_process_cache: str

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


OURS = Library("assume-role-chain", "assume_role_chain", "JSONFileCache (file lock)")
PEERS = (
    Library("aws-assume-role-lib", "aws_assume_role_lib", "botocore JSONFileCache"),
    Library("boto3-refresh-session", "boto3_refresh_session", "none"),
    Library("boto3-assume", "boto3_assume", "none"),
)
LIBRARIES = (OURS, *PEERS)


# The baseline of the no-op-endpoint rows: a plain session with static keys
# (the parent's keys, which never refresh).
STATIC = "static credentials"
STATIC_KEY_ID = "testing"


def api_client(session: boto3.Session, endpoint_url: str | None = None) -> "STSClient":
    """The STS client through which API calls are made, the same way for every library."""
    return session.client("sts", config=API_CLIENT_CONFIG, endpoint_url=endpoint_url)


def static_session() -> boto3.Session:
    """A plain boto3 session with static keys: zero credential overhead."""
    return boto3.Session(aws_access_key_id=STATIC_KEY_ID, aws_secret_access_key=STATIC_KEY_ID)


def _ours(duration: int, cache_dir: str | None) -> SessionFactory:
    import assume_role_chain as arc

    parent = boto3.Session()
    cache: Any = None
    if cache_dir and cache_dir.startswith("redis://"):  # the fleet stores of bench/fleet.py
        cache = arc.RedisCache.from_url(cache_dir)
    elif cache_dir and cache_dir.startswith("dynamodb://"):
        # moto on 2 shared cores answers 64 processes in seconds, not DynamoDB's milliseconds:
        # with the default 1 s every read timed out and the store was skipped (bench/README.md)
        cache = arc.DynamoDBCache(cache_dir[len("dynamodb://"):], operation_timeout=10.0)
    elif cache_dir:
        cache = arc.JSONFileCache(cache_dir)

    def make() -> boto3.Session:
        session: boto3.Session = arc.assume_role(
            parent, ROLE_ARN, RoleSessionName=ROLE_SESSION_NAME, DurationSeconds=duration, cache=cache
        )
        return session

    return make


def _aws_assume_role_lib(duration: int, cache_dir: str | None) -> SessionFactory:
    import aws_assume_role_lib

    parent = boto3.Session()
    # The package re-exports these without __all__, and annotates ``cache`` as a dict.
    cache: Any = aws_assume_role_lib.JSONFileCache(cache_dir) if cache_dir else None  # type: ignore[attr-defined,no-untyped-call]

    def make() -> boto3.Session:
        session: boto3.Session = aws_assume_role_lib.assume_role(  # type: ignore[attr-defined]
            parent, ROLE_ARN, RoleSessionName=ROLE_SESSION_NAME, DurationSeconds=duration, cache=cache
        )
        return session

    return make


def _boto3_refresh_session(duration: int, cache_dir: str | None) -> SessionFactory:
    import boto3_refresh_session  # type: ignore[import-untyped]

    del cache_dir  # no cross-process credential cache
    # No parent-session argument: the session itself resolves the default credentials.
    kwargs: dict[str, Any] = {
        "RoleArn": ROLE_ARN,
        "RoleSessionName": ROLE_SESSION_NAME,
        "DurationSeconds": duration,
    }

    def make() -> boto3.Session:
        session: boto3.Session = boto3_refresh_session.RefreshableSession(method="sts", assume_role_kwargs=dict(kwargs))
        return session

    return make


def _boto3_assume(duration: int, cache_dir: str | None) -> SessionFactory:
    import boto3_assume  # type: ignore[import-untyped]

    del cache_dir  # no cache at all
    parent = boto3.Session()
    kwargs = {"RoleArn": ROLE_ARN, "RoleSessionName": ROLE_SESSION_NAME, "DurationSeconds": duration}

    def make() -> boto3.Session:
        session: boto3.Session = boto3_assume.assume_role(parent, dict(kwargs))
        return session

    return make


_ADAPTERS: dict[str, Callable[[int, str | None], SessionFactory]] = {
    OURS.key: _ours,
    "aws-assume-role-lib": _aws_assume_role_lib,
    "boto3-refresh-session": _boto3_refresh_session,
    "boto3-assume": _boto3_assume,
}


def session_factory(key: str, duration: int, cache_dir: str | None = None) -> SessionFactory:
    """A factory making sessions of library ``key`` for ``ROLE_ARN`` (or, for
    ``STATIC``, plain sessions with static keys)."""
    if key == STATIC:
        return static_session
    return _ADAPTERS[key](duration, cache_dir)
