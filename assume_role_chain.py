"""Assumed-role boto3 sessions whose credentials refresh themselves.

``assume_role(session, RoleArn)`` returns a plain :class:`boto3.Session`. Its
credentials are fetched with STS AssumeRole on first use and fetched again
before they expire, using the parent session's *current* credentials, so a
chain ``A -> B -> C`` refreshes hop by hop. ``refreshable_session(fetch)`` does
the same for any function that returns temporary credentials.

This module is a single file on purpose: copy it next to a Lambda handler and
it works with nothing but the standard library, boto3 and botocore.

Where to look:

* The public API (``assume_role``, ``assume_role_chain``,
  ``refreshable_session``, ``patch_boto3``) is section 11; cached clients 12;
  helpers (ARNs, Lambda session names, ``whoami``, ``get_credentials``) 13;
  the credentials endpoint (``serve_credentials``) 14; the command line 15.
* How credentials refresh is three layers, in call order:
  the *botocore shell* (section 6: botocore's hook, the thread lock, events,
  fork handling) asks the pure *refresh policy* (section 3: windows, the
  use/refresh/wait/fail decision, backoff) what to do, and gets new
  credentials from the *cached source* (section 4: key, read, lock, read
  again, fetch, write), which alone talks to a store through the
  ``CredentialStore`` protocol. Stores: the JSON file cache (section 7), the
  fleet caches on Redis/Valkey and DynamoDB (section 8) and any dict-like
  object (adapted).
* Every private botocore attribute we rely on is used in section 5, "the
  botocore contract", and nowhere else.

Sections, in reading order:

1. Time
2. Errors and argument validation
3. The refresh policy
4. Credentials, sources and the cached source
5. The botocore contract
6. The botocore shell
7. The JSON file cache
8. Fleet caches: Redis/Valkey and DynamoDB
9. Building child sessions
10. Credential sources (AssumeRole, MFA codes, MFA sessions, custom functions)
11. Public API
12. Cached clients
13. Helpers (ARNs, Lambda session names, whoami)
14. Credentials as a local service (a container-credentials endpoint)
15. Command line
"""

from __future__ import annotations

import abc
import base64
import contextlib
import copy
import dataclasses
import datetime as dt
import enum
import errno
import functools
import getpass
import hashlib
import hmac
import inspect
import ipaddress
import json
import logging
import math
import os
import random
import re
import secrets
import shlex
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, Union, cast

import boto3
import botocore.client
import botocore.config
import botocore.configprovider
import botocore.credentials
import botocore.exceptions
import botocore.hooks
import botocore.loaders
import botocore.parsers
import botocore.regions
import botocore.session
import botocore.validate

if TYPE_CHECKING:  # the command line imports argparse when it runs (import time matters in Lambda)
    import argparse

try:  # file locking is POSIX-only; elsewhere the cache degrades to no lock
    import fcntl
except ImportError:  # pragma: no cover - exercised only on Windows
    fcntl = None  # type: ignore[assignment]

__version__ = "0.1.0"

__all__ = [
    "AUTOMATIC_ROLE_SESSION_NAME",
    "AssumeRoleConfig",
    "ClientCache",
    "CredentialStore",
    "CredentialsServer",
    "DurationClampedWarning",
    "DynamoDBCache",
    "InvalidCredentialsError",
    "JSONFileCache",
    "MFATokenError",
    "RedisCache",
    "RefreshEvent",
    "RefreshWindowWarning",
    "RefreshWindows",
    "STSClientConfig",
    "UnsafeCacheError",
    "add_refresh_listener",
    "assume_role",
    "assume_role_chain",
    "cached_client",
    "cached_resource",
    "client_cache",
    "generate_lambda_session_name",
    "get_assumed_role_session_arn",
    "get_credentials",
    "get_identity",
    "get_role_arn",
    "main",
    "mfa_session",
    "patch_boto3",
    "refresh_windows",
    "refreshable_session",
    "remove_refresh_listener",
    "serve_credentials",
    "whoami",
]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())  # applications choose where records go

#: Pass as ``RoleSessionName`` to force a generated session name even when
#: ``SourceIdentity`` is given. It contains characters STS never accepts, so
#: it cannot collide with a real name.
AUTOMATIC_ROLE_SESSION_NAME = "AUTOMATIC_ROLE_SESSION_NAME_!#$%^&*()"

Clock = Callable[[], dt.datetime]
JSONDict = dict[str, Any]


# ---------------------------------------------------------------------------
# 1. Time
# ---------------------------------------------------------------------------


def _utc_now() -> dt.datetime:
    """The default clock: the current time as an aware UTC datetime."""
    return dt.datetime.now(dt.timezone.utc)


#: The clock for intervals (backoff, the next attempt). The wall clock is only
#: for expiry: it can step back (an NTP correction), a monotonic clock cannot.
#: Tests replace it together with the wall clock (time-machine moves only that).
_monotonic: Callable[[], float] = time.monotonic


def _to_utc(value: Any, field: str = "Expiration") -> dt.datetime:
    """Normalise a datetime, ISO 8601 string or epoch number to aware UTC.

    Naive datetimes and strings without an offset are taken to be UTC (that is
    what STS and IMDS mean). botocore's cache format ``...T12:00:00UTC`` is
    accepted too. Raises :class:`InvalidCredentialsError` naming ``field``.
    """
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            moment = dt.datetime.fromtimestamp(value, dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise InvalidCredentialsError(f"{field} is not a usable epoch time") from None
    elif isinstance(value, str):
        moment = _parse_iso(value, field)
    else:
        raise InvalidCredentialsError(
            f"{field} must be a datetime, an ISO 8601 string or an epoch number, "
            f"not {type(value).__name__}"
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    try:
        return moment.astimezone(dt.timezone.utc)
    except (OverflowError, ValueError):
        raise InvalidCredentialsError(f"{field} is out of range") from None


def _parse_iso(text: str, field: str) -> dt.datetime:
    cleaned = text.strip()
    if cleaned.endswith("UTC"):
        cleaned = cleaned[:-3] + "+00:00"
    elif cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        return dt.datetime.fromisoformat(cleaned)
    except ValueError:
        raise InvalidCredentialsError(
            f"{field} is not an ISO 8601 time (a string of {len(text)} characters)"
        ) from None


def _iso(moment: dt.datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with a ``Z`` suffix."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------
# 2. Errors and argument validation
# ---------------------------------------------------------------------------


class InvalidCredentialsError(botocore.exceptions.CredentialRetrievalError):
    """A credential source returned something that is not usable credentials."""

    def __init__(self, message: str, provider: str = "assume-role-chain") -> None:
        super().__init__(provider=provider, error_msg=message)


class MFATokenError(botocore.exceptions.CredentialRetrievalError):
    """No MFA code could be obtained for an AssumeRole call."""

    def __init__(self, message: str) -> None:
        super().__init__(provider="mfa", error_msg=message)


class DurationClampedWarning(UserWarning):
    """``DurationSeconds`` was lowered to 3600 because the role is chained."""


class RefreshWindowWarning(UserWarning):
    """A refresh window set by hand is not shorter than the credentials' lifetime."""


def _invalid(*problems: str) -> botocore.exceptions.ParamValidationError:
    return botocore.exceptions.ParamValidationError(report="\n".join(problems))


class _LazyPattern:
    """A regular expression compiled at its first use, so that importing stays cheap.

    A Lambda cold start imports this module on every new instance; compiling
    every pattern there would cost about a millisecond that most calls never
    need. It offers the few methods of ``re.Pattern`` that this module uses.
    """

    __slots__ = ("_compiled", "_flags", "pattern")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern, self._flags = pattern, flags
        self._compiled: re.Pattern[str] | None = None

    def _pattern(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(self.pattern, self._flags)
        return self._compiled

    def fullmatch(self, text: str) -> re.Match[str] | None:
        return self._pattern().fullmatch(text)

    def findall(self, text: str) -> list[Any]:
        return self._pattern().findall(text)

    def sub(self, replacement: str | Callable[[re.Match[str]], str], text: str) -> str:
        return self._pattern().sub(replacement, text)


# The patterns STS documents, with its ``\w`` spelled out as the ASCII class it
# means (Python's ``\w`` and ``\d`` also match other scripts' letters and
# digits). Always used with ``fullmatch``: ``$`` would let a trailing newline in.
_NAME_RE = _LazyPattern(r"[A-Za-z0-9_+=,.@-]+")
_EXTERNAL_ID_RE = _LazyPattern(r"[A-Za-z0-9_+=,.@:/-]+")
_SERIAL_RE = _LazyPattern(r"[A-Za-z0-9_+=/:,.@-]+")
_ROLE_ARN_RE = _LazyPattern(
    r"arn:aws[a-z0-9-]*:iam::[0-9]{12}:role/(?:[\x21-\x7e]*/)?[A-Za-z0-9_+=,.@-]{1,64}"
)
_POLICY_ARN_RE = _LazyPattern(r"arn:aws[a-z0-9-]*:iam::(?:[0-9]{12}|aws):policy/[\x21-\x7e]+")
_TOKEN_RE = _LazyPattern(r"[0-9]{6}")
_ACCOUNT_ID_RE = _LazyPattern(r"[0-9]{12}")

_LIMITS = {
    "RoleSessionName": (2, 64),
    "SourceIdentity": (2, 64),
    "ExternalId": (2, 1224),
    "SerialNumber": (9, 256),
}


class _Problems:
    """Collects validation problems so one error can name all of them."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, param: str, rule: str) -> None:
        self.items.append(f"Invalid {param}: {rule}")

    def raise_if_any(self) -> None:
        if self.items:
            raise _invalid(*self.items)


def _check_text(
    problems: _Problems, param: str, value: Any, pattern: _LazyPattern
) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        problems.add(param, f"must be a string, not {type(value).__name__}")
        return
    low, high = _LIMITS[param]
    if not low <= len(value) <= high:
        problems.add(param, f"length must be {low} to {high} characters, got {len(value)}")
    elif not pattern.fullmatch(value):
        problems.add(param, f"must match the pattern {pattern.pattern}")


def _check_role_arn(problems: _Problems, role_arn: Any) -> None:
    if not isinstance(role_arn, str):
        problems.add("RoleArn", f"must be a string, not {type(role_arn).__name__}")
    elif not 20 <= len(role_arn) <= 2048 or not _ROLE_ARN_RE.fullmatch(role_arn):
        problems.add(
            "RoleArn",
            f"{role_arn[:100]!r} is not an IAM role ARN "
            "(arn:PARTITION:iam::ACCOUNT_ID:role/[PATH/]NAME)",
        )


def _check_duration(problems: _Problems, duration: Any) -> None:
    if duration is None:
        return
    if isinstance(duration, dt.timedelta):
        seconds = duration.total_seconds()
    elif isinstance(duration, int) and not isinstance(duration, bool):
        seconds = duration
    else:
        problems.add(
            "DurationSeconds",
            f"must be an int or datetime.timedelta, not {type(duration).__name__}",
        )
        return
    if not 900 <= seconds <= 43200:
        problems.add("DurationSeconds", f"must be 900 to 43200 seconds, got {seconds:g}")


def _check_token_code(problems: _Problems, token_code: Any) -> None:
    # The value is never echoed: it is a secret, however short-lived.
    if token_code is not None and (
        not isinstance(token_code, str) or not _TOKEN_RE.fullmatch(token_code)
    ):
        problems.add("TokenCode", "must be a string of exactly six digits")


def _check_policy(problems: _Problems, policy: Any) -> None:
    if policy is None:
        return
    if isinstance(policy, str):
        try:
            parsed = json.loads(policy)
        except ValueError:
            problems.add("Policy", "is a string but not valid JSON")
            return
        if not isinstance(parsed, dict):
            problems.add("Policy", "must be a JSON object")
            return
        text = policy
    elif isinstance(policy, Mapping):
        try:
            text = json.dumps(policy)
        except (TypeError, ValueError) as error:
            problems.add("Policy", f"cannot be serialised to JSON ({error})")
            return
    else:
        problems.add("Policy", f"must be a dict or a JSON string, not {type(policy).__name__}")
        return
    if len(text) > 2048:
        problems.add("Policy", f"must be at most 2048 characters as JSON, got {len(text)}")


def _list_items(problems: _Problems, param: str, value: Any, shape: str, limit: int, noun: str) -> Sequence[Any]:
    """The items of a list argument (none when it is absent or not a list, which is noted)."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        problems.add(param, f"must be a list of {shape}")
        return ()
    if len(value) > limit:
        problems.add(param, f"at most {limit} {noun}, got {len(value)}")
    return value


def _check_policy_arns(problems: _Problems, policy_arns: Any) -> None:
    items = _list_items(problems, "PolicyArns", policy_arns, "ARN strings or of {'arn': ...} dicts", 10, "managed policies")
    for index, item in enumerate(items):
        arn = item.get("arn") if isinstance(item, Mapping) else item
        if not isinstance(arn, str) or not _POLICY_ARN_RE.fullmatch(arn) or len(arn) > 2048:
            problems.add(f"PolicyArns[{index}]", f"{str(arn)[:100]!r} is not an IAM policy ARN")


def _materialised(value: Any) -> Any:
    """A one-shot iterable (generator, ``dict.items()``, set) as a list; other values as they are."""
    if value is None or isinstance(value, (str, bytes, Mapping, Sequence)) or not hasattr(value, "__iter__"):
        return value
    try:
        return list(value)
    except Exception:  # not really iterable: the check names it
        return value


def _tag_pair(tag: Any) -> tuple[Any, Any] | None:
    """``(key, value)`` of one tag: a ``{'Key', 'Value'}`` dict or a 2-item pair; else None."""
    if isinstance(tag, Mapping):
        return (tag["Key"], tag["Value"]) if set(tag) == {"Key", "Value"} else None
    if isinstance(tag, Sequence) and not isinstance(tag, (str, bytes)) and len(tag) == 2:
        return (tag[0], tag[1])
    return None


def _check_tags(problems: _Problems, tags: Any) -> None:
    if tags is None:
        return
    if isinstance(tags, Mapping):
        pairs = list(tags.items())
    elif isinstance(tags, Sequence) and not isinstance(tags, (str, bytes)):
        pairs = []
        for index, tag in enumerate(tags):
            pair = _tag_pair(tag)
            if pair is None:
                problems.add(f"Tags[{index}]", "must be a dict with exactly 'Key' and 'Value', or a (key, value) pair")
                return
            pairs.append(pair)
    else:
        problems.add("Tags", "must be a mapping, a list of {'Key', 'Value'} dicts or an iterable of (key, value) pairs")
        return
    if len(pairs) > 50:
        problems.add("Tags", f"at most 50 session tags, got {len(pairs)}")
    for key, value in pairs:
        if not isinstance(key, str) or not 1 <= len(key) <= 128:
            problems.add("Tags", f"tag key {str(key)[:40]!r} must be a string of 1 to 128 characters")
        if not isinstance(value, str) or len(value) > 256:
            problems.add("Tags", f"value of tag {str(key)[:40]!r} must be a string of at most 256 characters")


def _check_string_list(problems: _Problems, param: str, value: Any, limit: int) -> None:
    if value is None:
        return
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not all(
        isinstance(item, str) for item in value
    ):
        problems.add(param, "must be a list of strings")
    elif len(value) > limit:
        problems.add(param, f"at most {limit} items, got {len(value)}")


def _check_provided_contexts(problems: _Problems, contexts: Any) -> None:
    items = _list_items(problems, "ProvidedContexts", contexts, "{'ProviderArn', 'ContextAssertion'} dicts", 5, "contexts")
    for index, item in enumerate(items):
        if not isinstance(item, Mapping) or not set(item) <= {"ProviderArn", "ContextAssertion"}:
            problems.add(f"ProvidedContexts[{index}]", "must be a dict of ProviderArn and ContextAssertion")


@functools.lru_cache(maxsize=1)
def _partition_regions() -> tuple[tuple[re.Pattern[str], ...], frozenset[str]]:
    """The region patterns and listed regions of botocore's partitions, loaded once."""
    loader = _standalone_loader()
    try:
        partitions = loader.load_data("partitions")["partitions"]
    except botocore.exceptions.DataNotFoundError:  # pragma: no cover - botocore without partitions.json
        partitions = loader.load_data("endpoints")["partitions"]
    patterns = tuple(re.compile(p["regionRegex"], re.ASCII) for p in partitions if p.get("regionRegex"))
    listed = frozenset(name for p in partitions for name in p.get("regions", {}))
    return patterns, listed


def _region_problem(region_name: object) -> str | None:
    """Why ``region_name`` is not an AWS region name, or ``None`` if it is one.

    A name is accepted when botocore lists it or when it is lower case and
    matches the region pattern of one of botocore's partitions, so a
    well-formed region that this botocore does not list yet is accepted.
    ``iot_x509`` uses this check too.
    """
    if not isinstance(region_name, str):
        return f"must be a region name such as 'eu-west-1', not {type(region_name).__name__}"
    patterns, listed = _partition_regions()
    if region_name in listed:
        return None
    if region_name == region_name.lower() and any(p.fullmatch(region_name) for p in patterns):
        return None
    return f"{region_name[:60]!r} is not an AWS region name such as 'eu-west-1' (the patterns of botocore's partitions)"


def _check_region(problems: _Problems, region_name: Any) -> None:
    if region_name is None or isinstance(region_name, bool):
        return
    if not isinstance(region_name, str):
        problems.add("region_name", "must be None, True, False or a region name such as 'us-east-1'")
        return
    problem = _region_problem(region_name)
    if problem is not None:
        problems.add("region_name", problem)


def _check_cache(problems: _Problems, cache: Any) -> None:
    if cache is not None and not (hasattr(cache, "__getitem__") and hasattr(cache, "__setitem__")):
        problems.add("cache", f"must be a dict-like object, not {type(cache).__name__}")


def _check_clock(problems: _Problems, clock: Any) -> None:
    if clock is not None and not callable(clock):
        problems.add("clock", f"must be a callable returning an aware datetime, not {type(clock).__name__}")


def _check_session(problems: _Problems, session: Any) -> None:
    if not isinstance(session, boto3.Session):
        problems.add("session", f"must be a boto3.Session, not {type(session).__name__}")


# ---------------------------------------------------------------------------
# 3. The refresh policy: when to refresh (pure: values in, a decision out)
# ---------------------------------------------------------------------------
#
# Everything about *when* credentials are refreshed lives here, as plain
# functions of plain values (the "sans-I/O" idea of h11): the credentials'
# issue and expiry times, a wall-clock reading, a monotonic reading and the
# failure record go in; a decision comes out. No locks, no botocore, no
# files and no clock of its own: the shells (section 6, and the asyncio
# module) read the clocks, act on the decision and own all synchronisation.
#
# Two clocks, two jobs: expiry is a wall-clock moment (STS says when), while
# backoff is an interval on the monotonic clock, so that a wall clock
# stepped back by NTP cannot stretch a backoff into an hour.


@dataclasses.dataclass(frozen=True)
class RefreshWindows:
    """When credentials of one lifetime are refreshed (seconds before expiry).

    * ``advisory``: one thread refreshes; the others keep using the current
      credentials without waiting. A failure is logged and retried later.
    * ``mandatory``: every thread waits for the one refresh in flight.
    * ``margin``: credentials are never used this close to their expiry. If no
      new credentials can be had by then, calls fail instead of being signed
      with credentials that may expire in flight.
    """

    advisory: float
    mandatory: float
    margin: float


def refresh_windows(lifetime: float) -> RefreshWindows:
    """Refresh windows for credentials that live ``lifetime`` seconds.

    Credentials that live an hour or more keep botocore's windows (15 and 10
    minutes) with a 60 s safety margin. Shorter lifetimes scale down to a
    quarter, a sixth and a tenth of the lifetime (60 s at most), so 900 s
    credentials are used for 675 s and refreshed once, not on every call.
    """
    lifetime = max(float(lifetime), 0.0)
    return RefreshWindows(
        advisory=min(900.0, lifetime / 4),
        mandatory=min(600.0, lifetime / 6),
        margin=min(60.0, lifetime / 10),
    )


class _Action(enum.Enum):
    """What a caller does with the credentials it holds (:meth:`_RefreshPolicy.decide`)."""

    USE = "use"  # fresh, or usable while a backoff runs
    REFRESH_IN_BACKGROUND = "refresh-in-background"  # advisory window: one caller refreshes, none waits
    REFRESH_AND_WAIT = "refresh-and-wait"  # mandatory window or unusable: callers wait for one refresh
    FAIL = "fail"  # unusable while a backoff runs: raise the last error, call nothing


class _Schedule(NamedTuple):
    """The refresh moments of one generation of credentials, computed once."""

    expiry: dt.datetime
    windows: RefreshWindows
    refresh_from: dt.datetime  # the advisory window opens
    wait_from: dt.datetime  # the mandatory window opens
    usable_until: dt.datetime  # the safety margin begins

    def state(self, now: dt.datetime) -> Literal["fresh", "advisory", "mandatory", "unusable"]:
        if now >= self.usable_until:
            return "unusable"
        if now > self.wait_from:
            return "mandatory"
        if now > self.refresh_from:
            return "advisory"
        return "fresh"


class _Backoff(NamedTuple):
    """The failure record: failures in a row, and the monotonic moment of the next try."""

    failures: int = 0
    retry_at: float = -math.inf

    def allows_attempt(self, monotonic_now: float) -> bool:
        return monotonic_now >= self.retry_at


_NO_BACKOFF = _Backoff()
_BACKOFF_BASE = 1.0
_BACKOFF_CAP = 30.0


class _RefreshPolicy(NamedTuple):
    """When credentials are refreshed, and how failed refreshes back off.

    ``advisory`` / ``mandatory`` fix the windows in seconds (``None``: scaled
    to the lifetime by :func:`refresh_windows`). A fixed mandatory window
    widens a scaled advisory one, and a fixed advisory window narrows a scaled
    mandatory one, so that the advisory window always holds the mandatory one.
    """

    advisory: float | None = None
    mandatory: float | None = None

    def windows(self, lifetime: float) -> RefreshWindows:
        scaled = refresh_windows(lifetime)
        advisory = scaled.advisory if self.advisory is None else self.advisory
        mandatory = scaled.mandatory if self.mandatory is None else self.mandatory
        if self.advisory is None:
            advisory = max(advisory, mandatory)
        if self.mandatory is None:
            mandatory = min(mandatory, advisory)
        return RefreshWindows(advisory=advisory, mandatory=mandatory, margin=scaled.margin)

    def schedule(self, issued: dt.datetime, expiry: dt.datetime) -> _Schedule:
        windows = self.windows((expiry - issued).total_seconds())
        return _Schedule(
            expiry=expiry,
            windows=windows,
            refresh_from=expiry - dt.timedelta(seconds=windows.advisory),
            wait_from=expiry - dt.timedelta(seconds=windows.mandatory),
            usable_until=expiry - dt.timedelta(seconds=windows.margin),
        )

    def windows_exceed_lifetime(self, issued: dt.datetime, expiry: dt.datetime) -> float | None:
        """The fixed window that is not shorter than the lifetime (every use refreshes), if any."""
        fixed = max(self.advisory or 0.0, self.mandatory or 0.0)
        return fixed if fixed and fixed >= (expiry - issued).total_seconds() else None

    @staticmethod
    def decide(schedule: _Schedule | None, now: dt.datetime, backoff: _Backoff, monotonic_now: float) -> _Action:
        """What to do with the current credentials (``schedule`` ``None``: there are none yet)."""
        state = "unusable" if schedule is None else schedule.state(now)
        if state == "fresh":
            return _Action.USE
        may_attempt = backoff.allows_attempt(monotonic_now)
        if state == "unusable":
            return _Action.REFRESH_AND_WAIT if may_attempt else _Action.FAIL
        if not may_attempt:
            return _Action.USE  # static stability: serve them while backing off
        return _Action.REFRESH_IN_BACKGROUND if state == "advisory" else _Action.REFRESH_AND_WAIT

    @staticmethod
    def after_failure(
        backoff: _Backoff, schedule: _Schedule | None, now: dt.datetime, monotonic_now: float, jitter: float
    ) -> _Backoff:
        """The record after one more failure; ``jitter`` in [0.5, 1] spreads the retries.

        The wait doubles from 1 s to 30 s; while the current credentials are
        usable, the next try comes no later than the moment they stop being so.
        """
        failures = backoff.failures + 1
        delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2.0 ** (failures - 1)) * jitter
        if schedule is not None and now < schedule.usable_until:
            delay = min(delay, (schedule.usable_until - now).total_seconds())
        return _Backoff(failures=failures, retry_at=monotonic_now + delay)

    @staticmethod
    def seconds_until_due(schedule: _Schedule | None, now: dt.datetime, backoff: _Backoff, monotonic_now: float) -> float:
        """Seconds until a background refresher should act (0 or less: now)."""
        due = 0.0 if schedule is None else (schedule.refresh_from - now).total_seconds()
        return max(due, backoff.retry_at - monotonic_now)

    @staticmethod
    def is_fresh(schedule: _Schedule, now: dt.datetime) -> bool:
        """Worth taking from a cache: outside the advisory window."""
        return schedule.state(now) == "fresh"

    @staticmethod
    def is_usable(schedule: _Schedule, now: dt.datetime) -> bool:
        """Usable at all: outside the safety margin."""
        return now < schedule.usable_until


# ---------------------------------------------------------------------------
# 4. Credentials, sources and the cached source
# ---------------------------------------------------------------------------


class _Credentials:
    """One generation of temporary credentials (immutable; secrets hidden from repr)."""

    __slots__ = ("access_key", "account_id", "expiry", "issued", "secret_key", "token")

    def __init__(
        self, *, access_key: str, secret_key: str, token: str | None,
        expiry: dt.datetime, issued: dt.datetime, account_id: str | None = None,
    ) -> None:
        for name, value in (("access_key", access_key), ("secret_key", secret_key), ("token", token),
                            ("expiry", expiry), ("issued", issued), ("account_id", account_id)):
            object.__setattr__(self, name, value)

    access_key: str
    secret_key: str
    token: str | None
    expiry: dt.datetime
    issued: dt.datetime
    account_id: str | None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __repr__(self) -> str:
        return f"<credentials {self.access_key}, expiry {_iso(self.expiry)}>"

    @property
    def lifetime(self) -> float:
        return (self.expiry - self.issued).total_seconds()

    def to_cache_entry(self) -> JSONDict:
        entry: JSONDict = {
            "AccessKeyId": self.access_key,
            "SecretAccessKey": self.secret_key,
            "SessionToken": self.token,
            "Expiration": _iso(self.expiry),
            "Issued": _iso(self.issued),
        }
        if self.account_id:
            entry["AccountId"] = self.account_id
        return entry


_STS_FIELDS = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
_BOTOCORE_FIELDS = ("access_key", "secret_key", "token", "expiry_time")


def _unsafe_credential_fields(fields: Mapping[str, str]) -> list[str]:
    """The names of the fields whose value holds whitespace or a control character.

    Real keys, secrets and tokens never do. Such a value, from a hostile or
    broken endpoint, could inject lines into a shell (``eval "$(...)"``) or an
    HTTP header, so it is refused wherever credentials are read, and never echoed.
    """
    return [name for name, value in fields.items() if not value.isprintable() or " " in value]


def _credentials_from_mapping(data: Any, received: dt.datetime) -> _Credentials:
    """Read the STS shape or botocore's shape into a credential record."""
    if not isinstance(data, Mapping):
        raise InvalidCredentialsError(
            f"expected a mapping of credentials, got {type(data).__name__}"
        )
    fields = _STS_FIELDS if "AccessKeyId" in data or "access_key" not in data else _BOTOCORE_FIELDS
    missing = [name for name in fields if not data.get(name)]
    if missing:
        raise InvalidCredentialsError(
            "credentials are missing the field(s) " + ", ".join(missing)
        )
    access_key, secret_key, token, expiry = (data[name] for name in fields)
    secrets_and_key = dict(zip(fields[:3], (access_key, secret_key, token), strict=True))
    for name, value in secrets_and_key.items():
        if not isinstance(value, str):
            raise InvalidCredentialsError(f"{name} must be a string")
    unsafe = _unsafe_credential_fields(secrets_and_key)
    if unsafe:
        raise InvalidCredentialsError(
            f"{', '.join(unsafe)} hold(s) whitespace or control characters: refused"
        )
    issued_value = data.get("Issued")
    issued = _to_utc(issued_value, "Issued") if issued_value else received
    account_id = data.get("AccountId") or data.get("account_id")
    return _Credentials(
        access_key=access_key,
        secret_key=secret_key,
        token=token,
        expiry=_to_utc(expiry, fields[3]),
        issued=min(issued, received),
        account_id=account_id if isinstance(account_id, str) else None,
    )


class _CredentialSource(Protocol):
    """Where new credentials come from (STS AssumeRole, a user function, IoT Core)."""

    name: str

    def cache_key(self) -> str | None: ...

    def fetch(self) -> Any: ...

    def after_fork(self) -> None: ...


class CredentialStore(Protocol):
    """What a credential cache offers the cached source (:class:`JSONFileCache` is one).

    * ``read(key)``: the entry (a dict in the STS shape), or ``None`` for a miss.
    * ``write(key, entry)``: store the entry; a store may drop it at its ``Expiration``.
    * ``lock(key)``: a context manager holding the key's lock, across processes
      (and hosts, for a shared store), for at most a deadline of its own; it
      yields whether the lock was had, and the cached source goes on either way.

    Any exception other than a miss means the store failed: the cached source
    warns once and goes on without it. A plain dict-like object is adapted
    (reads, writes, and its ``lock(key)`` if it has one).
    """

    def read(self, key: str) -> Any: ...

    def write(self, key: str, entry: JSONDict) -> None: ...

    def lock(self, key: str) -> contextlib.AbstractContextManager[bool]: ...


class _CacheMapping(MutableMapping[str, JSONDict], metaclass=abc.ABCMeta):  # abstract: subclasses store
    """The dict-like face the caches of this module share, and the store's read and write.

    ``key in cache``, ``len(cache)`` and ``read(key)`` all agree with
    ``cache[key]``: an entry that cannot be read is not there. A subclass adds
    ``lock(key)`` to be a full :class:`CredentialStore`.
    """

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            self[key]
        except KeyError:
            return False
        return True

    def read(self, key: str) -> JSONDict | None:
        """The entry for ``key``, or ``None`` for a miss (absent, expired, corrupt or untrusted)."""
        try:
            return self[key]
        except KeyError:
            return None

    def write(self, key: str, entry: JSONDict) -> None:
        """Store ``entry``; raises if the store cannot be used."""
        self[key] = entry


class _MappingStore:
    """A dict-like cache seen as a :class:`CredentialStore` (its own ``lock(key)``, if it has one)."""

    def __init__(self, mapping: MutableMapping[str, Any]) -> None:
        self.mapping = mapping

    def read(self, key: str) -> Any:
        try:
            return self.mapping[key]
        except KeyError:
            return None

    def write(self, key: str, entry: JSONDict) -> None:
        self.mapping[key] = entry

    def lock(self, key: str) -> contextlib.AbstractContextManager[bool]:
        lock = getattr(self.mapping, "lock", None)
        return lock(key) if callable(lock) else contextlib.nullcontext(False)


def _as_store(cache: Any) -> CredentialStore | None:
    if cache is None:
        return None
    if all(callable(getattr(cache, name, None)) for name in ("read", "write", "lock")):
        return cast(CredentialStore, cache)
    return _MappingStore(cache)


_cache_failures_warned: dict[tuple[int, str], object] = {}


def _cache_failed(cache: Any, action: Literal["read", "write", "lock"], error: Exception) -> None:
    """Go on without a cache that raised: one warning per cache object and error type.

    The warning names the cache's type and the error's type only: a user's
    cache may quote the entry, secrets included, in its messages. The caches
    of this module report their own failures (a fleet store once per outage).
    """
    if isinstance(cache, _MappingStore):
        cache = cache.mapping
    if isinstance(error, _StoreUnavailable) or (isinstance(cache, JSONFileCache) and isinstance(error, OSError)):
        logger.debug("%r could not %s; going on without it", cache, action)  # it has warned, naming why
        return
    warned = (id(cache), type(error).__name__)
    marker = object()
    if _cache_failures_warned.setdefault(warned, marker) is not marker:
        return
    with contextlib.suppress(TypeError):  # forget it with the cache (if it can be weakly referenced)
        weakref.finalize(cache, _cache_failures_warned.pop, warned, None)
    logger.warning("credential cache %s failed to %s (%s); going on without it", type(cache).__name__, action, warned[1])


Outcome = Literal["fetched", "cache-hit"]

_FAILURE_SUFFIX = "#failure"
_FAILURE_BACKOFF_FIRST = 5.0
_FAILURE_BACKOFF_CAP = 300.0
_FAILURE_MESSAGE_LIMIT = 500


def _failure_delay(count: int) -> dt.timedelta:
    """How long the ``count``-th failure in a row keeps the fleet from retrying: 5 s doubling to 5 min."""
    return dt.timedelta(seconds=min(_FAILURE_BACKOFF_FIRST * 2 ** min(count - 1, 16), _FAILURE_BACKOFF_CAP))


class _RecordedFailureError(botocore.exceptions.CredentialRetrievalError):
    """Fetching these credentials failed moments ago (recorded in the shared cache); not retried yet.

    Raised instead of calling the source again while another process's
    failure record is in force (negative caching). A recorded
    ``botocore.exceptions.ClientError`` is raised as a ``ClientError`` with
    the recorded code and message instead; this error covers the others and
    names the recorded error type in ``error_type``.
    """

    def __init__(self, error_type: str, message: str, provider: str = "assume-role-chain") -> None:
        super().__init__(provider=provider, error_msg=f"{error_type}: {message}")
        self.error_type = error_type


class _StoreVisit:
    """One ``obtain()``'s use of a store: after its first failure, no more operations.

    So a store that hangs costs at most one of its operation timeouts per
    refresh. Failures are reported by :func:`_cache_failed` (once).
    """

    def __init__(self, store: CredentialStore) -> None:
        self.store = store
        self.failed = False

    def _fail(self, action: Literal["read", "write", "lock"], error: Exception) -> None:
        self.failed = True
        _cache_failed(self.store, action, error)

    def read(self, key: str) -> Any:
        if self.failed:
            return None
        try:
            return self.store.read(key)
        except Exception as error:
            self._fail("read", error)
            return None

    def write(self, key: str, entry: JSONDict) -> None:
        if self.failed:
            return
        try:
            self.store.write(key, entry)
        except Exception as error:
            self._fail("write", error)

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            if not self.failed:
                try:
                    stack.enter_context(self.store.lock(key))
                except Exception as error:
                    self._fail("lock", error)
            yield


class _FailureRecord(NamedTuple):
    """A failed fetch, as the fleet shares it (error type, code and message: never a secret)."""

    error_type: str
    message: str
    code: str | None
    operation: str | None
    failures: int
    retry_at: dt.datetime

    @classmethod
    def of(cls, error: Exception, previous: _FailureRecord | None, now: dt.datetime) -> _FailureRecord:
        count = 1 if previous is None else previous.failures + 1
        code = operation = None
        message = str(error)
        if isinstance(error, botocore.exceptions.ClientError):
            details = error.response.get("Error", {})
            code, operation = str(details.get("Code", "Unknown")), error.operation_name
            message = str(details.get("Message", ""))
        message = _mask_codes(_redact_secrets(message))[:_FAILURE_MESSAGE_LIMIT]
        return cls(type(error).__name__, message, code, operation, count, now + _failure_delay(count))

    @classmethod
    def from_entry(cls, entry: Any, now: dt.datetime) -> _FailureRecord | None:
        """The record in ``entry``; ``None`` if it is not one or has expired (a store without TTL keeps it)."""
        try:
            count = entry["Count"]
            if not isinstance(count, int) or count < 1 or _to_utc(entry["Expiration"]) <= now:
                return None
            code, operation = entry.get("Code"), entry.get("Operation")
            return cls(str(entry["Failure"]), str(entry["Message"]), None if code is None else str(code),
                       None if operation is None else str(operation), count, _to_utc(entry["RetryAt"], "RetryAt"))
        except Exception:  # not a failure record: ignored
            return None

    def to_entry(self) -> JSONDict:
        """The store entry; it outlives ``retry_at`` by one more delay, so that the next failure doubles it."""
        entry: JSONDict = {
            "Failure": self.error_type, "Message": self.message, "Count": self.failures,
            "RetryAt": _iso(self.retry_at), "Expiration": _iso(self.retry_at + _failure_delay(self.failures)),
        }
        if self.code is not None:
            entry["Code"], entry["Operation"] = self.code, self.operation
        return entry

    def error(self, provider: str) -> Exception:
        """The recorded error, raised again: a ``ClientError`` with its code and message, else a :class:`_RecordedFailureError`."""
        error: Exception
        if self.code is not None:
            error = botocore.exceptions.ClientError(
                {"Error": {"Code": self.code, "Message": self.message}}, self.operation or "AssumeRole",
            )
        else:
            error = _RecordedFailureError(self.error_type, self.message, provider)
        _add_note(error, f"assume_role_chain: recorded by the shared cache; not retried before {_iso(self.retry_at)}")
        return error


class _CachedSource:
    """A source behind a store: key, read, lock, read again, fetch, write.

    The only code that talks to a store. An entry is taken only while the
    policy calls it fresh, so every process sharing the store refreshes at
    the same moment, and the per-key lock makes one of them fetch. A failed
    fetch is recorded under ``key + "#failure"`` with a backoff (5 s doubling
    to 5 min), and until its retry time the others raise the recorded error
    instead of calling the source (negative caching). A store that fails is
    skipped, with a warning, for the rest of the call: it never costs
    credentials.
    """

    def __init__(self, source: _CredentialSource, store: CredentialStore | None, policy: _RefreshPolicy, clock: Clock) -> None:
        self.source = source
        self.store = store
        self._policy = policy
        self._clock = clock

    @property
    def name(self) -> str:
        return self.source.name

    def obtain(self) -> tuple[_Credentials, Outcome]:
        store = self.store
        key = None if store is None else self.source.cache_key()
        if store is None or key is None:
            return self._fetch(), "fetched"
        visit = _StoreVisit(store)
        cached = self._read(visit, key)
        if cached is not None:
            return cached, "cache-hit"
        self._raise_if_failing(visit, key)
        with visit.lock(key):
            cached = self._read(visit, key)  # another process may have fetched meanwhile
            if cached is not None:
                return cached, "cache-hit"
            previous = self._raise_if_failing(visit, key)  # or failed meanwhile
            try:
                credentials = self._fetch()
            except MFATokenError:
                raise  # a local prompt's problem, not the fleet's
            except Exception as error:
                record = _FailureRecord.of(error, previous, self._clock())
                visit.write(key + _FAILURE_SUFFIX, record.to_entry())
                raise
            visit.write(key, credentials.to_cache_entry())
            return credentials, "fetched"

    def _fetch(self) -> _Credentials:
        return _credentials_from_mapping(self.source.fetch(), self._clock())

    def _raise_if_failing(self, visit: _StoreVisit, key: str) -> _FailureRecord | None:
        """Raise the recorded failure while it is in force; else the last record (for its count), if any."""
        if visit.failed:
            return None
        now = self._clock()
        record = _FailureRecord.from_entry(visit.read(key + _FAILURE_SUFFIX), now)
        if record is not None and now < record.retry_at:
            logger.debug("fetching %s failed moments ago (%s): not retried before %s", self.name, record.error_type, _iso(record.retry_at))
            raise record.error(self.name)
        return record

    def _read(self, visit: _StoreVisit, key: str) -> _Credentials | None:
        entry = visit.read(key)
        if entry is None:
            logger.debug("cache miss for %s", self.name)
            return None
        now = self._clock()
        try:
            credentials = _credentials_from_mapping(entry, now)
        except Exception as error:  # a broken entry is a miss, never a failure
            logger.debug("ignoring unusable cache entry for %s: %s", self.name, error)
            return None
        if not self._policy.is_fresh(self._policy.schedule(credentials.issued, credentials.expiry), now):
            logger.debug("cache entry for %s is due for refresh: a miss", self.name)
            return None
        logger.debug("cache hit for %s", self.name)
        return credentials

    def after_fork(self) -> None:
        self.source.after_fork()


# ---------------------------------------------------------------------------
# 5. The botocore contract: every private botocore attribute we touch
# ---------------------------------------------------------------------------
#
# botocore has no public way to hand it credentials that refresh on our
# schedule, nor to reach the botocore session behind a boto3 session. These
# are the private names this module relies on, each used only in this
# section. Each was checked on botocore 1.31.57 (the floor, tested in CI)
# and on the newest release (1.44.x); the aiobotocore hook on aiobotocore 2.25.1.
#
# | private name                                       | why                                                  |
# |----------------------------------------------------|------------------------------------------------------|
# | boto3.Session._session                             | the botocore session behind a boto3 session          |
# | RefreshableCredentials._refresh()                  | botocore calls it before every read: our one hook    |
# | AioRefreshableCredentials._refresh() (aiobotocore) | the asyncio shell's one hook (assume_role_chain_aio) |
# | ._access_key, ._secret_key, ._token,               | what botocore's properties and                       |
# |   ._account_id (1.35+), ._frozen_credentials       |   get_frozen_credentials() return                    |
# | ._expiry_time                                      | botocore's record of the expiry (also read for       |
# |                                                    |   credentials that are not ours, by get_credentials) |
# | ._advisory_refresh_timeout,                        | read by refresh_needed(); kept equal to our windows  |
# |   ._mandatory_refresh_timeout                      |                                                      |
# | ReadOnlyCredentials._fields                        | namedtuple fields: account_id exists since 1.35      |


def _botocore_session_of(session: boto3.Session) -> botocore.session.Session:
    return session._session


def _publish(target: Any, credentials: _Credentials, windows: RefreshWindows) -> None:
    """Make botocore's properties and ``get_frozen_credentials()`` return ``credentials``."""
    target._advisory_refresh_timeout = windows.advisory
    target._mandatory_refresh_timeout = windows.mandatory
    target._access_key = credentials.access_key
    target._secret_key = credentials.secret_key
    target._token = credentials.token
    target._account_id = credentials.account_id  # read by botocore 1.35+, harmless before
    target._expiry_time = credentials.expiry
    target._frozen_credentials = _frozen(credentials)


def _frozen(credentials: _Credentials) -> botocore.credentials.ReadOnlyCredentials:
    fields = [credentials.access_key, credentials.secret_key, credentials.token]
    if len(botocore.credentials.ReadOnlyCredentials._fields) > 3:
        fields.append(credentials.account_id)
    return botocore.credentials.ReadOnlyCredentials(*fields)


def _expiry_of(credentials: botocore.credentials.Credentials) -> dt.datetime | None:
    expiry = getattr(credentials, "_expiry_time", None)
    return expiry if isinstance(expiry, dt.datetime) else None



# ---------------------------------------------------------------------------
# 6. The botocore shell: locks, events, fork handling
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RefreshEvent:
    """What happened when a session needed new credentials.

    ``outcome`` is ``"fetched"`` (the source was called), ``"cache-hit"`` (a
    cache served them) or ``"failed"``. ``source`` names the role or source,
    never a secret. ``duration`` is in seconds.
    """

    source: str
    outcome: Literal["fetched", "cache-hit", "failed"]
    expiry: dt.datetime | None
    duration: float
    error: BaseException | None = None


RefreshListener = Callable[[RefreshEvent], None]
_listeners: list[RefreshListener] = []


def add_refresh_listener(listener: RefreshListener) -> None:
    """Call ``listener(event)`` after every refresh attempt, e.g. for metrics.

    Listeners run in the refreshing thread once the refresh is over (no lock
    held, so a listener may use the session) and must be quick; an exception
    in a listener is logged and otherwise ignored.
    """
    _listeners.append(listener)


def remove_refresh_listener(listener: RefreshListener) -> None:
    """Stop calling a listener added with :func:`add_refresh_listener`."""
    with contextlib.suppress(ValueError):
        _listeners.remove(listener)


def _emit(event: RefreshEvent) -> None:
    for listener in list(_listeners):
        try:
            listener(event)
        except Exception:
            logger.exception("refresh listener %r failed", listener)


class _ForkSafeLock:
    """A ``threading.Lock`` that a forked child gets back unlocked.

    A thread that holds a lock at ``fork`` does not exist in the child, so the
    child would wait for it forever. Every lock of this module is one of
    these, and :func:`_reinitialise_after_fork` gives each a fresh state.
    """

    __slots__ = ("__weakref__", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _fork_safe_locks.add(self)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *_: object) -> None:
        self._lock.release()

    def reset_in_child(self) -> None:
        self._lock = threading.Lock()


_fork_safe_locks: weakref.WeakSet[_ForkSafeLock] = weakref.WeakSet()
_live_engines: weakref.WeakSet[_RefreshingCredentials] = weakref.WeakSet()


class _Generation(NamedTuple):
    """The credentials in use and their schedule: replaced whole, read once."""

    credentials: _Credentials
    schedule: _Schedule


class _RefreshingCredentials(botocore.credentials.DeferredRefreshableCredentials):
    """botocore credentials driven by the refresh policy and a cached source.

    botocore calls ``_refresh()`` before every read of the credentials. This
    shell asks the policy what to do, and owns what the policy leaves out:
    the thread lock (single flight), installing new credentials into
    botocore, events and logs, and fork handling. A fresh read is one
    comparison and takes no lock.
    """

    def __init__(
        self,
        source: _CredentialSource,
        *,
        cache: Any = None,
        clock: Clock | None = None,
        advisory_timeout: float | None = None,
        mandatory_timeout: float | None = None,
    ) -> None:
        self._clock: Clock = clock or _utc_now
        super().__init__(refresh_using=self._unused_refresh_using, method="assume-role-chain", time_fetcher=self._clock)
        self._policy = _RefreshPolicy(advisory_timeout, mandatory_timeout)
        self._source = _CachedSource(source, _as_store(cache), self._policy, self._clock)
        self._generation: _Generation | None = None
        self._backoff = _NO_BACKOFF
        self._last_error: BaseException | None = None
        self._lock = _ForkSafeLock()
        self._warned_windows = False
        self._proactive = False
        _live_engines.add(self)

    @property
    def source(self) -> _CredentialSource:
        """Where the credentials come from (e.g. an AssumeRole or a GetSessionToken source)."""
        return self._source.source

    def __repr__(self) -> str:
        generation = self._generation
        expiry = _iso(generation.credentials.expiry) if generation else "not fetched yet"
        return f"<refreshing credentials for {self._source.name}, expiry {expiry}>"

    def _unused_refresh_using(self) -> JSONDict:  # botocore requires the argument
        raise RuntimeError("assume_role_chain refreshes through _refresh()")

    def _decide(self) -> _Action:
        generation = self._generation
        schedule = generation.schedule if generation is not None else None
        return self._policy.decide(schedule, self._clock(), self._backoff, _monotonic())

    # -- botocore's hook -------------------------------------------------------

    def _refresh(self) -> None:
        if self._proactive:
            _proactive_refresher.ensure_running()  # e.g. in a forked child
        action = self._decide()
        if action is _Action.USE:
            return
        if action is _Action.FAIL:
            assert self._last_error is not None
            raise self._last_error.with_traceback(None)
        events: list[RefreshEvent] = []
        try:
            if action is _Action.REFRESH_IN_BACKGROUND:
                if self._lock.acquire(blocking=False):
                    try:
                        self._refresh_holding_lock(events, waited=False)
                    finally:
                        self._lock.release()
            else:
                with self._lock:
                    self._refresh_holding_lock(events, waited=True)
        finally:
            for event in events:  # with the lock released: a listener may read the session
                _emit(event)

    def _refresh_holding_lock(self, events: list[RefreshEvent], waited: bool) -> None:
        action = self._decide()  # another thread may have refreshed while this one waited
        if action is _Action.USE or (action is _Action.REFRESH_IN_BACKGROUND and waited):
            return
        if action is _Action.FAIL:
            assert self._last_error is not None
            raise self._last_error.with_traceback(None)
        self._attempt(events)

    def _attempt(self, events: list[RefreshEvent]) -> None:
        started = time.perf_counter()
        current = self._generation
        usable = current is not None and self._policy.is_usable(current.schedule, self._clock())
        logger.debug("refreshing credentials for %s", self._source.name)
        try:
            credentials, outcome = self._source.obtain()
            generation = self._checked(credentials)
        except Exception as error:
            events.append(self._record_failure(error, started, usable))
            if usable:
                return
            _add_note(error, f"assume_role_chain: no usable credentials for {self._source.name}")
            raise
        self._install(generation)
        elapsed = time.perf_counter() - started
        logger.debug(
            "credentials for %s %s in %.3f s, expire %s",
            self._source.name, outcome, elapsed, _iso(credentials.expiry),
        )
        events.append(RefreshEvent(self._source.name, outcome, credentials.expiry, elapsed))

    def _checked(self, credentials: _Credentials) -> _Generation:
        schedule = self._policy.schedule(credentials.issued, credentials.expiry)
        now = self._clock()
        if not self._policy.is_usable(schedule, now):
            raise InvalidCredentialsError(
                f"Expiration {_iso(credentials.expiry)} is already past or within "
                f"the safety margin (now {_iso(now)})",
                provider=self._source.name,
            )
        self._warn_if_windows_exceed(credentials)
        return _Generation(credentials, schedule)

    def _record_failure(self, error: Exception, started: float, usable: bool) -> RefreshEvent:
        current = self._generation
        monotonic_now = _monotonic()
        self._backoff = self._policy.after_failure(
            self._backoff, current.schedule if usable and current else None,
            self._clock(), monotonic_now, random.uniform(0.5, 1.0),
        )
        self._last_error = error
        elapsed = time.perf_counter() - started
        if usable and current is not None:
            logger.warning(
                "refreshing credentials for %s failed (%s: %s); still serving the "
                "current ones (expire %s), next attempt in %.1f s",
                self._source.name, type(error).__name__, error,
                _iso(current.credentials.expiry), self._backoff.retry_at - monotonic_now,
            )
        else:
            logger.warning(
                "fetching credentials for %s failed after %.3f s (%s: %s); no usable "
                "credentials remain",
                self._source.name, elapsed, type(error).__name__, error,
            )
        return RefreshEvent(self._source.name, "failed", None, elapsed, error)

    def _warn_if_windows_exceed(self, credentials: _Credentials) -> None:
        fixed = self._policy.windows_exceed_lifetime(credentials.issued, credentials.expiry)
        if fixed is not None and not self._warned_windows:
            self._warned_windows = True
            message = (
                f"refresh window of {fixed:g} s for {self._source.name} is not shorter than the "
                f"credentials' lifetime ({credentials.lifetime:.0f} s): every use will refresh"
            )
            logger.warning(message)
            warnings.warn(message, RefreshWindowWarning, stacklevel=2)

    def _install(self, generation: _Generation) -> None:
        _publish(self, generation.credentials, generation.schedule.windows)
        self._generation = generation  # one assignment: readers see one generation or the next
        self._backoff, self._last_error = _NO_BACKOFF, None

    def current_generation(self) -> _Credentials:
        """Refresh if due, then the generation in use: keys and expiry of one fetch."""
        self._refresh()
        generation = self._generation
        if generation is None:  # pragma: no cover - _refresh() raises instead
            raise botocore.exceptions.NoCredentialsError()
        return generation.credentials

    # -- proactive refresh ----------------------------------------------------

    def start_proactive_refresh(self) -> None:
        """Fetch now (so errors surface at once), then refresh in the background."""
        self.get_frozen_credentials()
        self._proactive = True
        _proactive_refresher.add(self)

    def seconds_until_due(self) -> float:
        """Seconds until the advisory window opens (or the backoff ends)."""
        generation = self._generation
        schedule = generation.schedule if generation is not None else None
        return self._policy.seconds_until_due(schedule, self._clock(), self._backoff, _monotonic())

    def after_fork_in_child(self) -> None:
        """Drop what the parent's connections were (our locks are reset already).

        botocore's own ``_refresh_lock`` is used only by the ``_refresh()``
        this class replaces, so it needs no reset.
        """
        self._source.after_fork()


def _add_note(error: BaseException, note: str) -> None:
    """Say which source failed, on Python 3.11+, without changing the error's type."""
    add_note = getattr(error, "add_note", None)
    if add_note is not None and note not in getattr(error, "__notes__", ()):
        add_note(note)


class _ProactiveRefresher:
    """One daemon thread that refreshes eager sessions before a call must wait.

    It wakes at the earliest advisory moment of the sessions it serves, and at
    least every second (so a clock that jumps, as in tests, is noticed).
    """

    _POLL_SECONDS = 1.0

    def __init__(self) -> None:
        self._engines: weakref.WeakSet[_RefreshingCredentials] = weakref.WeakSet()
        self._lock = _ForkSafeLock()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, engine: _RefreshingCredentials) -> None:
        with self._lock:
            self._engines.add(engine)
        self.ensure_running()
        self._wakeup.set()

    def ensure_running(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="assume-role-chain-refresh", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            wait = self._serve_all()  # holds no reference while waiting: sessions can die
            self._wakeup.wait(max(wait, 0.05))
            self._wakeup.clear()

    def _serve_all(self) -> float:
        with self._lock:
            engines = list(self._engines)
        wait = self._POLL_SECONDS
        for engine in engines:
            wait = min(wait, self._serve(engine))
        return wait

    @staticmethod
    def _serve(engine: _RefreshingCredentials) -> float:
        try:
            if engine.seconds_until_due() <= 0:
                engine.get_frozen_credentials()  # refreshes; failures are logged by the engine
            return engine.seconds_until_due()
        except Exception:
            return _ProactiveRefresher._POLL_SECONDS

    def after_fork_in_child(self) -> None:
        self._wakeup = threading.Event()
        self._thread = None  # restarted by the next credential read


_proactive_refresher = _ProactiveRefresher()


def _reinitialise_after_fork() -> None:
    """In a forked child: every lock free, no entry lock inherited, no refresher thread yet."""
    for lock in list(_fork_safe_locks):
        lock.reset_in_child()
    _close_inherited_lock_files()
    _proactive_refresher.after_fork_in_child()
    for engine in list(_live_engines):
        engine.after_fork_in_child()


# ---------------------------------------------------------------------------
# 7. The JSON file cache
# ---------------------------------------------------------------------------

_MAX_ENTRY_BYTES = 64 * 1024
_LOCK_TIMEOUT = 30.0
_STALE_TEMP_SECONDS = 600.0
_TEMP_PREFIX = ".tmp-"
_LOCK_FOLDER = ".locks"
_held_lock_files: set[int] = set()  # descriptors of the entry locks held now


def _close_inherited_lock_files() -> None:
    """In a forked child: close the entry-lock descriptors that the parent's threads hold.

    A descriptor inherited across ``fork`` shares the parent's ``flock``: left
    open, it would keep the entry locked for the child's whole life. Closing
    the child's copy leaves the parent's lock as it is.
    """
    for fd in list(_held_lock_files):
        with contextlib.suppress(OSError):
            os.close(fd)
    _held_lock_files.clear()


class UnsafeCacheError(PermissionError):
    """The cache folder cannot be trusted (a symlink, another owner, or writable by others)."""


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _trust_problem(info: os.stat_result) -> str | None:
    """Why a cache folder or file with this ``lstat`` cannot be trusted, if it cannot."""
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return f"is owned by uid {info.st_uid}, not by this process (uid {os.getuid()})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


class JSONFileCache(_CacheMapping):
    """A dict-like credential cache of JSON files, safe across threads and processes.

    * Each key is hashed to a file name (no path traversal); each entry keeps
      only the credential fields and ISO 8601 UTC times.
    * Writes are atomic (temporary file in the folder, fsync, ``os.replace``).
    * The folder is created 0700, files are 0600. It holds only the entries
      (``*.json``); lock files are in its hidden subfolder ``.locks``.
    * An empty, torn, corrupt or wrong-shaped file reads as a miss.
    * Nothing untrusted is used: a folder that is a symlink, belongs to another
      user or is writable by group or others is refused (reads miss, writes
      raise :class:`UnsafeCacheError`); such a file is a miss. The folder is
      checked before every read, write and lock. Each case is logged as a
      warning.
    * A folder that cannot be created or written (read-only file system, no
      permission, no space left) is logged as one warning; writes raise the
      ``OSError``, and the refresh engine goes on without the cache.
    * :meth:`lock` is a per-entry file lock with bounded waits; the refresh
      engine takes it so that processes sharing the folder fetch once.
    """

    def __init__(self, dir_path: str | os.PathLike[str] | None = None, *, lock_timeout: float = _LOCK_TIMEOUT) -> None:
        path = dir_path if dir_path is not None else os.path.join("~", ".aws", "assume-role-chain", "cache")
        self.dir_path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        self.lock_timeout = lock_timeout
        self._temp_files_checked = False
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"JSONFileCache({self.dir_path!r})"

    # -- paths and trust ---------------------------------------------------------

    @staticmethod
    def _file_stem(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> str:
        if not isinstance(key, str):
            raise TypeError(f"cache keys are strings, not {type(key).__name__}")
        return os.path.join(self.dir_path, self._file_stem(key) + ".json")

    def _lock_path(self, key: str) -> str:
        return os.path.join(self.dir_path, _LOCK_FOLDER, self._file_stem(key) + ".lock")

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning("%s", message)

    def _warn_unwritable(self, error: OSError) -> None:
        self._warn_once(f"credential cache folder {self.dir_path} cannot be written ({_reason(error)}): not used")

    def _folder_problem(self) -> str | None:
        try:
            info = os.lstat(self.dir_path)
        except (FileNotFoundError, NotADirectoryError):
            return None  # not there (yet): reads miss, the first write creates it
        except OSError as error:
            return f"cannot be examined ({error.strerror})"
        if not stat.S_ISDIR(info.st_mode) and not stat.S_ISLNK(info.st_mode):
            return "is not a folder"
        return _trust_problem(info)

    def _trusted_folder(self) -> bool:
        problem = self._folder_problem()
        if problem is not None:
            self._warn_once(f"credential cache folder {self.dir_path} {problem}: not used")
        return problem is None

    def _ensure_folder(self) -> None:
        """Create the folder if needed and check that it can be trusted (before every write and lock)."""
        if not os.path.lexists(self.dir_path):
            try:
                os.makedirs(self.dir_path, mode=0o700, exist_ok=True)
            except OSError as error:
                self._warn_once(f"credential cache folder {self.dir_path} cannot be created ({_reason(error)}): not used")
                raise
        problem = self._folder_problem()
        if problem is not None:
            self._warn_once(f"credential cache folder {self.dir_path} {problem}: not used")
            raise UnsafeCacheError(f"credential cache folder {self.dir_path} {problem}")
        if not self._temp_files_checked:
            self._remove_stale_temp_files()
            self._temp_files_checked = True

    def _remove_stale_temp_files(self) -> None:
        cutoff = time.time() - _STALE_TEMP_SECONDS
        with contextlib.suppress(OSError):
            for name in os.listdir(self.dir_path):
                if name.startswith(_TEMP_PREFIX):
                    path = os.path.join(self.dir_path, name)
                    with contextlib.suppress(OSError):
                        if os.lstat(path).st_mtime < cutoff:
                            os.unlink(path)

    # -- mapping -----------------------------------------------------------------

    def __getitem__(self, key: str) -> JSONDict:
        entry = self._read(self._path(key))
        if entry is None or entry.get("Key") != key:
            raise KeyError(key)
        return {name: value for name, value in entry.items() if name != "Key"}

    def __setitem__(self, key: str, value: Mapping[str, Any]) -> None:
        if not isinstance(value, Mapping):
            raise TypeError("cache entries are mappings")
        entry = {"Key": key, **{name: _jsonable(item) for name, item in value.items()}}
        data = json.dumps(entry, sort_keys=True).encode()
        self._ensure_folder()
        try:
            self._write_atomically(self._path(key), data)
        except OSError as error:
            self._warn_unwritable(error)
            raise

    def __delitem__(self, key: str) -> None:
        if not self._trusted_folder():
            raise UnsafeCacheError(f"credential cache folder {self.dir_path} {self._folder_problem()}")
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        if not self._trusted_folder():
            return
        try:
            names = sorted(os.listdir(self.dir_path))
        except OSError:
            return
        for name in names:
            if name.endswith(".json") and not name.startswith(_TEMP_PREFIX):
                entry = self._read(os.path.join(self.dir_path, name))
                key = entry.get("Key") if entry is not None else None
                if isinstance(key, str) and self._file_stem(key) + ".json" == name:  # as cache[key] finds it
                    yield key

    # -- files -------------------------------------------------------------------

    def _read(self, path: str) -> JSONDict | None:
        """The JSON object in ``path``, or ``None`` for anything missing, untrusted or broken."""
        if not self._trusted_folder():
            return None
        raw = self._read_trusted_bytes(path)
        if raw is None or len(raw) > _MAX_ENTRY_BYTES:
            return None
        try:
            entry = json.loads(raw)
        except (ValueError, RecursionError):
            return None
        return entry if isinstance(entry, dict) else None

    def _read_trusted_bytes(self, path: str) -> bytes | None:
        # O_NONBLOCK: opening a FIFO planted as an entry must not hang.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            self._warn_once(f"credential cache file {path} cannot be opened ({error.strerror}): treated as a miss")
            return None
        try:
            info = os.fstat(fd)
            problem = "is not a regular file" if not stat.S_ISREG(info.st_mode) else _trust_problem(info)
            if problem is not None:
                self._warn_once(f"credential cache file {path} {problem}: treated as a miss")
                return None
            return os.read(fd, _MAX_ENTRY_BYTES + 1)
        except OSError:
            return None
        finally:
            os.close(fd)

    def _write_atomically(self, path: str, data: bytes) -> None:
        fd, temp_path = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=self.dir_path)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_path, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_path)
            raise

    # -- locking (with read and write from _CacheMapping: a CredentialStore) ------

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[bool]:
        """Hold the per-entry file lock; yields whether it was acquired.

        Waits at most ``lock_timeout`` seconds, then goes on without the lock
        (a warning is logged): a stuck or killed process never blocks others
        for long, and a process that dies releases its lock with its files.
        """
        fd = self._open_lock_file(key) if fcntl is not None else None
        if fd is None:
            yield False
            return
        _held_lock_files.add(fd)
        opened_by = os.getpid()
        try:
            acquired = _flock_with_deadline(fd, self.lock_timeout)
            if not acquired:
                logger.warning("cache lock for an entry in %s not acquired within %.0f s; going on without it", self.dir_path, self.lock_timeout)
            yield acquired
        finally:
            if os.getpid() == opened_by:  # a forked child closed its copy at fork
                _held_lock_files.discard(fd)
                os.close(fd)  # closing releases the lock

    def _open_lock_file(self, key: str) -> int | None:
        """A descriptor of the entry's lock file, or ``None`` (warned) if there can be none."""
        path = self._lock_path(key)
        try:
            self._ensure_folder()
        except OSError:
            return None  # warned
        if not self._usable_lock_folder(os.path.dirname(path)):
            return None
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            return os.open(path, flags, 0o600)
        except OSError as error:
            if error.errno == errno.ELOOP:  # a symlink planted in place of the lock file
                self._warn_once(f"credential cache lock {path} cannot be opened ({_reason(error)}): going on without it")
            else:
                self._warn_unwritable(error)
            return None

    def _usable_lock_folder(self, folder: str) -> bool:
        """Whether the hidden lock subfolder exists (created 0700 if missing) and can be trusted."""
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, 0o700)
            info = os.lstat(folder)
        except OSError as error:
            self._warn_unwritable(error)
            return False
        is_folder = stat.S_ISDIR(info.st_mode) or stat.S_ISLNK(info.st_mode)
        problem = _trust_problem(info) if is_folder else "is not a folder"
        if problem is not None:
            self._warn_once(f"credential cache lock folder {folder} {problem}: going on without locks")
        return problem is None


def _flock_with_deadline(fd: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
        except OSError:
            return False  # e.g. a file system without locks: degrade


def _jsonable(value: Any) -> Any:
    return _iso(value) if isinstance(value, dt.datetime) else value


# ---------------------------------------------------------------------------
# 8. Fleet caches: Redis/Valkey and DynamoDB
# ---------------------------------------------------------------------------

_POLL_FIRST = 0.02
_POLL_CAP = 0.25
_OPERATION_TIMEOUT = 1.0  # seconds a fleet store may take per operation before it counts as down
_SEAL_CONTEXT = b"assume-role-chain fleet entry v1\x00"
_REDIS_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_DYNAMODB_TTL_ATTRIBUTE = "expires_at"
_TABLE_NAME_RE = _LazyPattern(r"[A-Za-z0-9_.-]{3,255}")


class _StoreUnavailable(ConnectionError):
    """A fleet store failed to answer; it has logged the outage (one warning per outage)."""


def _check_fleet_options(problems: _Problems, encryption_key: Any, lock_timeout: Any, operation_timeout: Any) -> None:
    if encryption_key is not None:
        if not isinstance(encryption_key, (bytes, bytearray, memoryview)):
            problems.add("encryption_key", f"must be None or 32 bytes, not {type(encryption_key).__name__}")
        elif len(bytes(encryption_key)) != 32:
            problems.add("encryption_key", f"must be 32 bytes (AES-256, e.g. secrets.token_bytes(32)), got {len(bytes(encryption_key))}")
    for name, value in (("lock_timeout", lock_timeout), ("operation_timeout", operation_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            problems.add(name, f"must be a positive number of seconds, not {value!r}")


def _aes_gcm(key: bytes) -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as error:
        raise ImportError("encryption_key needs the 'cryptography' package: pip install 'assume-role-chain[fleet]'") from error
    return AESGCM(key)


class _FleetCache(_CacheMapping):
    """What :class:`RedisCache` and :class:`DynamoDBCache` share.

    Entries are stored as an envelope ``{"Key", "ExpiresAt", "Entry" | "Sealed"}``
    under the SHA-256 of their key; the store drops them at ``ExpiresAt`` (the
    credentials' expiry) and readers check it too. With an encryption key the
    entry is sealed with AES-256-GCM, the key and expiry being associated data.
    Each subclass provides the six store operations below.
    """

    def __init__(self, *, encryption_key: bytes | None, lock_timeout: float, operation_timeout: float) -> None:
        self.lock_timeout: float = float(lock_timeout)
        self.operation_timeout: float = float(operation_timeout)
        self._aead = None if encryption_key is None else _aes_gcm(bytes(encryption_key))
        self._down = False
        self._state_lock = threading.Lock()
        self._warned: set[str] = set()

    # -- store operations (subclasses) -------------------------------------------

    def _load(self, entry_id: str) -> str | None:
        raise NotImplementedError

    def _save(self, entry_id: str, text: str, expires_at: float) -> None:
        raise NotImplementedError

    def _remove(self, entry_id: str) -> bool:
        raise NotImplementedError

    def _scan(self) -> Iterator[tuple[str, str]]:
        """``(entry id, stored text)`` of every entry."""
        raise NotImplementedError

    def _try_lock(self, entry_id: str, token: str, lease: float) -> bool:
        raise NotImplementedError

    def _unlock(self, entry_id: str, token: str) -> None:
        raise NotImplementedError

    # -- outages -----------------------------------------------------------------

    def _call(self, action: str, operation: Callable[..., Any], *args: Any) -> Any:
        """Run one store operation; a failure is an outage (one warning each) raised as ConnectionError."""
        try:
            result = operation(*args)
        except Exception as error:
            with self._state_lock:
                starting, self._down = not self._down, True
            reason = f"{type(error).__name__}: {str(error)[:200]}"
            if starting:
                logger.warning("credential store %r failed to %s (%s); going on without it until it answers again", self, action, reason)
            else:
                logger.debug("credential store %r still failing (%s)", self, reason)
            raise _StoreUnavailable(f"{self!r} failed to {action} ({type(error).__name__})") from error
        if self._down:
            with self._state_lock:
                recovered, self._down = self._down, False
            if recovered:
                logger.info("credential store %r answers again", self)
        return result

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning("%s", message)

    # -- envelopes ---------------------------------------------------------------

    @staticmethod
    def _entry_id(key: str) -> str:
        if not isinstance(key, str):
            raise TypeError(f"cache keys are strings, not {type(key).__name__}")
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    @staticmethod
    def _associated_data(key: str, expires_ms: int) -> bytes:
        return _SEAL_CONTEXT + json.dumps([key, expires_ms]).encode()

    def _seal(self, key: str, entry: JSONDict, expires_ms: int) -> str:
        envelope: JSONDict = {"Key": key, "ExpiresAt": expires_ms}
        if self._aead is None:
            envelope["Entry"] = entry
        else:
            nonce = os.urandom(12)
            sealed = self._aead.encrypt(nonce, json.dumps(entry).encode(), self._associated_data(key, expires_ms))
            envelope["Sealed"] = base64.b64encode(nonce + sealed).decode("ascii")
        return json.dumps(envelope, sort_keys=True)

    def _open(self, key: str, text: str) -> JSONDict | None:
        """The entry stored for ``key``, or ``None`` if it has expired or does not open (warned once)."""
        try:
            envelope = json.loads(text)
            expires_ms = envelope["ExpiresAt"]
            if envelope["Key"] != key or not isinstance(expires_ms, int):
                raise ValueError("not this key's envelope")
        except (ValueError, TypeError, KeyError, RecursionError):
            self._warn_once(f"credential store {self!r} holds an unreadable entry: treated as a miss")
            return None
        if expires_ms <= time.time() * 1000:
            return None
        entry = self._unseal(key, envelope, expires_ms)
        if not isinstance(entry, dict):
            return None
        return entry

    def _unseal(self, key: str, envelope: JSONDict, expires_ms: int) -> Any:
        if self._aead is None:
            if "Entry" not in envelope:
                self._warn_once(f"credential store {self!r} holds encrypted entries but has no encryption_key: treated as misses")
            return envelope.get("Entry")
        try:
            raw = base64.b64decode(envelope["Sealed"], validate=True)
            opened = self._aead.decrypt(raw[:12], raw[12:], self._associated_data(key, expires_ms))
            return json.loads(opened)
        except Exception:  # tampered, another key, moved, garbage: all the same to the caller
            self._warn_once(f"credential store {self!r} holds an entry that does not open with this encryption_key: treated as a miss")
            return None

    # -- mapping -----------------------------------------------------------------

    def __getitem__(self, key: str) -> JSONDict:
        text = self._call("read", self._load, self._entry_id(key))
        entry = None if text is None else self._open(key, text)
        if entry is None:
            raise KeyError(key)
        return entry

    def __setitem__(self, key: str, value: Mapping[str, Any]) -> None:
        if not isinstance(value, Mapping) or "Expiration" not in value:
            raise TypeError("fleet cache entries are mappings with an Expiration (they expire in the store)")
        entry = {name: _jsonable(item) for name, item in value.items()}
        expires_ms = math.floor(_to_utc(value["Expiration"]).timestamp() * 1000)
        entry_id = self._entry_id(key)
        if expires_ms <= time.time() * 1000:
            self._call("delete", self._remove, entry_id)  # nothing to keep
            return
        self._call("write", self._save, entry_id, self._seal(key, entry, expires_ms), expires_ms / 1000)

    def __delitem__(self, key: str) -> None:
        if not self._call("delete", self._remove, self._entry_id(key)):
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        for entry_id, text in self._call("list", lambda: list(self._scan())):
            with contextlib.suppress(ValueError, TypeError, RecursionError):
                key = json.loads(text).get("Key")
                if isinstance(key, str) and self._entry_id(key) == entry_id and self._open(key, text) is not None:
                    yield key

    # -- locking -----------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[bool]:
        """Hold the per-entry lock of the whole fleet; yields whether it was acquired.

        The lock carries a random owner token and a lease of ``lock_timeout``
        seconds: a holder that dies blocks the others at most that long, and
        release deletes the lock only while it is still ours. Waiters poll with
        jitter and give up (with a warning) after ``lock_timeout``.
        """
        entry_id = self._entry_id(key)
        token = secrets.token_hex(16)
        acquired = self._acquire(entry_id, token)
        try:
            yield acquired
        finally:
            if acquired and not self._down:  # after a failure no more operations: the lease ends it
                with contextlib.suppress(_StoreUnavailable):
                    self._call("unlock", self._unlock, entry_id, token)

    def _acquire(self, entry_id: str, token: str) -> bool:
        deadline = time.monotonic() + self.lock_timeout
        pause = _POLL_FIRST
        while not self._call("lock", self._try_lock, entry_id, token, self.lock_timeout):
            left = deadline - time.monotonic()
            if left <= 0:
                logger.warning("credential store lock for an entry in %r not acquired within %.0f s; going on without it", self, self.lock_timeout)
                return False
            time.sleep(min(left, random.uniform(pause / 2, pause)))
            pause = min(pause * 1.5, _POLL_CAP)
        return True


class RedisCache(_FleetCache):
    """A credential cache shared by a fleet, on Redis or Valkey (``redis-py`` client).

    ``client`` is a ``redis.Redis`` (or ``valkey.Valkey``) you made; its own
    ``socket_timeout``, ``socket_connect_timeout`` and ``retry`` settings bound
    each operation. :meth:`from_url` makes one whose settings follow
    ``operation_timeout``. Entries live under ``prefix + "entry:" + sha256(key)``
    with a TTL at the credentials' expiry; locks under ``prefix + "lock:" + ...``.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "assume-role-chain:",
        encryption_key: bytes | None = None,
        lock_timeout: float = _LOCK_TIMEOUT,
        operation_timeout: float = _OPERATION_TIMEOUT,
    ) -> None:
        problems = _Problems()
        if not all(callable(getattr(client, name, None)) for name in ("get", "set", "delete", "eval", "scan_iter")):
            problems.add("client", f"must be a redis.Redis or valkey.Valkey client, not {type(client).__name__}")
        if not isinstance(prefix, str) or not prefix:
            problems.add("prefix", "must be a non-empty string")
        _check_fleet_options(problems, encryption_key, lock_timeout, operation_timeout)
        problems.raise_if_any()
        super().__init__(encryption_key=encryption_key, lock_timeout=lock_timeout, operation_timeout=operation_timeout)
        self.client = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, **keywords: Any) -> RedisCache:
        """Connect to ``redis://``, ``rediss://`` or ``unix://`` ``url`` (needs the ``redis`` package).

        ``keywords`` are the class's (``prefix``, ``encryption_key``,
        ``lock_timeout``, ``operation_timeout``). The client's socket and connect
        timeouts are ``operation_timeout`` and it does not retry: an unreachable
        store costs at most that long per operation. Nothing connects before the
        first operation, so every argument is checked first.
        """
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            problems = _Problems()
            problems.add("url", "must be a redis://, rediss:// or unix:// URL")
            problems.raise_if_any()
        try:
            import redis
            import redis.backoff
            import redis.retry
        except ImportError as error:
            raise ImportError("RedisCache.from_url needs the 'redis' package: pip install 'assume-role-chain[fleet]'") from error
        timeout = keywords.get("operation_timeout", _OPERATION_TIMEOUT)
        client = redis.Redis.from_url(  # checks nothing and connects on first use: the class checks the values
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        )
        return cls(client, **keywords)

    def __repr__(self) -> str:
        settings = getattr(getattr(self.client, "connection_pool", None), "connection_kwargs", None) or {}
        where = settings.get("path") or f"{settings.get('host', '?')}:{settings.get('port', '?')}/{settings.get('db', 0)}"
        return f"RedisCache({where}, prefix={self.prefix!r}{', encrypted' if self._aead is not None else ''})"

    def _key(self, kind: Literal["entry", "lock"], entry_id: str) -> str:
        return f"{self.prefix}{kind}:{entry_id}"

    def _load(self, entry_id: str) -> str | None:
        value = self.client.get(self._key("entry", entry_id))
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

    def _save(self, entry_id: str, text: str, expires_at: float) -> None:
        self.client.set(self._key("entry", entry_id), text, pxat=math.floor(expires_at * 1000))

    def _remove(self, entry_id: str) -> bool:
        return bool(self.client.delete(self._key("entry", entry_id)))

    def _scan(self) -> Iterator[tuple[str, str]]:
        start = self._key("entry", "")
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", start) + "*"
        for name in self.client.scan_iter(match=pattern, count=200):
            name = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
            text = self._load(name[len(start):])
            if text is not None:
                yield name[len(start):], text

    def _try_lock(self, entry_id: str, token: str, lease: float) -> bool:
        return bool(self.client.set(self._key("lock", entry_id), token, nx=True, px=max(1, math.ceil(lease * 1000))))

    def _unlock(self, entry_id: str, token: str) -> None:
        self.client.eval(_REDIS_RELEASE, 1, self._key("lock", entry_id), token)


class DynamoDBCache(_FleetCache):
    """A credential cache shared by a fleet, in a DynamoDB table (see :meth:`create_table`).

    The table has a string partition key ``pk`` and the time-to-live attribute
    ``expires_at``. Entries are items ``{pk: sha256(key), entry, expires_at}``;
    locks are items ``{pk: "lock#" + sha256(key), lock_owner, lease_until}``.
    The client's connect and read timeouts are ``operation_timeout`` and it
    makes at most two attempts.
    """

    def __init__(
        self,
        table_name: str,
        *,
        session: boto3.Session | None = None,
        encryption_key: bytes | None = None,
        lock_timeout: float = _LOCK_TIMEOUT,
        operation_timeout: float = _OPERATION_TIMEOUT,
    ) -> None:
        problems = _Problems()
        _check_table_name(problems, table_name)
        if session is not None:
            _check_session(problems, session)
        _check_fleet_options(problems, encryption_key, lock_timeout, operation_timeout)
        problems.raise_if_any()
        super().__init__(encryption_key=encryption_key, lock_timeout=lock_timeout, operation_timeout=operation_timeout)
        self.table_name = table_name
        self._session = session if session is not None else boto3.Session()
        self._client: Any = None
        self._client_pid = 0
        self._client_lock = threading.Lock()

    @staticmethod
    def create_table(table_name: str, *, session: boto3.Session | None = None) -> None:
        """Create a table for :class:`DynamoDBCache` (on-demand, TTL on) and wait until it is active."""
        problems = _Problems()
        _check_table_name(problems, table_name)
        if session is not None:
            _check_session(problems, session)
        problems.raise_if_any()
        client = (session if session is not None else boto3.Session()).client("dynamodb")
        client.create_table(
            TableName=table_name,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 2, "MaxAttempts": 150})
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": _DYNAMODB_TTL_ATTRIBUTE},
        )

    def __repr__(self) -> str:
        return f"DynamoDBCache({self.table_name!r}{', encrypted' if self._aead is not None else ''})"

    def _dynamodb(self) -> Any:
        with self._client_lock:
            if self._client is None or self._client_pid != os.getpid():  # a client's sockets stay with its process
                config = botocore.config.Config(
                    connect_timeout=self.operation_timeout,
                    read_timeout=self.operation_timeout,
                    retries={"total_max_attempts": 2, "mode": "standard"},
                )
                self._client = self._session.client("dynamodb", config=config)
                self._client_pid = os.getpid()
            return self._client

    def _load(self, entry_id: str) -> str | None:
        item = self._dynamodb().get_item(TableName=self.table_name, Key={"pk": {"S": entry_id}}, ConsistentRead=True).get("Item", {})
        value = item.get("entry", {}).get("S")
        return value if isinstance(value, str) else None

    def _save(self, entry_id: str, text: str, expires_at: float) -> None:
        item = {"pk": {"S": entry_id}, "entry": {"S": text}, _DYNAMODB_TTL_ATTRIBUTE: {"N": str(math.ceil(expires_at))}}
        self._dynamodb().put_item(TableName=self.table_name, Item=item)

    def _remove(self, entry_id: str) -> bool:
        answer = self._dynamodb().delete_item(TableName=self.table_name, Key={"pk": {"S": entry_id}}, ReturnValues="ALL_OLD")
        return "Attributes" in answer

    def _scan(self) -> Iterator[tuple[str, str]]:
        pages = self._dynamodb().get_paginator("scan").paginate(TableName=self.table_name, ConsistentRead=True)
        for page in pages:
            for item in page.get("Items", []):
                text = item.get("entry", {}).get("S")
                if isinstance(text, str):
                    yield item["pk"]["S"], text

    def _try_lock(self, entry_id: str, token: str, lease: float) -> bool:
        now_ms = math.floor(time.time() * 1000)
        until_ms = now_ms + max(1, math.ceil(lease * 1000))
        try:
            self._dynamodb().put_item(
                TableName=self.table_name,
                Item={
                    "pk": {"S": f"lock#{entry_id}"},
                    "lock_owner": {"S": token},
                    "lease_until": {"N": str(until_ms)},
                    _DYNAMODB_TTL_ATTRIBUTE: {"N": str(until_ms // 1000 + 60)},
                },
                ConditionExpression="attribute_not_exists(pk) OR lease_until < :now",
                ExpressionAttributeValues={":now": {"N": str(now_ms)}},
            )
        except botocore.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _unlock(self, entry_id: str, token: str) -> None:
        try:
            self._dynamodb().delete_item(
                TableName=self.table_name,
                Key={"pk": {"S": f"lock#{entry_id}"}},
                ConditionExpression="lock_owner = :token",
                ExpressionAttributeValues={":token": {"S": token}},
            )
        except botocore.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise  # a lock that is no longer ours is someone else's: leave it


def _check_table_name(problems: _Problems, table_name: Any) -> None:
    if not isinstance(table_name, str) or not _TABLE_NAME_RE.fullmatch(table_name):
        problems.add("table_name", "must be a DynamoDB table name (3 to 255 letters, digits, '_', '.', '-')")


# ---------------------------------------------------------------------------
# 9. Building child sessions
# ---------------------------------------------------------------------------


class _ParentConfig(botocore.configprovider.BaseProvider):
    """A config value read from the parent session each time it is needed."""

    def __init__(self, parent: botocore.session.Session, name: str) -> None:
        self._parent = parent
        self._name = name

    def provide(self) -> Any:
        return self._parent.get_config_variable(self._name)

    # botocore copies and deep-copies config providers for each client; the
    # parent must stay shared by reference, never copied.
    def __copy__(self) -> _ParentConfig:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _ParentConfig:
        return self


_LINKED_CONFIG = (*botocore.configprovider.BOTOCORE_DEFAUT_SESSION_VARIABLES, "s3", "proxies_config")


def _link_config(child: botocore.session.Session, parent: botocore.session.Session, link_region: bool) -> None:
    """Make the child read every setting it does not set itself from the parent."""
    store = child.get_component("config_store")
    for name in _LINKED_CONFIG:
        if name == "region" and not link_region:
            continue
        store.set_config_provider(
            name,
            botocore.configprovider.ChainProvider(
                [botocore.configprovider.InstanceVarProvider(name, child), _ParentConfig(parent, name)]
            ),
        )


class _FixedProvider(botocore.credentials.CredentialProvider):
    """Hands botocore our credentials object through its public resolver API."""

    METHOD = "assume-role-chain"
    CANONICAL_NAME = "custom-assume-role-chain"

    def __init__(self, credentials: botocore.credentials.Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> botocore.credentials.Credentials:
        return self._credentials


_loader_lock = _ForkSafeLock()
_standalone_loaders: dict[str | None, botocore.loaders.Loader] = {}


def _standalone_loader() -> botocore.loaders.Loader:
    """One data loader shared by sessions that have no parent."""
    data_path = os.environ.get("AWS_DATA_PATH")
    with _loader_lock:
        loader = _standalone_loaders.get(data_path)
        if loader is None:
            loader = botocore.loaders.create_loader(data_path)
            _standalone_loaders[data_path] = loader
        return loader


_template_emitter: botocore.hooks.HierarchicalEmitter | None = None


def _fresh_botocore_session() -> botocore.session.Session:
    """A new botocore session, built in a tenth of the usual time.

    Most of ``botocore.session.Session()``'s cost is registering botocore's
    ~130 built-in event handlers (each one inspected). They are the same for
    every session, so they are registered once into a template emitter and
    each child gets a copy (botocore copies emitters the same way for every
    client it creates). The copy is the plain emitter, not the session's
    aliasing wrapper around it, so that events pass one wrapper, not two.
    """
    global _template_emitter
    with _loader_lock:
        if _template_emitter is None:
            template = botocore.hooks.HierarchicalEmitter()
            botocore.session.Session(event_hooks=template)  # registers the built-in handlers into it
            _template_emitter = template
        emitter = copy.copy(_template_emitter)
    return botocore.session.Session(event_hooks=emitter, include_builtin_handlers=False)


def _dedupe_search_paths(loader: botocore.loaders.Loader) -> None:
    # boto3.Session() appends boto3's data folder to the loader it is given;
    # with a shared loader that list would grow by one per session.
    paths = loader.search_paths
    unique = list(dict.fromkeys(paths))
    if len(unique) != len(paths):
        paths[:] = unique


def _new_session(
    credentials: _RefreshingCredentials,
    parent: boto3.Session | None,
    region_name: str | bool | None,
) -> boto3.Session:
    child = _fresh_botocore_session()
    if parent is not None:
        parent_core = _botocore_session_of(parent)
        _link_config(child, parent_core, link_region=region_name is None)
        loader = parent_core.get_component("data_loader")
        region: str | bool | None = parent.region_name if region_name is True else region_name
    else:
        loader = _standalone_loader()
        region = region_name
    child.register_component("data_loader", loader)
    child.register_component(
        "credential_provider", botocore.credentials.CredentialResolver([_FixedProvider(credentials)])
    )
    with _loader_lock:
        session = boto3.Session(
            botocore_session=child, region_name=region if isinstance(region, str) else None
        )
        _dedupe_search_paths(loader)
    return session


class _SessionOptions(NamedTuple):
    """The settings every refreshing session shares, whatever its source (held once).

    ``region_name``: ``None`` follows the parent's region, ``True`` copies it
    now, ``False`` leaves the child's implicit region, a string sets it.
    """

    region_name: str | bool | None = None
    cache: Any = None
    clock: Clock | None = None
    advisory_timeout: float | None = None
    mandatory_timeout: float | None = None
    eager: bool = False

    def check(self, problems: _Problems, duration: Any = None) -> None:
        """Note every problem of these settings (``duration``: the credentials' lifetime if known)."""
        _check_region(problems, self.region_name)
        _check_cache(problems, self.cache)
        _check_windows(problems, self.advisory_timeout, self.mandatory_timeout, duration)
        _check_clock(problems, self.clock)


def _build_session(source: _CredentialSource, options: _SessionOptions, parent: boto3.Session | None) -> boto3.Session:
    """The one way a refreshing session is made, for every source: engine, child session, eager start."""
    credentials = _RefreshingCredentials(
        source, cache=options.cache, clock=options.clock,
        advisory_timeout=options.advisory_timeout, mandatory_timeout=options.mandatory_timeout,
    )
    session = _new_session(credentials, parent, options.region_name)
    if parent is not None:
        session.assume_role_parent_session = parent  # type: ignore[attr-defined]
    if options.eager:
        credentials.start_proactive_refresh()
    return session


# ---------------------------------------------------------------------------
# 10. Credential sources
# ---------------------------------------------------------------------------

_REFUSED_COMMAND_OPTIONS = ("shell", "executable", "preexec_fn", "stdout", "stderr")
_MFA_COMMAND_TIMEOUT = 30.0
_SIX_DIGITS = _LazyPattern(r"(?<![0-9])[0-9]{6}(?![0-9])")

MFATokenProvider = Union[Callable[..., str], Sequence[str], str]  # noqa: UP007 (a runtime alias on 3.10)


def _mask_codes(text: str) -> str:
    return _SIX_DIGITS.sub("******", text)


class _MFACodes:
    """Supplies a TokenCode for each AssumeRole call that needs one."""

    def __init__(
        self,
        serial_number: str,
        token_code: str | None,
        provider: MFATokenProvider | None,
        provider_kwargs: Mapping[str, Any] | None,
    ) -> None:
        problems = _Problems()  # enforced even with validate=False
        _check_refused_mfa_options(problems, provider_kwargs or {})
        problems.raise_if_any()
        self.serial_number = serial_number
        self._static_code = token_code
        self._provider = provider
        self._kwargs = dict(provider_kwargs or {})

    def code(self) -> str:
        """The code for the next call (static code first, then provider or prompt)."""
        if self._static_code is not None:
            return self._static_code
        if self._provider is None:
            return self._prompt()
        if callable(self._provider):
            return _provided_code(self._provider(**self._kwargs))
        return self._run_command(self._provider)

    def used(self) -> None:
        """The static code was accepted by STS; it cannot be used again."""
        self._static_code = None

    def _prompt(self) -> str:
        if not _stdin_is_terminal():
            raise MFATokenError(
                f"a new MFA code for {self.serial_number} is needed to refresh the "
                "credentials and stdin is not a terminal; pass mfa_token_provider="
                " (a function or a command that prints the code)"
            )
        code = getpass.getpass(f"MFA code for {self.serial_number}: ").strip()
        if not _TOKEN_RE.fullmatch(code):
            raise MFATokenError("the MFA code entered is not six digits")
        return code

    def _run_command(self, command: Sequence[str] | str) -> str:
        args = shlex.split(command) if isinstance(command, str) else list(command)
        options = {"timeout": _MFA_COMMAND_TIMEOUT, **self._kwargs}
        try:
            result = subprocess.run(args, capture_output=True, text=True, check=False, **options)
        except subprocess.TimeoutExpired:
            raise MFATokenError(f"the MFA command {args[0]!r} timed out after {options['timeout']} s") from None
        except OSError as error:
            raise MFATokenError(f"the MFA command {args[0]!r} could not run: {error}") from None
        stderr = _mask_codes((result.stderr or "").strip())[-300:]
        if result.returncode != 0:
            raise MFATokenError(
                f"the MFA command {args[0]!r} exited with status {result.returncode}: {stderr or '(no stderr)'}"
            )
        codes = _SIX_DIGITS.findall(result.stdout or "")
        if not codes:
            raise MFATokenError(
                f"the MFA command {args[0]!r} printed no six-digit code; stderr: {stderr or '(empty)'}"
            )
        return str(codes[-1])


def _provided_code(result: Any) -> str:
    """A provider function's result as a code: six digits, or an int zero-padded to six."""
    if isinstance(result, int) and not isinstance(result, bool) and 0 <= result <= 999_999:
        return f"{result:06d}"
    if isinstance(result, str) and _TOKEN_RE.fullmatch(result):
        return result
    raise MFATokenError(f"mfa_token_provider returned {_describe_non_code(result)}; it must return a string of six digits 0-9")


def _describe_non_code(value: Any) -> str:
    """What is wrong with a would-be MFA code, without showing it."""
    if isinstance(value, int) and not isinstance(value, bool):
        return "an int that is negative or has more than six digits"
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    kinds = [
        kind for kind, present in (
            ("ASCII digits", any(c in "0123456789" for c in value)),
            ("other digits", any(c.isdigit() and c not in "0123456789" for c in value)),
            ("letters", any(c.isalpha() for c in value)),
            ("whitespace", any(c.isspace() for c in value)),
            ("other characters", any(not (c.isdigit() or c.isalpha() or c.isspace()) for c in value)),
        ) if present
    ]
    return f"a string of {len(value)} characters ({', '.join(kinds) or 'empty'})"


def _accepted_command_options() -> list[str]:
    """Keyword arguments ``subprocess.run`` takes for an MFA command (ours and refused ones aside)."""
    popen = set(inspect.signature(subprocess.Popen).parameters) - {"args", "text", "universal_newlines"}
    return sorted((popen | {"timeout", "input"}) - set(_REFUSED_COMMAND_OPTIONS))


def _check_mfa_provider_kwargs(problems: _Problems, provider: Any, provider_kwargs: Mapping[str, Any]) -> None:
    """Unknown keys for the provider (a command's ``subprocess.run`` or the function's parameters)."""
    if callable(provider):
        try:
            parameters = inspect.signature(provider).parameters.values()
        except (TypeError, ValueError):
            return  # no signature to compare with (some built-ins)
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return
        accepted = [p.name for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    else:
        accepted = _accepted_command_options()
    for key in provider_kwargs:
        if key not in accepted and key not in _REFUSED_COMMAND_OPTIONS:
            problems.add(
                f"mfa_token_provider_kwargs[{str(key)[:40]!r}]",
                f"unknown option; accepted: {', '.join(accepted) or '(none: the function takes no keyword arguments)'}",
            )


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError, OSError):  # replaced or closed stdin
        return False


def _check_refused_mfa_options(problems: _Problems, provider_kwargs: Mapping[str, Any]) -> None:
    # No shell and no redirection, ever: the code is read from captured stdout.
    for option in _REFUSED_COMMAND_OPTIONS:
        if option in provider_kwargs:
            problems.add(f"mfa_token_provider_kwargs[{option!r}]", "is not allowed (no shell, no redirection)")


def _check_mfa(
    problems: _Problems,
    serial_number: Any,
    token_code: Any,
    provider: Any,
    provider_kwargs: Any,
) -> None:
    if provider is not None:
        if serial_number is None:
            problems.add("mfa_token_provider", "needs SerialNumber (the MFA device)")
        valid_command = isinstance(provider, str) or (
            isinstance(provider, Sequence) and provider and all(isinstance(a, str) for a in provider)
        )
        if not callable(provider) and not valid_command:
            problems.add("mfa_token_provider", f"must be a callable or a command (list of strings), not {type(provider).__name__}")
        if isinstance(provider, str):
            try:
                if not shlex.split(provider):
                    problems.add("mfa_token_provider", "the command is empty")
            except ValueError as error:
                problems.add("mfa_token_provider", f"the command cannot be split: {error}")
    if provider_kwargs is not None:
        if not isinstance(provider_kwargs, Mapping):
            problems.add("mfa_token_provider_kwargs", "must be a mapping")
        else:
            _check_refused_mfa_options(problems, provider_kwargs)
            if provider is not None:
                _check_mfa_provider_kwargs(problems, provider, provider_kwargs)
    if token_code is not None and serial_number is None:
        problems.add("TokenCode", "needs SerialNumber (the MFA device the code is from)")
    if serial_number is not None and token_code is None and provider is None and not _stdin_is_terminal():
        problems.add(
            "SerialNumber",
            "needs TokenCode or mfa_token_provider to supply MFA codes (stdin is not a terminal to prompt on)",
        )


def _sts_region(parent: botocore.session.Session, client_kwargs: Mapping[str, Any]) -> str | None:
    """The region an STS client of ``parent`` made with ``client_kwargs`` gets, as botocore picks it."""
    config = client_kwargs.get("config")
    region = client_kwargs.get("region_name") or getattr(config, "region_name", None)
    return region or parent.get_config_variable("region")  # type: ignore[no-any-return]


def _configured_sts_endpoint(parent: botocore.session.Session, config: Any) -> str | None:
    """The endpoint URL that configuration gives STS clients (``AWS_ENDPOINT_URL[_STS]``, profile)."""
    provider = getattr(botocore.configprovider, "ConfiguredEndpointProvider", None)  # botocore >= 1.31
    ignore = getattr(config, "ignore_configured_endpoint_urls", None)
    if ignore is None:
        ignore = parent.get_config_variable("ignore_configured_endpoint_urls")
    if provider is None or ignore:
        return None
    url = provider(full_config=parent.full_config, scoped_config=parent.get_scoped_config(), client_name="sts").provide()
    return url if isinstance(url, str) else None


def _sts_endpoint_needing_region(parent: botocore.session.Session, client_kwargs: Mapping[str, Any]) -> str | None:
    """The STS endpoint that cannot be signed for because no region is set, if so.

    Asks botocore's own endpoint resolution (the step of ``create_client`` that
    picks the client's region) without building a client: with no region and
    no endpoint URL botocore signs for STS's global endpoint; with an endpoint
    URL it has no signing region and every call would raise ``NoRegionError``.
    """
    if _sts_region(parent, client_kwargs) is not None:
        return None
    config = client_kwargs.get("config")
    endpoint_url = client_kwargs.get("endpoint_url") or _configured_sts_endpoint(parent, config)
    resolver = botocore.regions.EndpointResolver(parent.get_component("data_loader").load_data("endpoints"))
    bridge = botocore.client.ClientEndpointBridge(
        resolver, parent.get_scoped_config(), config, config_store=parent.get_component("config_store")
    )
    secure = client_kwargs.get("use_ssl") is not False
    resolved: Mapping[str, Any] = bridge.resolve("sts", None, endpoint_url, secure)  # type: ignore[func-returns-value,assignment]  # stubs: None
    if resolved.get("signing_region"):
        return None
    return str(resolved.get("endpoint_url") or endpoint_url)


class _RegionRequiredError(botocore.exceptions.ParamValidationError):
    """STS needs a region and none is set; ``endpoint`` is the STS host."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        how = "region_name='eu-west-1' (or a region in sts_client_kwargs)"
        super().__init__(report=f"Invalid region_name: {_region_required_message(endpoint, how)}")


def _region_required_message(endpoint_url: str, option: str) -> str:
    parts = urllib.parse.urlsplit(endpoint_url)
    host = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "") if parts.hostname else "an endpoint URL"
    return (
        f"STS at {host} cannot be reached without a region, and neither the parent session nor "
        f"this call sets one; pass {option}, set AWS_DEFAULT_REGION (botocore does not read "
        "AWS_REGION), or set region in the profile"
    )


def _check_sts_reachable(parent: boto3.Session, client_kwargs: Mapping[str, Any], region_name: str | None) -> None:
    if region_name is not None:
        return  # the STS client falls back to the child's region (see _AssumeRoleSource)
    endpoint = _sts_endpoint_needing_region(_botocore_session_of(parent), client_kwargs)
    if endpoint is not None:
        raise _RegionRequiredError(endpoint)


_PRINCIPALS_KEPT = 256
_principals: dict[str, str] = {}  # parent access key -> its principal's ARN (GetCallerIdentity)
_principals_lock = _ForkSafeLock()


def _principal_of(access_key: str, sts: Any) -> str:
    """The ARN GetCallerIdentity gives for ``access_key``: one call per access key per process."""
    with _principals_lock:
        known = _principals.get(access_key)
    if known is not None:
        return known
    principal = str(sts.get_caller_identity()["Arn"])
    with _principals_lock:
        while len(_principals) >= _PRINCIPALS_KEPT:
            _principals.pop(next(iter(_principals)))
        _principals[access_key] = principal
    return principal


def _sts_cache_key(prefix: str, principal: str, endpoint: str, region: str | None, params: Mapping[str, Any]) -> str:
    """The shared cache key of an STS call: what must be equal for two callers to get the same credentials.

    It contains the parent's principal (who asks; not its access key, so all
    instances of one Lambda function share), the STS endpoint and region (where),
    and every argument of the call but ``TokenCode`` (what). It contains no
    secret. The sync and asyncio sources use it alike, so their caches are shared.
    """
    payload = {"parent": principal, "endpoint": endpoint, "region": region, "params": params}
    return f"{prefix}-{hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()}"


def _assume_role_key_params(params: Mapping[str, Any], automatic_name: bool) -> JSONDict:
    """The AssumeRole arguments that identify its credentials: all but ``TokenCode`` and a generated name."""
    key_params = {k: v for k, v in params.items() if k != "TokenCode"}
    if automatic_name:
        key_params.pop("RoleSessionName", None)
    return key_params


def _known_principal(credentials: Any) -> str | None:
    """The principal of credentials from one of our AssumeRole hops (sync or asyncio), known without a call."""
    source = getattr(credentials, "source", None) if isinstance(credentials, botocore.credentials.Credentials) else None
    principal = getattr(source, "principal", None)
    return str(principal()) if callable(principal) else None


class _STSSource:
    """Calls STS with the parent session's current credentials.

    The STS client's region is ``sts_client_kwargs``' region, else the
    parent's, else ``fallback_region`` (the child's ``region_name``).
    """

    name: str

    def __init__(self, parent: boto3.Session, sts_client_kwargs: Mapping[str, Any], fallback_region: str | None) -> None:
        self._parent = _botocore_session_of(parent)
        self._client_kwargs = dict(sts_client_kwargs)
        self._fallback_region = fallback_region
        self._client: Any = None
        self._client_credentials: Any = None

    def _sts(self) -> Any:
        parent_credentials = self._parent.get_credentials()
        if parent_credentials is None:
            raise botocore.exceptions.NoCredentialsError()
        if self._client is None or parent_credentials is not self._client_credentials:
            options = self._client_kwargs
            if self._fallback_region is not None and _sts_region(self._parent, options) is None:
                options = {**options, "region_name": self._fallback_region}
            self._client = self._parent.create_client("sts", **options)
            self._client_credentials = parent_credentials
        return self._client

    def _cache_key(self, prefix: str, params: Mapping[str, Any]) -> str | None:
        """The shared cache key: ``prefix`` and a digest of the parent's principal, STS endpoint, region and ``params``.

        The parent is named by its principal, not its access key: every
        process whose parent acts as the same principal (all the instances of
        one Lambda function, say) shares the entry; two principals never do.
        ``None`` (no cache this time) if the parent cannot be identified.
        """
        client = self._sts()
        principal = self._parent_principal(client)
        if principal is None:
            return None
        return _sts_cache_key(prefix, principal, client.meta.endpoint_url, client.meta.region_name, params)

    def _parent_principal(self, client: Any) -> str | None:
        """The parent credentials' principal: from the parent hop if it is ours, else GetCallerIdentity (remembered)."""
        credentials = self._client_credentials
        known = _known_principal(credentials)
        if known is not None:
            return known
        access_key = credentials.get_frozen_credentials().access_key
        try:
            return _principal_of(access_key, client)
        except Exception as error:
            logger.warning(
                "GetCallerIdentity failed for the parent credentials of %s (%s); fetching without the cache this time",
                self.name, type(error).__name__,
            )
            return None

    def after_fork(self) -> None:
        # A client's connection pool shares sockets with the parent process.
        self._client = None
        self._client_credentials = None


class _AssumeRoleSource(_STSSource):
    """Calls STS AssumeRole with the parent session's current credentials."""

    def __init__(
        self,
        parent: boto3.Session,
        params: JSONDict,
        automatic_name: bool,
        mfa: _MFACodes | None,
        sts_client_kwargs: Mapping[str, Any],
        clock: Clock,
        fallback_region: str | None = None,
    ) -> None:
        super().__init__(parent, sts_client_kwargs, fallback_region)
        self._params = params
        self._automatic_name = automatic_name
        self._mfa = mfa
        self._clock = clock
        self.name = str(params["RoleArn"])

    def _key_params(self) -> JSONDict:
        return _assume_role_key_params(self._params, self._automatic_name)

    def principal(self) -> str:
        """Who this hop's credentials act as, known without a call: the role and its arguments.

        The role ARN, the session name (unless automatic) and every other
        AssumeRole argument but ``TokenCode``: the children of two hops that
        agree on these act as the same principal, with the same session
        policies and tags, so they may share cache entries.
        """
        return "assumed-role " + json.dumps(self._key_params(), sort_keys=True, default=str)

    def cache_key(self) -> str | None:
        return self._cache_key("assume-role", self._key_params())

    def fetch(self) -> JSONDict:
        code = self._mfa.code() if self._mfa is not None else None
        response = self._sts().assume_role(**_assume_role_request(self._params, self._automatic_name, self._clock, code))
        if self._mfa is not None:
            self._mfa.used()
        return _assume_role_credentials(response)


def _assume_role_request(params: Mapping[str, Any], automatic_name: bool, clock: Clock, token_code: str | None) -> JSONDict:
    """The AssumeRole arguments of one fetch: a fresh generated session name, the MFA code if any."""
    request = dict(params)
    if automatic_name:
        request["RoleSessionName"] = f"assume-role-chain-{int(clock().timestamp())}"
    if token_code is not None:
        request["TokenCode"] = token_code
    return request


def _assume_role_credentials(response: Mapping[str, Any]) -> JSONDict:
    """The credentials of an AssumeRole answer, with the account id its role ARN names."""
    credentials: JSONDict = dict(response["Credentials"])
    account = response.get("AssumedRoleUser", {}).get("Arn", "").split(":")
    if len(account) > 4 and account[4]:
        credentials["AccountId"] = account[4]
    return credentials


class _SessionTokenSource(_STSSource):
    """Calls STS GetSessionToken (an MFA session) with the parent's current credentials.

    Cached under the parent's principal and the MFA device; the code is
    part of no key and no entry.
    """

    def __init__(
        self, parent: boto3.Session, params: JSONDict, mfa: _MFACodes,
        sts_client_kwargs: Mapping[str, Any], fallback_region: str | None,
    ) -> None:
        super().__init__(parent, sts_client_kwargs, fallback_region)
        self._params = params
        self._mfa = mfa
        self.name = f"MFA session of {params['SerialNumber']}"

    def cache_key(self) -> str | None:
        return self._cache_key("mfa-session", self._params)

    def fetch(self) -> JSONDict:
        response = self._sts().get_session_token(**self._params, TokenCode=self._mfa.code())
        self._mfa.used()
        return dict(response["Credentials"])


class _FunctionSource:
    """Calls a user function that returns temporary credentials."""

    def __init__(self, fetch: Callable[[], Mapping[str, Any]], key: str | None, name: str) -> None:
        self._fetch = fetch
        self._key = key
        self.name = name

    def cache_key(self) -> str | None:
        return self._key

    def fetch(self) -> Mapping[str, Any]:
        return self._fetch()

    def after_fork(self) -> None:
        pass


# -- secrets in third-party DEBUG logs ---------------------------------------------
#
# At DEBUG, botocore logs request parameters (``TokenCode``), signed headers
# (``X-Amz-Security-Token``) and response bodies (AssumeRole's
# ``SecretAccessKey`` and ``SessionToken``). While this module is imported,
# every record of those loggers has the values of such fields replaced. This
# is done where records are made (a record factory): a filter on ``botocore``
# would not see the records of its child loggers (``botocore.parsers``...),
# and users add their handlers whenever they like. Records are made only for
# enabled levels, so with DEBUG off this costs nothing.

_WIRE_LOGGERS = frozenset({"botocore", "boto3", "urllib3"})
_SECRET_FIELDS = r"SecretAccessKey|SessionToken|TokenCode|X-Amz-Security-Token"
_SECRET_IN_TEXT = _LazyPattern(
    rf"(?P<element><(?P<tag>{_SECRET_FIELDS})>)[^<]*(?=</(?P=tag)>)"  # XML: <SessionToken>…</SessionToken>
    rf"|(?P<key>(?P<q>[\"'])(?:{_SECRET_FIELDS})(?P=q)\s*:\s*b?)(?P<vq>[\"'])[^\"']*(?P=vq)"  # JSON, dict: 'TokenCode': '…'
    rf"|(?P<pair>\b(?:{_SECRET_FIELDS})[=:])[^\s&'\"<]+",  # query, form, canonical request: x-amz-security-token:…
    re.IGNORECASE,
)


def _redact_secrets(text: str) -> str:
    """``text`` with the value of every secret field replaced by ``***``."""

    def masked(match: re.Match[str]) -> str:
        if match["element"]:
            return match["element"] + "***"
        if match["key"]:
            return match["key"] + match["vq"] + "***" + match["vq"]
        return match["pair"] + "***"

    return _SECRET_IN_TEXT.sub(masked, text)


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a broken record: logging reports it when it is emitted
        return
    redacted = _redact_secrets(message)
    if redacted != message:
        record.msg, record.args = redacted, ()


def _redacting(make_record: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """Wrap a log record factory: the records it makes for the wire loggers come out redacted."""

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        name = record.name
        if isinstance(name, str) and name.partition(".")[0] in _WIRE_LOGGERS:
            _redact_record(record)
        return record

    make.redacts_secrets = True  # type: ignore[attr-defined]
    return make


def _install_log_redaction() -> None:
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "redacts_secrets", False):  # once, even if this file is imported twice
        logging.setLogRecordFactory(_redacting(factory))


# ---------------------------------------------------------------------------
# 11. Public API
# ---------------------------------------------------------------------------

_ASSUME_ROLE_FIELDS = (
    "RoleSessionName", "PolicyArns", "Policy", "DurationSeconds", "Tags",
    "TransitiveTagKeys", "ExternalId", "SerialNumber", "TokenCode",
    "SourceIdentity", "ProvidedContexts",
)
_REFUSED_STS_OPTIONS = ("service_name", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_account_id")
_STS_CLIENT_FIELDS = ("region_name", "api_version", "use_ssl", "verify", "endpoint_url", "config")


class _TypedConfig(Mapping[str, Any]):
    """A frozen, validated mapping whose valid but unset fields read as ``None``."""

    _fields: tuple[str, ...] = ()

    def __init__(self, values: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        if values is not None and not isinstance(values, Mapping):
            raise _invalid(f"Invalid {type(self).__name__}: expected a mapping, got {type(values).__name__}")
        merged = {**(values or {}), **kwargs}
        problems = _Problems()
        for key in merged:
            if key not in self._fields:
                problems.add(str(key), f"unknown parameter for {type(self).__name__} (valid: {', '.join(self._fields)})")
        problems.raise_if_any()
        merged = self._prepare(merged)
        self._check(merged)
        object.__setattr__(self, "_values", {k: v for k, v in merged.items() if v is not None})

    def _prepare(self, values: dict[str, Any]) -> dict[str, Any]:
        return values

    def _check(self, values: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        if key in self._values:
            return self._values[key]
        if key in self._fields:
            return None
        raise KeyError(key)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no parameter {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; make a new one")

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __hash__(self) -> int:
        return hash(_option_key(self._values))  # equal configs hash equal

    def __repr__(self) -> str:
        shown = {k: ("******" if k == "TokenCode" else v) for k, v in self._values.items()}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


class AssumeRoleConfig(_TypedConfig):
    """The AssumeRole request as a validated mapping, e.g.
    ``AssumeRoleConfig(RoleArn=arn, DurationSeconds=900)``.

    Accepted wherever a mapping of AssumeRole arguments is (``assume_role``'s
    second argument, hops of ``assume_role_chain``, patched methods). Invalid
    values raise ``ParamValidationError`` at construction.
    """

    _fields = ("RoleArn", *_ASSUME_ROLE_FIELDS)
    RoleArn: str
    RoleSessionName: str | None
    PolicyArns: Sequence[str | Mapping[str, str]] | None
    Policy: str | Mapping[str, Any] | None
    DurationSeconds: int | dt.timedelta | None
    Tags: Sequence[Mapping[str, str]] | Mapping[str, str] | None
    TransitiveTagKeys: Sequence[str] | None
    ExternalId: str | None
    SerialNumber: str | None
    TokenCode: str | None
    SourceIdentity: str | None
    ProvidedContexts: Sequence[Mapping[str, str]] | None

    def _prepare(self, values: dict[str, Any]) -> dict[str, Any]:
        return {**values, "Tags": _materialised(values.get("Tags"))}

    def _check(self, values: Mapping[str, Any]) -> None:
        problems = _Problems()
        _check_assume_role_fields(problems, values.get("RoleArn"), values)
        problems.raise_if_any()


class STSClientConfig(_TypedConfig):
    """Options for the STS client that calls AssumeRole, as a validated mapping.

    ``service_name`` and credentials are refused: the client always signs with
    the parent session's current credentials.
    """

    _fields = _STS_CLIENT_FIELDS
    region_name: str | None
    api_version: str | None
    use_ssl: bool | None
    verify: bool | str | None
    endpoint_url: str | None
    config: botocore.config.Config | None

    def __init__(self, values: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        merged = {**(values or {}), **kwargs} if isinstance(values, Mapping) or values is None else values
        if isinstance(merged, Mapping):
            problems = _Problems()
            for option in _REFUSED_STS_OPTIONS:
                if option in merged:
                    problems.add(f"sts_client_kwargs[{option!r}]", "is not allowed: the STS client always uses the parent's credentials")
            problems.raise_if_any()
        super().__init__(merged)

    def _check(self, values: Mapping[str, Any]) -> None:
        problems = _Problems()
        region_problem = _region_problem(values["region_name"]) if values.get("region_name") is not None else None
        if region_problem is not None:
            problems.add("region_name", region_problem)
        endpoint = values.get("endpoint_url")
        if endpoint is not None and (not isinstance(endpoint, str) or not re.match(r"https?://[^\s/]+", endpoint)):
            problems.add("endpoint_url", "must be an http:// or https:// URL")
        if values.get("use_ssl") is not None and not isinstance(values["use_ssl"], bool):
            problems.add("use_ssl", "must be True or False")
        if values.get("verify") is not None and not isinstance(values["verify"], (bool, str)):
            problems.add("verify", "must be True, False or the path of a CA bundle")
        if values.get("config") is not None and not isinstance(values["config"], botocore.config.Config):
            problems.add("config", "must be a botocore.config.Config")
        if values.get("api_version") is not None and not isinstance(values["api_version"], str):
            problems.add("api_version", "must be a string")
        problems.raise_if_any()


def _normalise_params(role_arn: str, raw: Mapping[str, Any], additional: Mapping[str, Any] | None) -> tuple[JSONDict, bool]:
    """The AssumeRole request (without TokenCode) and whether its name is generated."""
    params: JSONDict = dict(additional or {})
    params.update({name: value for name, value in raw.items() if value is not None})
    params["RoleArn"] = role_arn
    name = params.get("RoleSessionName")
    if name == AUTOMATIC_ROLE_SESSION_NAME:
        del params["RoleSessionName"]
    elif not name and params.get("SourceIdentity"):
        params["RoleSessionName"] = params["SourceIdentity"]
    if isinstance(params.get("Policy"), Mapping):
        params["Policy"] = json.dumps(params["Policy"])
    if params.get("PolicyArns") is not None:
        params["PolicyArns"] = [{"arn": a} if isinstance(a, str) else dict(a) for a in params["PolicyArns"]]
    if isinstance(params.get("DurationSeconds"), dt.timedelta):
        params["DurationSeconds"] = int(params["DurationSeconds"].total_seconds())
    if params.get("Tags") is not None:
        params["Tags"] = _tags_for_api(params["Tags"])
    params.pop("TokenCode", None)
    return params, "RoleSessionName" not in params


def _tags_for_api(tags: Any) -> Any:
    """Tags as the API's list of ``{'Key', 'Value'}`` dicts (anything unusable is left for botocore)."""
    if isinstance(tags, Mapping):
        return [{"Key": key, "Value": value} for key, value in tags.items()]
    if isinstance(tags, Sequence) and not isinstance(tags, (str, bytes)):
        pairs = [_tag_pair(tag) for tag in tags]
        if None not in pairs:
            return [{"Key": pair[0], "Value": pair[1]} for pair in pairs if pair is not None]
    return tags


def _check_assume_role_fields(problems: _Problems, role_arn: Any, args: Mapping[str, Any]) -> None:
    _check_role_arn(problems, role_arn)
    name = args.get("RoleSessionName")
    if name != AUTOMATIC_ROLE_SESSION_NAME:
        _check_text(problems, "RoleSessionName", name, _NAME_RE)
    _check_text(problems, "SourceIdentity", args.get("SourceIdentity"), _NAME_RE)
    _check_text(problems, "ExternalId", args.get("ExternalId"), _EXTERNAL_ID_RE)
    _check_text(problems, "SerialNumber", args.get("SerialNumber"), _SERIAL_RE)
    _check_token_code(problems, args.get("TokenCode"))
    _check_duration(problems, args.get("DurationSeconds"))
    _check_policy(problems, args.get("Policy"))
    _check_policy_arns(problems, args.get("PolicyArns"))
    _check_tags(problems, args.get("Tags"))
    _check_string_list(problems, "TransitiveTagKeys", args.get("TransitiveTagKeys"), 50)
    _check_provided_contexts(problems, args.get("ProvidedContexts"))


def _validate_assume_role(
    session: Any,
    role_arn: Any,
    args: Mapping[str, Any],
    options: _SessionOptions,
    *,
    mfa_token_provider: Any,
    mfa_token_provider_kwargs: Any,
    additional_kwargs: Any,
    sts_client_kwargs: Any,
) -> None:
    """Every argument of one :func:`assume_role` call, checked in one pass (one error lists all)."""
    problems = _Problems()
    _check_session(problems, session)
    _check_assume_role_fields(problems, role_arn, args)
    additional = additional_kwargs
    serial = args.get("SerialNumber") or (additional.get("SerialNumber") if isinstance(additional, Mapping) else None)
    _check_mfa(problems, serial, args.get("TokenCode"), mfa_token_provider, mfa_token_provider_kwargs)
    if additional is not None and not isinstance(additional, Mapping):
        problems.add("additional_kwargs", "must be a mapping of AssumeRole parameters")
    if sts_client_kwargs is not None and not isinstance(sts_client_kwargs, Mapping):
        problems.add("sts_client_kwargs", "must be a mapping of client options")
    options.check(problems, args.get("DurationSeconds"))
    problems.raise_if_any()
    if isinstance(sts_client_kwargs, Mapping):
        STSClientConfig(sts_client_kwargs)


def _check_windows(problems: _Problems, advisory: Any, mandatory: Any, duration: Any) -> None:
    for name, value in (("advisory_timeout", advisory), ("mandatory_timeout", mandatory)):
        if value is not None and (
            not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0
        ):
            problems.add(name, "must be a finite number of seconds >= 0")
            return
    if advisory is not None and mandatory is not None and mandatory > advisory:
        problems.add("mandatory_timeout", f"({mandatory} s) must not exceed advisory_timeout ({advisory} s)")
    if isinstance(duration, dt.timedelta):
        duration = duration.total_seconds()
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        for name, value in (("advisory_timeout", advisory), ("mandatory_timeout", mandatory)):
            if value is not None and value >= duration:
                problems.add(name, f"({value} s) must be shorter than DurationSeconds ({duration:g} s)")


def _validate_with_botocore_model(session: boto3.Session, params: Mapping[str, Any]) -> None:
    """Let botocore check the final request against the STS model (no client, no network)."""
    model = _botocore_session_of(session).get_service_model("sts")
    request = dict(params)
    request.setdefault("RoleSessionName", "validation-placeholder")
    if "SerialNumber" in request:
        request["TokenCode"] = "000000"
    shape = model.operation_model("AssumeRole").input_shape
    assert shape is not None
    botocore.validate.validate_parameters(request, shape)


def _is_temporary(credentials: Any) -> bool:
    """Whether a parent's credentials are temporary, without fetching them."""
    if isinstance(credentials, botocore.credentials.RefreshableCredentials):
        return True  # assumed roles, SSO, instance and container roles
    return getattr(credentials, "token", None) is not None


def _is_role_chaining(parent_credentials: Any) -> bool:
    """Whether assuming a role with these credentials is role chaining (STS's 1 h limit)."""
    if isinstance(parent_credentials, _RefreshingCredentials) and isinstance(parent_credentials.source, _SessionTokenSource):
        return False  # an IAM user's MFA session from GetSessionToken, not a role
    return _is_temporary(parent_credentials)


def _clamp_for_chaining(params: JSONDict, parent_credentials: Any) -> None:
    duration = params.get("DurationSeconds")
    if isinstance(duration, int) and duration > 3600 and _is_role_chaining(parent_credentials):
        warnings.warn(
            f"DurationSeconds={duration} lowered to 3600 for {params['RoleArn']}: the parent "
            "credentials are temporary (role chaining) and STS refuses more than one hour "
            "for chained roles",
            DurationClampedWarning,
            stacklevel=3,
        )
        params["DurationSeconds"] = 3600


def assume_role(
    session: boto3.Session,
    RoleArn: str | Mapping[str, Any],
    *,
    RoleSessionName: str | None = None,
    PolicyArns: Sequence[str | Mapping[str, str]] | None = None,
    Policy: str | Mapping[str, Any] | None = None,
    DurationSeconds: int | dt.timedelta | None = None,
    Tags: Sequence[Mapping[str, str]] | Mapping[str, str] | None = None,
    TransitiveTagKeys: Sequence[str] | None = None,
    ExternalId: str | None = None,
    SerialNumber: str | None = None,
    TokenCode: str | None = None,
    SourceIdentity: str | None = None,
    ProvidedContexts: Sequence[Mapping[str, str]] | None = None,
    additional_kwargs: Mapping[str, Any] | None = None,
    region_name: str | bool | None = None,
    validate: bool = True,
    cache: MutableMapping[str, Any] | None = None,
    mfa_token_provider: MFATokenProvider | None = None,
    mfa_token_provider_kwargs: Mapping[str, Any] | None = None,
    sts_client_kwargs: Mapping[str, Any] | None = None,
    advisory_timeout: float | None = None,
    mandatory_timeout: float | None = None,
    eager: bool = False,
    defer_refresh: bool | None = None,
    clock: Clock | None = None,
) -> boto3.Session:
    """Return a :class:`boto3.Session` for ``RoleArn``, assumed from ``session``.

    ``RoleArn`` is the role's ARN, or an :class:`AssumeRoleConfig` (or a plain
    mapping) of AssumeRole arguments that keyword arguments override.

    Nothing is fetched until the credentials are first needed (or at once with
    ``eager=True``); they are then refreshed with AssumeRole, using the parent
    session's current credentials, before they expire. The AssumeRole
    arguments keep their API names; ``Policy`` may be a dict, ``PolicyArns``
    ARN strings, ``DurationSeconds`` a timedelta and ``Tags`` a mapping.

    ``region_name``: ``None`` follows the parent's region (also later
    changes), ``True`` copies it now, ``False`` leaves the child's implicit
    region, a string sets it. All other configuration follows the parent.
    AssumeRole is called in ``sts_client_kwargs``' region, else the parent's,
    else ``region_name``'s; when there is none and STS has an endpoint URL
    (which botocore cannot sign for without a region), this raises
    ``ParamValidationError`` naming ``region_name``.

    ``cache``: a dict-like credential cache such as :class:`JSONFileCache`.
    ``mfa_token_provider``: a function or command that returns MFA codes.
    ``sts_client_kwargs``: options for the STS client that calls AssumeRole
    (an :class:`STSClientConfig` or a dict).
    ``advisory_timeout`` / ``mandatory_timeout``: fixed refresh windows in
    seconds instead of the lifetime-scaled ones (see :func:`refresh_windows`).
    ``eager=True`` (alias ``defer_refresh=False``): fetch now, and refresh in
    the background before expiry so that calls never wait for a refresh.
    ``validate``: check every argument now (raising
    ``botocore.exceptions.ParamValidationError``), before any network call.
    """
    keywords: dict[str, Any] = {
        "RoleSessionName": RoleSessionName, "PolicyArns": PolicyArns, "Policy": Policy,
        "DurationSeconds": DurationSeconds, "Tags": _materialised(Tags), "TransitiveTagKeys": TransitiveTagKeys,
        "ExternalId": ExternalId, "SerialNumber": SerialNumber, "TokenCode": TokenCode,
        "SourceIdentity": SourceIdentity, "ProvidedContexts": ProvidedContexts,
    }
    role_arn, args = _merge_role_mapping(RoleArn, keywords)
    options = _SessionOptions(region_name, cache, clock, advisory_timeout, mandatory_timeout, _resolve_eager(eager, defer_refresh))
    if validate:
        _validate_assume_role(
            session, role_arn, args, options, mfa_token_provider=mfa_token_provider,
            mfa_token_provider_kwargs=mfa_token_provider_kwargs, additional_kwargs=additional_kwargs,
            sts_client_kwargs=sts_client_kwargs,
        )
    params, automatic_name = _normalise_params(role_arn, args, additional_kwargs)
    fallback_region = region_name if isinstance(region_name, str) else None
    if validate:
        _validate_with_botocore_model(session, params)
        _check_sts_reachable(session, sts_client_kwargs or {}, fallback_region)
    parent_credentials = _botocore_session_of(session).get_credentials()
    if parent_credentials is None:
        raise botocore.exceptions.NoCredentialsError()
    _clamp_for_chaining(params, parent_credentials)
    serial = params.get("SerialNumber")
    mfa = _MFACodes(serial, args.get("TokenCode"), mfa_token_provider, mfa_token_provider_kwargs) if serial else None
    source = _AssumeRoleSource(
        session, params, automatic_name, mfa, dict(sts_client_kwargs or {}), clock or _utc_now, fallback_region
    )
    return _build_session(source, options, session)


def _merge_role_mapping(role: Any, args: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:  # (RoleArn, arguments)
    """Split a RoleArn-or-mapping argument into the ARN and the merged arguments."""
    if not isinstance(role, Mapping):
        return role, dict(args)
    config = role if isinstance(role, AssumeRoleConfig) else AssumeRoleConfig(role)
    merged = {name: args[name] if args.get(name) is not None else config.get(name) for name in _ASSUME_ROLE_FIELDS}
    return config.RoleArn, merged


def _resolve_eager(eager: Any, defer_refresh: Any) -> bool:
    if defer_refresh is None:
        return bool(eager)
    if eager and defer_refresh:
        raise _invalid("Invalid defer_refresh: defer_refresh=True contradicts eager=True")
    return not defer_refresh


def assume_role_chain(
    session: boto3.Session,
    roles: Sequence[str | Mapping[str, Any]],
    **common: Any,
) -> boto3.Session:
    """Assume each role in turn and return the last hop's session.

    ``roles`` holds RoleArn strings or mappings of :func:`assume_role`
    arguments (with ``RoleArn``); ``common`` arguments apply to every hop
    unless a hop's mapping overrides them. Each hop's
    ``assume_role_parent_session`` is the previous hop.
    """
    hops = _chain_hops(roles, common)
    current = session
    for hop in hops:
        role_arn = hop.pop("RoleArn")
        current = assume_role(current, role_arn, **hop)
    return current


def _chain_hops(roles: Any, common: Mapping[str, Any]) -> list[JSONDict]:
    """Each hop's :func:`assume_role` arguments (with ``RoleArn``), all of them checked first.

    Shared by the sync and asyncio ``assume_role_chain``: ``common`` applies to
    every hop unless a hop's mapping overrides it.
    """
    if isinstance(roles, (str, bytes)) or not isinstance(roles, Sequence) or not roles:
        raise _invalid("Invalid roles: must be a non-empty list of RoleArn strings or mappings")
    if "Tags" in common:
        common = {**common, "Tags": _materialised(common["Tags"])}  # shared by every hop
    hops: list[JSONDict] = []
    for index, role in enumerate(roles):
        if isinstance(role, str):
            hops.append({**common, "RoleArn": role})
        elif isinstance(role, Mapping) and "RoleArn" in role:
            hops.append({**common, **role})
        else:
            raise _invalid(f"Invalid roles[{index}]: must be a RoleArn string or a mapping with RoleArn")
    for index, hop in enumerate(hops):
        unknown = sorted(set(hop) - _assume_role_parameters())
        if unknown:
            raise _invalid(*(f"Invalid roles[{index}]: unknown argument {name!r} for assume_role" for name in unknown))
    return hops


def _assume_role_parameters() -> set[str]:
    return {name for name in inspect.signature(assume_role).parameters if name != "session"}


def _check_session_token_duration(problems: _Problems, duration: Any) -> None:
    if isinstance(duration, dt.timedelta):
        duration = duration.total_seconds()
        if duration != int(duration):
            problems.add("DurationSeconds", "must be a whole number of seconds")
            return
    elif not isinstance(duration, int) or isinstance(duration, bool):
        problems.add("DurationSeconds", f"must be an int or datetime.timedelta, not {type(duration).__name__}")
        return
    if not 900 <= duration <= 129600:
        problems.add("DurationSeconds", f"must be 900 to 129600 seconds (36 h) for an MFA session, got {duration:g}")


def mfa_session(
    parent: boto3.Session,
    SerialNumber: str,
    *,
    TokenCode: str | None = None,
    mfa_token_provider: MFATokenProvider | None = None,
    mfa_token_provider_kwargs: Mapping[str, Any] | None = None,
    DurationSeconds: int | dt.timedelta = 43200,
    cache: MutableMapping[str, Any] | None = None,
    region_name: str | bool | None = None,
) -> boto3.Session:
    """Return a :class:`boto3.Session` on an MFA session (STS GetSessionToken).

    The code is asked for once per session lifetime (``DurationSeconds``,
    default 12 h, up to 36 h): roles assumed from the returned session carry
    the MFA context and need no code of their own, and they are not role
    chaining, so their ``DurationSeconds`` may be up to the role's maximum.
    The session refreshes itself, asking for a new code, when it expires.
    ``parent`` must hold an IAM user's long-term keys (STS refuses
    GetSessionToken with role credentials).

    ``TokenCode``, ``mfa_token_provider``, ``mfa_token_provider_kwargs`` and
    ``region_name`` work as in :func:`assume_role`. With ``cache`` (e.g.
    :class:`JSONFileCache`) another process reuses the session, without a
    code, until it expires; it is keyed by the parent's access key and the
    MFA device, and the code is never stored.
    """
    return _mfa_session(
        parent, SerialNumber, TokenCode=TokenCode, mfa_token_provider=mfa_token_provider,
        mfa_token_provider_kwargs=mfa_token_provider_kwargs, DurationSeconds=DurationSeconds,
        cache=cache, region_name=region_name,
    )


def _mfa_session(
    parent: boto3.Session,
    SerialNumber: str,
    *,
    TokenCode: str | None,
    mfa_token_provider: MFATokenProvider | None,
    mfa_token_provider_kwargs: Mapping[str, Any] | None,
    DurationSeconds: int | dt.timedelta,
    cache: MutableMapping[str, Any] | None,
    region_name: str | bool | None,
    sts_client_kwargs: Mapping[str, Any] | None = None,
) -> boto3.Session:
    """:func:`mfa_session`, with the STS client options the command line may give."""
    problems = _Problems()
    _check_session(problems, parent)
    if SerialNumber is None:
        problems.add("SerialNumber", "is required: the ARN (or serial number) of the MFA device")
    _check_text(problems, "SerialNumber", SerialNumber, _SERIAL_RE)
    _check_token_code(problems, TokenCode)
    _check_mfa(problems, SerialNumber, TokenCode, mfa_token_provider, mfa_token_provider_kwargs)
    _check_session_token_duration(problems, DurationSeconds)
    options = _SessionOptions(region_name=region_name, cache=cache)
    options.check(problems)
    problems.raise_if_any()
    fallback_region = region_name if isinstance(region_name, str) else None
    _check_sts_reachable(parent, sts_client_kwargs or {}, fallback_region)
    if _botocore_session_of(parent).get_credentials() is None:
        raise botocore.exceptions.NoCredentialsError()
    seconds = DurationSeconds.total_seconds() if isinstance(DurationSeconds, dt.timedelta) else DurationSeconds
    params: JSONDict = {"SerialNumber": SerialNumber, "DurationSeconds": int(seconds)}
    mfa = _MFACodes(SerialNumber, TokenCode, mfa_token_provider, mfa_token_provider_kwargs)
    source = _SessionTokenSource(parent, params, mfa, sts_client_kwargs or {}, fallback_region)
    return _build_session(source, options, parent)


def refreshable_session(
    fetch: Callable[[], Mapping[str, Any]],
    *,
    region_name: str | None = None,
    cache: MutableMapping[str, Any] | None = None,
    cache_key: str | None = None,
    source_name: str | None = None,
    advisory_timeout: float | None = None,
    mandatory_timeout: float | None = None,
    eager: bool = False,
    defer_refresh: bool | None = None,
    clock: Clock | None = None,
) -> boto3.Session:
    """Return a :class:`boto3.Session` whose credentials come from ``fetch()``.

    ``fetch()`` returns the STS shape (``AccessKeyId``, ``SecretAccessKey``,
    ``SessionToken``, ``Expiration``) or botocore's (``access_key``,
    ``secret_key``, ``token``, ``expiry_time``); the expiry may be a datetime
    (aware or naive UTC), an ISO 8601 string or an epoch number. The same
    engine as :func:`assume_role` refreshes them. ``cache`` needs a
    ``cache_key`` naming this source; ``source_name`` appears in logs.
    """
    options = _SessionOptions(region_name, cache, clock, advisory_timeout, mandatory_timeout, _resolve_eager(eager, defer_refresh))
    _function_source_problems(fetch, options, cache_key).raise_if_any()
    name = source_name or str(getattr(fetch, "__qualname__", "custom credentials"))
    return _build_session(_FunctionSource(fetch, cache_key, name), options, None)


def _function_source_problems(fetch: Any, options: _SessionOptions, cache_key: Any) -> _Problems:
    """Every problem of a :func:`refreshable_session` call, found in one pass."""
    problems = _Problems()
    if not callable(fetch):
        problems.add("fetch", f"must be callable, not {type(fetch).__name__}")
    if options.cache is not None and (not isinstance(cache_key, str) or not cache_key):
        problems.add("cache_key", "a non-empty string is required when cache is given")
    if isinstance(options.region_name, bool):
        problems.add("region_name", "must be a region name string or None")
    options.check(problems)
    return problems


def patch_boto3() -> None:
    """Add ``boto3.assume_role(...)`` and ``boto3.Session.assume_role(...)``.

    Both take :func:`assume_role`'s arguments without the session;
    ``boto3.assume_role`` uses the default session. Idempotent.
    """
    boto3.Session.assume_role = assume_role  # type: ignore[attr-defined]
    boto3.Session.assume_role_chain = assume_role_chain  # type: ignore[attr-defined]
    boto3.assume_role = _assume_role_with_default_session  # type: ignore[attr-defined]


def _default_session() -> boto3.Session:
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    return boto3.DEFAULT_SESSION


def _assume_role_with_default_session(RoleArn: str, **kwargs: Any) -> boto3.Session:
    """:func:`assume_role` from boto3's default session."""
    return assume_role(_default_session(), RoleArn, **kwargs)


# ---------------------------------------------------------------------------
# 12. Cached clients
# ---------------------------------------------------------------------------

EvictionPolicy = Literal["LRU", "LFU"]
_DEFAULT_CACHE_SIZE = 10


class _CacheSize:
    """The type of ``max_size``'s default: the size of the session's cache (10 for a new one)."""

    def __repr__(self) -> str:
        return "<the cache's size>"


_UNSET_SIZE = _CacheSize()


def _option_key(value: Any) -> Any:
    """A hashable, value-based key for one client argument (Config by its options)."""
    if isinstance(value, botocore.config.Config):
        return ("Config", json.dumps(vars(value), sort_keys=True, default=repr))
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _option_key(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_option_key(item) for item in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(_option_key(item) for item in value)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


class ClientCache:
    """Clients (or resources) of one session, bounded by an eviction policy.

    One lock guards the cache, so concurrent first use of a key creates one
    client. Held per session in a weak mapping: dropping the session drops
    its clients.
    """

    def __init__(self, eviction_policy: EvictionPolicy = "LRU", max_size: int | None = _DEFAULT_CACHE_SIZE) -> None:
        self.eviction_policy = eviction_policy
        self._max_size = max_size
        self._entries: dict[Any, Any] = {}  # insertion order = recency for LRU
        self._uses: dict[Any, int] = {}
        self._lock = _ForkSafeLock()

    @property
    def max_size(self) -> int | None:
        """At most this many entries (``None``: unbounded); fixed when the cache is made."""
        return self._max_size

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def keys(self) -> list[Any]:
        """The cached keys, least recently (LRU) or least frequently (LFU) used first."""
        with self._lock:
            return list(self._eviction_order())

    def clear(self) -> None:
        """Drop every cached client."""
        with self._lock:
            self._entries.clear()
            self._uses.clear()

    def get(self, key: Any, create: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._entries:
                value = self._entries.pop(key)
                self._entries[key] = value  # now the most recent
            else:
                value = create()
                self._entries[key] = value
            self._uses[key] = self._uses.get(key, 0) + 1
            self._evict()
            return value

    def _eviction_order(self) -> list[Any]:
        if self.eviction_policy == "LFU":
            recency = {key: index for index, key in enumerate(self._entries)}
            return sorted(self._entries, key=lambda key: (self._uses[key], recency[key]))
        return list(self._entries)

    def _evict(self) -> None:
        if self.max_size is None:
            return
        excess = len(self._entries) - self.max_size
        for key in self._eviction_order()[: max(excess, 0)]:
            del self._entries[key]
            del self._uses[key]


_client_caches: weakref.WeakKeyDictionary[boto3.Session, dict[tuple[str, str], ClientCache]] = weakref.WeakKeyDictionary()
_client_caches_lock = _ForkSafeLock()


def client_cache(session: boto3.Session, kind: Literal["client", "resource"] = "client", eviction_policy: EvictionPolicy = "LRU") -> ClientCache:
    """The cache behind :func:`cached_client` (or :func:`cached_resource`) for a session."""
    return _client_cache(session, kind, eviction_policy, _DEFAULT_CACHE_SIZE)


def _client_cache(session: boto3.Session, kind: str, eviction_policy: EvictionPolicy, size_if_new: int | None) -> ClientCache:
    with _client_caches_lock:
        by_kind = _client_caches.setdefault(session, {})
        cache = by_kind.get((kind, eviction_policy))
        if cache is None:
            cache = by_kind[(kind, eviction_policy)] = ClientCache(eviction_policy, size_if_new)
        return cache


def _cached(session: Any, kind: Literal["client", "resource"], service_name: Any, eviction_policy: Any, max_size: Any, kwargs: dict[str, Any]) -> Any:
    problems = _Problems()
    _check_session(problems, session)
    if not isinstance(service_name, str) or not service_name:
        problems.add("service_name", "must be a service name such as 's3'")
    if eviction_policy not in ("LRU", "LFU"):
        problems.add("eviction_policy", "must be 'LRU' or 'LFU'")
    if max_size is not None and max_size is not _UNSET_SIZE and (
        not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1
    ):
        problems.add("max_size", "must be a positive int or None (unbounded)")
    problems.raise_if_any()
    wanted = _DEFAULT_CACHE_SIZE if max_size is _UNSET_SIZE else max_size
    cache = _client_cache(session, kind, eviction_policy, wanted)
    if max_size is not _UNSET_SIZE and cache.max_size != max_size:
        raise _invalid(
            f"Invalid max_size: {max_size} differs from {cache.max_size}, the size this session's "
            f"{eviction_policy} {kind} cache was made with (the size is fixed for every caller; "
            "omit max_size to use the cache's)"
        )
    key = (service_name, _option_key(kwargs))
    factory = session.client if kind == "client" else session.resource
    return cache.get(key, lambda: factory(service_name, **kwargs))


def cached_client(
    session: boto3.Session,
    service_name: str,
    *,
    eviction_policy: EvictionPolicy = "LRU",
    max_size: int | _CacheSize | None = _UNSET_SIZE,
    **client_kwargs: Any,
) -> Any:
    """``session.client(service_name, **client_kwargs)``, created once and reused.

    Keyed on the session and every argument (a ``Config`` by its options);
    thread-safe; at most ``max_size`` clients per session and policy (``None``:
    unbounded), evicted least recently (``"LRU"``) or least frequently
    (``"LFU"``) used. ``max_size`` is fixed when the session's cache for that
    policy is made (default 10); omitted later, it is the cache's size, and a
    different size raises ``ParamValidationError``. A cached client always
    signs with the credentials of the session it was asked for. Dropping the
    session drops its clients.
    """
    return _cached(session, "client", service_name, eviction_policy, max_size, client_kwargs)


def cached_resource(
    session: boto3.Session,
    service_name: str,
    *,
    eviction_policy: EvictionPolicy = "LRU",
    max_size: int | _CacheSize | None = _UNSET_SIZE,
    **resource_kwargs: Any,
) -> Any:
    """Like :func:`cached_client`, for ``session.resource(...)``.

    boto3 resources are not thread-safe: share a cached resource between
    threads only for reading, or cache per thread.
    """
    return _cached(session, "resource", service_name, eviction_policy, max_size, resource_kwargs)


# ---------------------------------------------------------------------------
# 13. Helpers
# ---------------------------------------------------------------------------


def _account(account_id: object) -> str:
    """A 12-digit account id; an int from 0 to 10**12 - 1 is zero-padded."""
    if isinstance(account_id, int) and not isinstance(account_id, bool) and 0 <= account_id < 10**12:
        return f"{account_id:012d}"
    if isinstance(account_id, str) and _ACCOUNT_ID_RE.fullmatch(account_id):
        return account_id
    shown = repr(account_id)[:40] if isinstance(account_id, (str, int)) else type(account_id).__name__
    raise _invalid(f"Invalid account_id: {shown} is not an AWS account id (a string of 12 digits, or an int from 0 to 10**12 - 1)")


def get_role_arn(account_id: str | int, role_name: str, path: str = "", partition: str = "aws") -> str:
    """The ARN of an IAM role; the path may be given separately or in ``role_name``.

    Account ids are 12-digit strings, or ints (zero-padded to 12 digits);
    anything else raises ``ParamValidationError``.
    """
    if "/" in role_name:
        if path:
            raise ValueError("give the path in role_name or in path, not both")
        path, role_name = role_name.rsplit("/", 1)
    path = path.strip("/")
    prefix = f"{path}/" if path else ""
    return f"arn:{partition}:iam::{_account(account_id)}:role/{prefix}{role_name}"


def get_assumed_role_session_arn(
    account_id: str | int, role_name: str, role_session_name: str, partition: str = "aws"
) -> str:
    """The ARN of an assumed-role session (such ARNs never contain the role's path)."""
    name = role_name.rsplit("/", 1)[-1]
    return f"arn:{partition}:sts::{_account(account_id)}:assumed-role/{name}/{role_session_name}"


def generate_lambda_session_name(
    function_name: str | None = None,
    function_version: str | None = None,
    identifier: str | None = None,
) -> str:
    """A role session name that identifies a Lambda function (at most 64 characters).

    Forms: ``{name}``, ``{name}.{identifier}`` or ``{name}.{version}.{identifier}``.
    The name and version default to ``AWS_LAMBDA_FUNCTION_NAME`` and
    ``AWS_LAMBDA_FUNCTION_VERSION`` (``$LATEST`` is never included); the
    identifier defaults to the execution environment's id from the log stream
    name, else a timestamp (or random characters when fewer than 14 fit).
    A name over 59 characters is used alone (truncated); if name and version
    exceed 59, the version is dropped.
    """
    name = function_name or os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    if not name:
        raise _invalid(
            "Invalid function_name: not given, and AWS_LAMBDA_FUNCTION_NAME is not set "
            "(it is set only inside AWS Lambda)"
        )
    version = function_version or os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "")
    version_part = f".{version}" if version and version != "$LATEST" else ""
    if len(name) > 59:
        value = name[:64]
    else:
        if len(name) + len(version_part) > 59:
            version_part = ""
        room = 63 - len(name) - len(version_part)
        value = f"{name}{version_part}.{_lambda_identifier(identifier, room)}"[:64]
    return re.sub(r"[^\w=,.@-]+", "_", value, flags=re.ASCII)


def _lambda_identifier(identifier: str | None, room: int) -> str:
    if identifier:
        return identifier
    match = re.search(r"[A-Za-z0-9_]+\Z", os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", ""))
    if match:
        return match.group()[:room]
    if room >= 14:
        return _utc_now().strftime("%Y%m%d%H%M%S%f")[:room]
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(room))


def whoami(session: boto3.Session) -> JSONDict:
    """The caller identity (``UserId``, ``Account``, ``Arn``) of ``session``'s credentials."""
    identity = dict(session.client("sts").get_caller_identity())
    identity.pop("ResponseMetadata", None)
    return identity


#: Another name for :func:`whoami`.
get_identity = whoami


def get_credentials(session: boto3.Session) -> dict[str, str | None]:
    """The session's current credentials, refreshed first if needed.

    Returns ``access_key``, ``secret_key``, ``token`` and ``expiry_time``
    (ISO 8601 UTC, or ``None`` for credentials that do not expire), all of
    one generation for the sessions of this module (botocore's own
    credentials are read in two steps). Raises ``NoCredentialsError`` when
    there are none.
    """
    credentials = session.get_credentials()
    if credentials is None:
        raise botocore.exceptions.NoCredentialsError()
    if isinstance(credentials, _RefreshingCredentials):
        generation = credentials.current_generation()  # one object: keys and expiry agree
        return {
            "access_key": generation.access_key,
            "secret_key": generation.secret_key,
            "token": generation.token,
            "expiry_time": _iso(generation.expiry),
        }
    frozen = credentials.get_frozen_credentials()
    expiry = _expiry_of(credentials)
    return {
        "access_key": frozen.access_key,
        "secret_key": frozen.secret_key,
        "token": frozen.token,
        "expiry_time": _iso(expiry) if expiry is not None else None,
    }


# ---------------------------------------------------------------------------
# 14. Credentials as a local service
# ---------------------------------------------------------------------------

# The variables AWS SDKs read to fetch credentials from a container-credentials endpoint.
_CONTAINER_URI_ENV = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
_CONTAINER_TOKEN_ENV = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
_SERVE_TOKEN_RE = _LazyPattern(r"[!-~]{16,1024}")  # visible ASCII: a header value, nothing to split
_REQUEST_TIMEOUT = 10.0
#: Variables that make an SDK use other credentials than the endpoint's
#: (botocore reads environment keys, profiles and the relative URI first).
_SHADOWING_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
)


def _loopback_address(problems: _Problems, host: Any) -> str:
    """The address to bind for ``host``: a loopback address, or ``localhost`` as 127.0.0.1."""
    if isinstance(host, str) and host.lower() == "localhost":
        return "127.0.0.1"
    try:
        if isinstance(host, str) and ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    problems.add("host", "must be a loopback address (127.0.0.1, ::1) or localhost: the endpoint serves credentials to this machine only")
    return ""


def _check_serve_arguments(session: Any, host: Any, port: Any, token: Any) -> str:
    problems = _Problems()
    _check_session(problems, session)
    address = _loopback_address(problems, host)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        problems.add("port", "must be a port number from 0 to 65535 (0: any free port)")
    if token is not None and (not isinstance(token, str) or not _SERVE_TOKEN_RE.fullmatch(token)):
        problems.add("token", "must be a string of 16 to 1024 visible ASCII characters (no spaces)")
    problems.raise_if_any()
    return address


def _container_credentials(session: boto3.Session) -> JSONDict:
    """The container-credentials JSON for the session's current credentials (one generation)."""
    current = get_credentials(session)
    if not current["token"] or not current["expiry_time"]:
        raise InvalidCredentialsError("the session's credentials are not temporary; the endpoint serves temporary credentials only")
    body: JSONDict = {
        "AccessKeyId": current["access_key"],
        "SecretAccessKey": current["secret_key"],
        "Token": current["token"],
        "Expiration": current["expiry_time"],
    }
    account_id = getattr(session.get_credentials(), "account_id", None)  # the same in every generation
    if isinstance(account_id, str) and account_id:
        body["AccountId"] = account_id
    return body


class _EndpointServer(Protocol):
    """What :class:`CredentialsServer` uses of the HTTP server behind it."""

    url: str
    token: bytes

    def serve_forever(self, poll_interval: float = ...) -> None: ...
    def shutdown(self) -> None: ...
    def server_close(self) -> None: ...


@functools.cache
def _endpoint_server_class() -> Callable[[tuple[str, int], boto3.Session, str], _EndpointServer]:
    """The HTTP server class behind :class:`CredentialsServer`, made on first use.

    ``http.server`` is imported here, not at module level: it is the one
    standard-library module the library would add to a Lambda's cold start,
    and most programs never serve credentials.
    """
    import http.server
    import socketserver

    class Server(http.server.ThreadingHTTPServer):
        """The HTTP server behind :class:`CredentialsServer` (one thread per request)."""

        daemon_threads = True
        request_queue_size = 128  # http.server's 5 drops connections when many tools start together

        def __init__(self, address: tuple[str, int], session: boto3.Session, token: str) -> None:
            self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
            super().__init__(address, RequestHandler)
            self.session = session
            self.token = token.encode("ascii")
            self.path = f"/credentials/{secrets.token_urlsafe(16)}"
            host = f"[{address[0]}]" if ":" in address[0] else address[0]
            port = self.server_address[1]
            self.url = f"http://{host}:{port}{self.path}"
            self.hosts = {f"{host}:{port}", f"localhost:{port}"} | ({host, "localhost"} if port == 80 else set())

        def server_bind(self) -> None:
            # HTTPServer.server_bind would look the address up in DNS (getfqdn); nothing needs the name.
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = "localhost", self.server_address[1]

    class RequestHandler(http.server.BaseHTTPRequestHandler):
        """Answers GET on the one path with credentials; anything else gets 403 and no body."""

        server: Server
        server_version = "assume-role-chain"
        sys_version = ""
        timeout = _REQUEST_TIMEOUT

        def do_GET(self) -> None:
            if not self._authorised():
                self._answer(403)
                return
            try:
                body = json.dumps(_container_credentials(self.server.session)).encode()
            except Exception as error:
                logger.warning("credentials endpoint: no credentials to serve: %s: %s", type(error).__name__, _one_line(error))
                self._answer(500)
                return
            self._answer(200, body)

        def _refuse(self) -> None:
            self._answer(403)

        do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse

        def _authorised(self) -> bool:
            """Path, Host and token all right (all three are checked, whatever the first says)."""
            tokens = self.headers.get_all("Authorization") or []
            given = tokens[0].encode("utf-8", "surrogateescape") if len(tokens) == 1 else b""
            token_ok = hmac.compare_digest(given, self.server.token)
            host_ok = (self.headers.get("Host") or "").lower() in self.server.hosts
            path_ok = self.path == self.server.path
            return token_ok and host_ok and path_ok and len(tokens) == 1

        def _answer(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Cache-Control", "no-store")
            if body:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            # Malformed or unsupported requests: the status alone, no page that echoes the request.
            self.close_connection = True
            self._answer(code)

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            # Neither the path nor any header (the token is one) is logged.
            logger.debug("credentials endpoint: %s -> %s", _one_line(self.command or "(unreadable request)")[:20], int(code) if isinstance(code, int) else code)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # http.server's own lines would show the request line

    return Server


class CredentialsServer:
    """A running local container-credentials endpoint (see :func:`serve_credentials`).

    ``url`` and ``token`` are what clients need; ``env`` holds them as the
    two variables AWS SDKs read. ``close()`` (or leaving a ``with`` block)
    stops serving.
    """

    url: str
    token: str

    def __init__(self, server: _EndpointServer) -> None:
        self._server = server
        self.url = server.url
        self.token = server.token.decode("ascii")
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2},
            name="assume-role-chain credentials endpoint", daemon=True,
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"<CredentialsServer {self.url}{' (closed)' if self._closed else ''}>"

    @property
    def env(self) -> dict[str, str]:
        """``AWS_CONTAINER_CREDENTIALS_FULL_URI`` and ``AWS_CONTAINER_AUTHORIZATION_TOKEN``."""
        return {_CONTAINER_URI_ENV: self.url, _CONTAINER_TOKEN_ENV: self.token}

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> CredentialsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_credentials(
    session: boto3.Session, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None
) -> CredentialsServer:
    """Serve ``session``'s credentials on a local container-credentials endpoint.

    Any AWS SDK or the AWS CLI uses them when ``AWS_CONTAINER_CREDENTIALS_FULL_URI``
    and ``AWS_CONTAINER_AUTHORIZATION_TOKEN`` are set (the returned handle's
    ``env``). Only GET on the one path, with the token in ``Authorization``
    and a loopback ``Host``, gets credentials; anything else gets 403. The
    credentials come from the session, so they refresh as it does and any
    number of requests cost one fetch per lifetime. ``host`` must be a
    loopback address; ``port=0`` picks a free port; ``token`` defaults to a
    fresh random one. Returns a :class:`CredentialsServer` (a context manager).
    """
    address = _check_serve_arguments(session, host, port, token)
    server = _endpoint_server_class()((address, port), session, token or secrets.token_urlsafe(32))
    return CredentialsServer(server)


def _child_environment(endpoint: CredentialsServer) -> dict[str, str]:
    """This process's environment for a child that must use the endpoint."""
    env = {name: value for name, value in os.environ.items() if name not in _SHADOWING_ENV}
    env.update(endpoint.env)
    return env


@contextlib.contextmanager
def _signals_handled(handler: Callable[[int], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``handler`` while the block runs (main thread only)."""
    previous: dict[int, Any] = {}
    try:
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, lambda received, _frame: handler(received))
    except ValueError:  # not the main thread: the default handlers stay
        pass
    try:
        yield
    finally:
        for restored, action in previous.items():
            signal.signal(restored, action)


def _serve_until_interrupted(endpoint: CredentialsServer) -> int:
    """Print the two ``export`` lines, then serve until SIGINT or SIGTERM."""
    stop = threading.Event()
    with _signals_handled(lambda _number: stop.set()):
        _write_stdout("\n".join(f"export {name}={shlex.quote(value)}" for name, value in endpoint.env.items()))
        while not stop.wait(0.5):
            pass
    return 0


def _serve_child(endpoint: CredentialsServer, command: Sequence[str]) -> int:
    """Run ``command`` with the endpoint's variables; its exit status (128 + N for signal N)."""
    try:
        child = subprocess.Popen(list(command), env=_child_environment(endpoint))
    except OSError as error:
        print(f"{command[0]}: cannot run: {error.strerror or error}", file=sys.stderr)
        return 127 if isinstance(error, FileNotFoundError) else 126
    with _signals_handled(child.send_signal):  # the child decides what an interrupt means
        status = child.wait()
    return 128 - status if status < 0 else status


def _serve_session(session: boto3.Session, port: int, token_file: str | None, command: Sequence[str] | None) -> int:
    """The ``serve`` command of both command lines, once ``session`` is built."""
    token = _read_token_file(token_file) if token_file else None
    try:
        endpoint = serve_credentials(session, port=port, token=token)
    except OSError as error:
        raise _invalid(f"Invalid --port: cannot listen on 127.0.0.1:{port}: {error.strerror or error}") from None
    with endpoint:
        get_credentials(session)  # fail now, not at the first client's request
        if command:
            return _serve_child(endpoint, command)
        return _serve_until_interrupted(endpoint)


def _read_token_file(path: str) -> str:
    try:
        with open(path, encoding="ascii") as file:
            token = file.read(2048).strip()
    except (OSError, UnicodeDecodeError) as error:
        raise _invalid(f"Invalid --token-file: cannot read {path!r}: {getattr(error, 'strerror', None) or type(error).__name__}") from None
    if not _SERVE_TOKEN_RE.fullmatch(token):
        raise _invalid("Invalid --token-file: the token must be 16 to 1024 visible ASCII characters (no spaces)")
    return token


def _split_exec(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """``serve`` arguments before ``--exec``, and the command after it (``--`` optional)."""
    if "--exec" not in argv:
        return list(argv), None
    index = list(argv).index("--exec")
    command = list(argv[index + 1:])
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise _UsageError("--exec needs a command: --exec -- COMMAND [ARGS...]")
    return list(argv[:index]), command


# ---------------------------------------------------------------------------
# 15. Command line
# ---------------------------------------------------------------------------

EXIT_BAD_ARGUMENTS = 2
EXIT_NO_CREDENTIALS = 3
EXIT_ASSUME_ROLE_FAILED = 4
EXIT_CLOSED_STDOUT = 141  # 128 + SIGPIPE, what a shell reports for `cat` in `cat | head -c1`

_REDACTED = "***"


class _UsageError(Exception):
    pass


def _json_value(text: str, expected: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise _bad_value(f"must be {expected}; this is not valid JSON") from None


def _json_object(text: str) -> Any:
    value = _json_value(text, "a JSON object")
    if not isinstance(value, dict):
        raise _bad_value("must be a JSON object")
    return value


def _looks_like_json(text: str) -> bool:
    return text.lstrip()[:1] in ("[", "{")


def _string_list(text: str) -> list[str]:
    """``a,b`` or a JSON list of strings."""
    if not _looks_like_json(text):
        return [item.strip() for item in text.split(",") if item.strip()]
    value = _json_value(text, "Key1,Key2 or a JSON list of strings")
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise _bad_value("must be Key1,Key2 or a JSON list of strings")


def _policy_arns(text: str) -> list[Any]:
    """``Arn1,Arn2``, a JSON list of ARNs, or the API's JSON list of ``{"arn": ...}`` objects."""
    if not _looks_like_json(text):
        return [item.strip() for item in text.split(",") if item.strip()]
    value = _json_value(text, 'Arn1,Arn2 or a JSON list of ARNs or of {"arn": ARN} objects')
    if isinstance(value, list) and all(
        isinstance(item, str) or (isinstance(item, dict) and set(item) == {"arn"} and isinstance(item["arn"], str))
        for item in value
    ):
        return value
    raise _bad_value('must be Arn1,Arn2 or a JSON list of ARNs or of {"arn": ARN} objects')


def _key_values(text: str) -> dict[str, str]:
    """``Key=Value,Key2=Value2`` or a JSON object (values may contain '=')."""
    if _looks_like_json(text):
        value = _json_object(text)
        if not all(isinstance(v, str) for v in value.values()):
            raise _bad_value("tag values must be strings")
        return dict(value)
    pairs: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _bad_value("must be Key=Value,Key2=Value2 or a JSON object")
        pairs[key.strip()] = value.strip()
    return pairs


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _bad_value("must be a whole number") from None


def _redact_values(message: str, argv: Sequence[str]) -> str:
    """``message`` with every value typed on the command line replaced by ``***``.

    Option names stay (``--token-code ***``): a usage error must not echo an
    MFA code or a PIN typed after a misspelt option.
    """
    for arg in argv:  # -xVALUE: a short option with its value attached
        if re.fullmatch(r"-[^-\d].+", arg) and "=" not in arg:
            message = re.sub(rf"(?<!\S){re.escape(arg)}(?!\S)", arg[:2] + _REDACTED, message)
    values = {arg.partition("=")[2] if arg.startswith("-") else arg for arg in argv} - {""}
    for value in sorted(values, key=len, reverse=True):
        message = re.sub(rf"(?<![\w-]){re.escape(value)}(?![\w-])", _REDACTED, message)
    return message


def _bad_value(message: str) -> Exception:
    """The error an argument converter raises: argparse prints ``message`` as the reason."""
    import argparse

    return argparse.ArgumentTypeError(message)


@functools.lru_cache(maxsize=1)
def _parser_class() -> type[argparse.ArgumentParser]:
    import argparse

    class _Parser(argparse.ArgumentParser):
        """Usage errors become one redacted line; ``main`` prints it."""

        _argv: Sequence[str] = ()

        def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
            self._argv = list(sys.argv[1:] if args is None else args)
            return super().parse_args(self._argv, namespace)

        def error(self, message: str) -> Any:
            raise _UsageError(_redact_values(message, self._argv))

    return _Parser


def _build_parser(serve: bool = False) -> argparse.ArgumentParser:
    """The credentials command's parser; with ``serve``, the ``serve`` command's."""
    parser = _parser_class()(
        prog="assume-role-chain serve" if serve else "assume-role-chain",
        description="Serve a role chain's credentials on a local container-credentials endpoint."
        if serve else "Assume one role, or a chain of roles, and print the credentials "
        "(or: assume-role-chain serve ROLE_ARN ... to serve them).",
    )
    parser.add_argument("RoleArn", nargs="+", help="role ARN; several make a chain A -> B -> C")
    parser.add_argument("--profile", help="AWS config profile of the starting credentials")
    parser.add_argument("--region", help="region for STS and the printed session")
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument("--cache-dir", help="cache credentials in this folder (JSON files, 0600)")
    cache.add_argument("--cache", type=_fleet_cache_url, metavar="URL",
                       help="share credentials through a fleet store: redis://HOST:PORT/DB, rediss://... or "
                       f"dynamodb://TABLE; entries are encrypted with ${_CACHE_KEY_VARIABLE} (base64 of 32 bytes) if set")
    cache.add_argument("--no-cache", action="store_true", help="no file cache, even for --output credential-process")
    if serve:
        _add_serve_arguments(parser)
    else:
        _add_output_arguments(parser)
    _add_assume_role_arguments(parser)
    return parser


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(format="env", whoami=False)
    _add_endpoint_arguments(parser)


def _add_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """The credentials endpoint's options, for ``assume-role-chain serve`` and ``python -m iot_x509 serve``."""
    parser.add_argument("--port", type=_whole_number, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--token-file", help="read the authorization token from this file (default: a fresh random one)")
    parser.add_argument(
        "--exec", dest="exec_help", metavar="-- COMMAND [ARGS...]",
        help="run COMMAND with the endpoint's variables, exit with its status, stop serving "
        "(last option; without it the export lines are printed and the endpoint runs until interrupted)",
    )


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--output", dest="format", choices=("env", "json", "credential-process"),
        help="env: shell-quoted KEY=value lines (default); json: credential_process JSON; "
        "credential-process: the same JSON, cached in ~/.aws/assume-role-chain/cache unless --no-cache",
    )
    output.add_argument("--env", dest="format", action="store_const", const="env", help="same as --output env")
    output.add_argument("--json", dest="format", action="store_const", const="json", help="same as --output json")
    parser.set_defaults(format="env")
    parser.add_argument("--whoami", action="store_true", help="print the identity of the last hop instead of credentials")


def _add_assume_role_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--RoleSessionName")
    parser.add_argument("--PolicyArns", type=_policy_arns, help='Arn1,Arn2, a JSON list of ARNs or of {"arn": ARN} objects')
    parser.add_argument("--Policy", type=_json_object, help="JSON object")
    parser.add_argument("--DurationSeconds", type=_whole_number)
    parser.add_argument("--Tags", type=_key_values, help="Key=Value,Key2=Value2 or a JSON object")
    parser.add_argument("--TransitiveTagKeys", type=_string_list, help="Key1,Key2 or a JSON list")
    parser.add_argument("--ExternalId")
    parser.add_argument("--SourceIdentity")
    parser.add_argument("--SerialNumber", help="MFA device (first hop only); without --TokenCode or "
                        "--mfa-command the code is read from the terminal, or a line of standard input")
    parser.add_argument("--TokenCode", help="MFA code (first hop only)")
    parser.add_argument("--mfa-command", help="command that prints an MFA code (first hop only)")
    parser.add_argument(
        "--mfa-session", action="store_true",
        help="start with an MFA session (GetSessionToken with --SerialNumber, 12 h): the code is asked "
        "for once and the session cached in ~/.aws/assume-role-chain/cache (or --cache-dir; none with --no-cache)",
    )
    parser.add_argument("--additional-kwargs", type=_json_object, help="JSON object of further AssumeRole parameters")
    parser.add_argument("--sts-client-kwargs", type=_json_object, help="JSON object of STS client options, e.g. endpoint_url")


_CHAIN_WIDE = ("RoleSessionName", "PolicyArns", "Policy", "DurationSeconds", "Tags", "TransitiveTagKeys", "ExternalId", "SourceIdentity")


class _TokenCodeReader:
    """Reads an MFA code when a fetch needs one: from the terminal, else one line of stdin."""

    def __init__(self, serial_number: str) -> None:
        self.serial_number = serial_number

    def __call__(self) -> str:
        if sys.stdin is not None and sys.stdin.isatty():
            code, source = getpass.getpass(f"MFA code for {self.serial_number}: "), "the terminal"
        else:
            code, source = (sys.stdin.readline() if sys.stdin is not None else ""), "standard input"
        code = code.strip()
        if not code:
            raise MFATokenError(f"no MFA code for {self.serial_number} on {source}")
        if not _TOKEN_RE.fullmatch(code):
            raise MFATokenError(f"the MFA code read from {source} is not six digits")
        return code


_CACHE_KEY_VARIABLE = "ASSUME_ROLE_CHAIN_CACHE_KEY"


def _fleet_cache_url(text: str) -> str:
    scheme, _, rest = text.partition("://")
    if scheme not in ("redis", "rediss", "dynamodb") or not rest:
        raise _bad_value("must be redis://HOST:PORT/DB, rediss://HOST:PORT/DB or dynamodb://TABLE")
    if scheme == "dynamodb" and not _TABLE_NAME_RE.fullmatch(rest):
        raise _bad_value("dynamodb://TABLE needs a DynamoDB table name (3 to 255 letters, digits, '_', '.', '-')")
    return text


def _cache_key_from_environment() -> bytes | None:
    """The fleet cache's encryption key: base64 of 32 bytes in ``$ASSUME_ROLE_CHAIN_CACHE_KEY``, if set."""
    text = os.environ.get(_CACHE_KEY_VARIABLE)
    if not text:
        return None
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise _invalid(f"Invalid ${_CACHE_KEY_VARIABLE}: must be base64 of 32 bytes (e.g. head -c 32 /dev/urandom | base64)")
    return key


def _fleet_cache(url: str, session: boto3.Session) -> RedisCache | DynamoDBCache:
    """``--cache URL``: Redis/Valkey, or a DynamoDB table reached with the starting session."""
    key = _cache_key_from_environment()
    if url.startswith("dynamodb://"):
        return DynamoDBCache(url.partition("://")[2], session=session, encryption_key=key)
    return RedisCache.from_url(url, encryption_key=key)


def _cache_from_args(args: argparse.Namespace, session: boto3.Session) -> JSONFileCache | RedisCache | DynamoDBCache | None:
    """``--cache URL`` or ``--cache-dir``; else, for ``--output credential-process``, the default folder."""
    if args.cache:
        return _fleet_cache(args.cache, session)
    if args.cache_dir:
        return JSONFileCache(args.cache_dir)
    if args.format == "credential-process" and not args.no_cache:
        return JSONFileCache()
    return None


def _chain_from_args(args: argparse.Namespace) -> boto3.Session:
    problems = _Problems()
    _check_region(problems, args.region)
    if args.region is not None:
        problems.items = [item.replace("region_name", "--region") for item in problems.items]
    problems.raise_if_any()
    session = boto3.Session(profile_name=args.profile, region_name=args.region)
    common = {name: getattr(args, name) for name in _CHAIN_WIDE if getattr(args, name) is not None}
    if args.additional_kwargs:
        common["additional_kwargs"] = args.additional_kwargs
    cache = _cache_from_args(args, session)
    if cache is not None:
        common["cache"] = cache
    if args.sts_client_kwargs:
        common["sts_client_kwargs"] = STSClientConfig(args.sts_client_kwargs)
    mfa: JSONDict = {"SerialNumber": args.SerialNumber, "TokenCode": args.TokenCode, "mfa_token_provider": args.mfa_command}
    if args.SerialNumber is not None and args.TokenCode is None and args.mfa_command is None:
        mfa["mfa_token_provider"] = _TokenCodeReader(args.SerialNumber)
    mfa = {name: value for name, value in mfa.items() if value is not None}
    try:
        if args.mfa_session:
            session = _mfa_session_from_args(session, args, mfa, cache)
            mfa = {}
        return assume_role_chain(session, [{"RoleArn": args.RoleArn[0], **mfa}, *args.RoleArn[1:]], **common)
    except _RegionRequiredError as error:
        raise _invalid(f"Invalid --region: {_region_required_message(error.endpoint, '--region')}") from None


def _mfa_session_from_args(session: boto3.Session, args: argparse.Namespace, mfa: JSONDict, cache: JSONFileCache | RedisCache | DynamoDBCache | None) -> boto3.Session:
    """``--mfa-session``: the first hop's MFA options open an MFA session, cached by default."""
    if args.SerialNumber is None:
        raise _UsageError("--mfa-session needs --SerialNumber (the MFA device)")
    if cache is None and not args.no_cache:
        cache = JSONFileCache()
    return _mfa_session(
        session, mfa.pop("SerialNumber"), TokenCode=mfa.get("TokenCode"),
        mfa_token_provider=mfa.get("mfa_token_provider"), mfa_token_provider_kwargs=None,
        DurationSeconds=43200, cache=cache,
        region_name=None, sts_client_kwargs=STSClientConfig(args.sts_client_kwargs) if args.sts_client_kwargs else None,
    )


def _credentials_text(session: boto3.Session, output: str) -> str:
    """``credential_process`` JSON, or ``KEY=value`` lines quoted for a POSIX shell."""
    current = get_credentials(session)
    if output in ("json", "credential-process"):
        data: JSONDict = {
            "Version": 1,
            "AccessKeyId": current["access_key"],
            "SecretAccessKey": current["secret_key"],
            "SessionToken": current["token"],
        }
        if current["expiry_time"]:
            data["Expiration"] = current["expiry_time"]
        return json.dumps(data, indent=2)
    names = {
        "AWS_ACCESS_KEY_ID": current["access_key"],
        "AWS_SECRET_ACCESS_KEY": current["secret_key"],
        "AWS_SESSION_TOKEN": current["token"],
        "AWS_CREDENTIALS_EXPIRATION": current["expiry_time"],
    }
    return "\n".join(f"{name}={shlex.quote(value)}" for name, value in names.items() if value)


def _write_stdout(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _silence_closed_stdout() -> None:
    """Point fd 1 at /dev/null so that the interpreter's last flush cannot fail either."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class _HeldWarnings(logging.Handler):
    """Keeps the library's warnings while the command runs, as one line each.

    ``main`` prints them after a success; a failure prints its one line only.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.lines.append(_one_line(record.getMessage()))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print credentials for a role or a chain of roles.

    ``serve ROLE_ARN ...`` serves them on a local container-credentials
    endpoint instead (see :func:`serve_credentials`); with ``--exec -- COMMAND``
    it exits with the command's status.

    Exit codes: 0 success, 2 bad arguments, 3 no starting credentials,
    4 AssumeRole refused or failed, 141 standard output closed early.
    Every failure is one line on stderr.
    """
    held = _HeldWarnings()
    logger.addHandler(held)
    try:
        with warnings.catch_warnings(record=True) as caught:
            code = _run(argv)
        if code == 0:
            lines = held.lines + [_one_line(w.message) for w in caught if issubclass(w.category, UserWarning)]
            for line in dict.fromkeys(lines):  # a warning both logged and warned is printed once
                print(f"assume-role-chain: warning: {line}", file=sys.stderr)
        return code
    finally:
        logger.removeHandler(held)


def _run(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["serve"]:
            options, command = _split_exec(argv[1:])
            args = _build_parser(serve=True).parse_args(options)
            return _serve_session(_chain_from_args(args), args.port, args.token_file, command)
        args = _build_parser().parse_args(argv)
        session = _chain_from_args(args)
        if args.whoami:
            _write_stdout(json.dumps(whoami(session), indent=2))
        else:
            _write_stdout(_credentials_text(session, args.format))
    except BrokenPipeError:
        _silence_closed_stdout()
        return EXIT_CLOSED_STDOUT
    except _UsageError as error:
        _fail(f"bad arguments: {_one_line(error)}")
        return EXIT_BAD_ARGUMENTS
    except botocore.exceptions.ParamValidationError as error:
        report = str(error.kwargs.get("report", error))
        _fail(f"bad arguments: {_one_line('; '.join(report.splitlines()))}")
        return EXIT_BAD_ARGUMENTS
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.ProfileNotFound) as error:
        _fail(f"no starting credentials: {_one_line(error)}")
        return EXIT_NO_CREDENTIALS
    except botocore.exceptions.ClientError as error:
        info = error.response.get("Error", {})
        _fail(f"AssumeRole refused [{_one_line(str(info.get('Code')))}]: {_one_line(str(info.get('Message')))}")
        return EXIT_ASSUME_ROLE_FAILED
    except botocore.parsers.ResponseParserError as error:  # its text ends with the whole answer
        _fail(f"AssumeRole failed: {_one_line(str(error).splitlines()[0])}")
        return EXIT_ASSUME_ROLE_FAILED
    except (botocore.exceptions.BotoCoreError, OSError) as error:
        _fail(f"AssumeRole failed: {_one_line(error)}")
        return EXIT_ASSUME_ROLE_FAILED
    return 0


def _fail(message: str) -> None:
    print(f"assume-role-chain: {message}", file=sys.stderr)


def _one_line(text: object) -> str:
    """``text`` on one line: control characters (newlines included) are escaped, as ``\\n``."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
        for ch in str(text)
    )


_install_log_redaction()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinitialise_after_fork)

if __name__ == "__main__":
    sys.exit(main())
