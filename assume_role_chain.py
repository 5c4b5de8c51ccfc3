"""Assumed-role boto3 sessions whose credentials refresh themselves.

``assume_role(session, RoleArn)`` returns a plain :class:`boto3.Session`. Its
credentials are fetched with STS AssumeRole on first use and fetched again
before they expire, using the parent session's *current* credentials, so a
chain ``A -> B -> C`` refreshes hop by hop. ``refreshable_session(fetch)`` does
the same for any function that returns temporary credentials.

This module is a single file on purpose: copy it next to a Lambda handler and
it works with nothing but the standard library, boto3 and botocore.

Sections, in reading order:

1. Time
2. Errors and argument validation
3. Refresh windows and refresh events
4. The refresh engine
5. The JSON file cache
5b. Fleet caches: Redis/Valkey and DynamoDB
6. Building child sessions
7. Credential sources (AssumeRole, MFA codes, custom functions)
8. Public API
9. Cached clients
10. Helpers (ARNs, Lambda session names, whoami)
11. Command line
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import dataclasses
import datetime as dt
import errno
import getpass
import hashlib
import inspect
import json
import logging
import math
import os
import random
import re
import secrets
import shlex
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, Literal, Protocol, Union

import boto3
import botocore.config
import botocore.configprovider
import botocore.credentials
import botocore.exceptions
import botocore.loaders
import botocore.session
import botocore.validate

try:  # file locking is POSIX-only; elsewhere the cache degrades to no lock
    import fcntl
except ImportError:  # pragma: no cover - exercised only on Windows
    fcntl = None  # type: ignore[assignment]

__version__ = "0.1.0"

__all__ = [
    "AUTOMATIC_ROLE_SESSION_NAME",
    "AssumeRoleConfig",
    "ClientCache",
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
    "patch_boto3",
    "refresh_windows",
    "refreshable_session",
    "remove_refresh_listener",
    "whoami",
]

logger = logging.getLogger(__name__)

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


_NAME_RE = re.compile(r"[\w+=,.@-]+")
_EXTERNAL_ID_RE = re.compile(r"[\w+=,.@:/-]+")
_SERIAL_RE = re.compile(r"[\w+=/:,.@-]+")
_ROLE_ARN_RE = re.compile(
    r"arn:aws[\w-]*:iam::\d{12}:role/(?:[\x21-\x7e]*/)?[\w+=,.@-]{1,64}"
)
_POLICY_ARN_RE = re.compile(r"arn:aws[\w-]*:iam::(?:\d{12}|aws):policy/[\x21-\x7e]+")
_TOKEN_RE = re.compile(r"\d{6}")

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
    problems: _Problems, param: str, value: Any, pattern: re.Pattern[str]
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


def _check_policy_arns(problems: _Problems, policy_arns: Any) -> None:
    if policy_arns is None:
        return
    if isinstance(policy_arns, (str, bytes)) or not isinstance(policy_arns, Sequence):
        problems.add("PolicyArns", "must be a list of ARN strings or of {'arn': ...} dicts")
        return
    if len(policy_arns) > 10:
        problems.add("PolicyArns", f"at most 10 managed policies, got {len(policy_arns)}")
    for index, item in enumerate(policy_arns):
        arn = item.get("arn") if isinstance(item, Mapping) else item
        if not isinstance(arn, str) or not _POLICY_ARN_RE.fullmatch(arn) or len(arn) > 2048:
            problems.add(f"PolicyArns[{index}]", f"{str(arn)[:100]!r} is not an IAM policy ARN")


def _check_tags(problems: _Problems, tags: Any) -> None:
    if tags is None:
        return
    if isinstance(tags, Mapping):
        pairs = list(tags.items())
    elif isinstance(tags, Sequence) and not isinstance(tags, (str, bytes)):
        pairs = []
        for index, tag in enumerate(tags):
            if not isinstance(tag, Mapping) or set(tag) != {"Key", "Value"}:
                problems.add(f"Tags[{index}]", "must be a dict with exactly 'Key' and 'Value'")
                return
            pairs.append((tag["Key"], tag["Value"]))
    else:
        problems.add("Tags", "must be a mapping or a list of {'Key', 'Value'} dicts")
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
    if contexts is None:
        return
    if isinstance(contexts, (str, bytes)) or not isinstance(contexts, Sequence):
        problems.add("ProvidedContexts", "must be a list of {'ProviderArn', 'ContextAssertion'} dicts")
        return
    if len(contexts) > 5:
        problems.add("ProvidedContexts", f"at most 5 contexts, got {len(contexts)}")
    for index, item in enumerate(contexts):
        if not isinstance(item, Mapping) or not set(item) <= {"ProviderArn", "ContextAssertion"}:
            problems.add(f"ProvidedContexts[{index}]", "must be a dict of ProviderArn and ContextAssertion")


def _check_region(problems: _Problems, region_name: Any) -> None:
    if region_name is None or isinstance(region_name, bool):
        return
    if not isinstance(region_name, str) or not re.fullmatch(r"[a-z0-9-]{1,50}", region_name):
        problems.add("region_name", "must be None, True, False or a region name such as 'us-east-1'")


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
# 3. Refresh windows and refresh events
# ---------------------------------------------------------------------------


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

    Listeners run in the refreshing thread and must be quick; an exception in
    a listener is logged and otherwise ignored.
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


# ---------------------------------------------------------------------------
# 4. The refresh engine
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Credentials:
    """One generation of temporary credentials (secrets hidden from repr)."""

    access_key: str
    secret_key: str = dataclasses.field(repr=False)
    token: str | None = dataclasses.field(repr=False)
    expiry: dt.datetime
    issued: dt.datetime
    account_id: str | None = None

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
    for name, value in zip(fields[:3], (access_key, secret_key, token), strict=True):
        if not isinstance(value, str):
            raise InvalidCredentialsError(f"{name} must be a string")
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
    """Where a refreshing credentials object gets new credentials from."""

    name: str

    def cache_key(self) -> str | None: ...

    def fetch(self) -> Any: ...

    def after_fork(self) -> None: ...


_BACKOFF_BASE = 1.0
_BACKOFF_CAP = 30.0

_live_engines: weakref.WeakSet[_RefreshingCredentials] = weakref.WeakSet()


class _RefreshingCredentials(botocore.credentials.DeferredRefreshableCredentials):
    """botocore credentials with windows scaled to the lifetime.

    botocore calls ``_refresh()`` before every read of the credentials; this
    class replaces that one method (and keeps the rest of botocore's class) to
    add lifetime-scaled windows, a cache that coordinates processes, static
    stability with jittered backoff, and fork safety.
    """

    def __init__(
        self,
        source: _CredentialSource,
        *,
        cache: MutableMapping[str, Any] | None = None,
        clock: Clock | None = None,
        advisory_timeout: float | None = None,
        mandatory_timeout: float | None = None,
    ) -> None:
        super().__init__(
            refresh_using=self._unused_refresh_using,
            method="assume-role-chain",
            time_fetcher=clock or _utc_now,
        )
        self._source = source
        self._cache = cache
        self._fixed_advisory = advisory_timeout
        self._fixed_mandatory = mandatory_timeout
        self._windows = RefreshWindows(0.0, 0.0, 0.0)
        self._lock = threading.Lock()
        self._failures = 0
        self._next_attempt: dt.datetime | None = None
        self._last_error: BaseException | None = None
        self._warned_windows = False
        self._proactive = False
        _live_engines.add(self)

    def __repr__(self) -> str:
        expiry = _iso(self._expiry_time) if self._expiry_time else "not fetched yet"
        return f"<refreshing credentials for {self._source.name}, expiry {expiry}>"

    def _unused_refresh_using(self) -> JSONDict:  # botocore requires the argument
        raise RuntimeError("assume_role_chain refreshes through _refresh()")

    # -- state ---------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return self._time_fetcher()  # type: ignore[attr-defined,no-any-return]

    def _seconds_left(self) -> float | None:
        if self._frozen_credentials is None or self._expiry_time is None:
            return None
        return float((self._expiry_time - self._now()).total_seconds())

    def _state(self) -> Literal["fresh", "advisory", "mandatory", "unusable"]:
        left = self._seconds_left()
        if left is None or left <= self._windows.margin:
            return "unusable"
        if left < self._windows.mandatory:
            return "mandatory"
        if left < self._windows.advisory:
            return "advisory"
        return "fresh"

    def _may_attempt(self) -> bool:
        return self._next_attempt is None or self._now() >= self._next_attempt

    # -- botocore's hook -------------------------------------------------------

    def _refresh(self) -> None:
        if self._proactive:
            _proactive_refresher.ensure_running()  # e.g. in a forked child
        state = self._state()
        if state == "fresh":
            return
        if state == "advisory":
            if self._may_attempt() and self._lock.acquire(blocking=False):
                try:
                    self._refresh_holding_lock(required=False)
                finally:
                    self._lock.release()
            return
        with self._lock:
            self._refresh_holding_lock(required=True)

    def _refresh_holding_lock(self, required: bool) -> None:
        state = self._state()
        if state == "fresh" or (state == "advisory" and required):
            return  # another thread refreshed while this one waited
        usable = state != "unusable"
        if not self._may_attempt():
            if usable:
                return  # static stability: keep serving, retry after backoff
            assert self._last_error is not None
            raise self._last_error.with_traceback(None)
        self._attempt(usable)

    def _attempt(self, usable: bool) -> None:
        started = time.perf_counter()
        logger.debug("refreshing credentials for %s", self._source.name)
        try:
            credentials, outcome = self._obtain()
            self._check_usable(credentials)
        except Exception as error:
            self._record_failure(error, started, usable)
            if usable:
                return
            _add_note(error, f"assume_role_chain: no usable credentials for {self._source.name}")
            raise
        self._install(credentials)
        self._failures, self._next_attempt, self._last_error = 0, None, None
        elapsed = time.perf_counter() - started
        logger.debug(
            "credentials for %s %s in %.3f s, expire %s",
            self._source.name, outcome, elapsed, _iso(credentials.expiry),
        )
        _emit(RefreshEvent(self._source.name, outcome, credentials.expiry, elapsed))

    def _record_failure(self, error: Exception, started: float, usable: bool) -> None:
        self._failures += 1
        self._last_error = error
        delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (self._failures - 1))
        delay *= random.uniform(0.5, 1.0)
        next_attempt = self._now() + dt.timedelta(seconds=delay)
        if usable and self._expiry_time is not None:
            usable_until = self._expiry_time - dt.timedelta(seconds=self._windows.margin)
            next_attempt = min(next_attempt, usable_until)
        self._next_attempt = next_attempt
        elapsed = time.perf_counter() - started
        if usable:
            logger.warning(
                "refreshing credentials for %s failed (%s: %s); still serving the "
                "current ones (expire %s), next attempt in %.1f s",
                self._source.name, type(error).__name__, error,
                _iso(self._expiry_time) if self._expiry_time else "?", delay,
            )
        else:
            logger.warning(
                "fetching credentials for %s failed after %.3f s (%s: %s); no usable "
                "credentials remain",
                self._source.name, elapsed, type(error).__name__, error,
            )
        _emit(RefreshEvent(self._source.name, "failed", None, elapsed, error))

    # -- getting credentials -------------------------------------------------

    def _obtain(self) -> tuple[_Credentials, Literal["fetched", "cache-hit"]]:
        # A cache that fails is skipped (see _cache_failed): it never costs credentials.
        cache = self._cache
        key = None if cache is None else self._source.cache_key()
        if cache is None or key is None:
            return self._fetch(), "fetched"
        cached = self._from_cache(cache, key)
        if cached is not None:
            return cached, "cache-hit"
        with _entry_lock(cache, key):
            cached = self._from_cache(cache, key)  # another process may have fetched
            if cached is not None:
                return cached, "cache-hit"
            credentials = self._fetch()
            self._to_cache(cache, key, credentials)
            return credentials, "fetched"

    def _fetch(self) -> _Credentials:
        data = self._source.fetch()
        return _credentials_from_mapping(data, self._now())

    def _windows_for(self, credentials: _Credentials) -> RefreshWindows:
        scaled = refresh_windows(credentials.lifetime)
        advisory = scaled.advisory if self._fixed_advisory is None else self._fixed_advisory
        mandatory = scaled.mandatory if self._fixed_mandatory is None else self._fixed_mandatory
        if self._fixed_advisory is None:
            advisory = max(advisory, mandatory)  # a fixed mandatory window widens the advisory one
        if self._fixed_mandatory is None:
            mandatory = min(mandatory, advisory)  # and a fixed advisory window narrows the mandatory one
        return RefreshWindows(advisory=advisory, mandatory=mandatory, margin=scaled.margin)

    def _warn_if_windows_exceed(self, credentials: _Credentials) -> None:
        fixed = max(self._fixed_advisory or 0.0, self._fixed_mandatory or 0.0)
        if fixed >= credentials.lifetime and not self._warned_windows:
            self._warned_windows = True
            message = (
                f"refresh window of {fixed:g} s for {self._source.name} is not shorter than the "
                f"credentials' lifetime ({credentials.lifetime:.0f} s): every use will refresh"
            )
            logger.warning(message)
            warnings.warn(message, RefreshWindowWarning, stacklevel=2)

    def _is_fresh(self, credentials: _Credentials) -> bool:
        left = (credentials.expiry - self._now()).total_seconds()
        return left >= self._windows_for(credentials).advisory

    def _check_usable(self, credentials: _Credentials) -> None:
        left = (credentials.expiry - self._now()).total_seconds()
        if left <= self._windows_for(credentials).margin:
            raise InvalidCredentialsError(
                f"Expiration {_iso(credentials.expiry)} is already past or within "
                f"the safety margin (now {_iso(self._now())})",
                provider=self._source.name,
            )

    def _from_cache(self, cache: MutableMapping[str, Any], key: str) -> _Credentials | None:
        credentials = None
        try:
            entry = cache[key]
        except KeyError:
            entry = None
        except Exception as error:
            _cache_failed(cache, "read", error)
            entry = None
        if entry is not None:
            try:
                credentials = _credentials_from_mapping(entry, self._now())
            except Exception as error:  # a broken entry is a miss, never a failure
                logger.debug("ignoring unusable cache entry for %s: %s", self._source.name, error)
        if credentials is not None and self._is_fresh(credentials):
            logger.debug("cache hit for %s", self._source.name)
            return credentials
        logger.debug("cache miss for %s", self._source.name)
        return None

    def _to_cache(self, cache: MutableMapping[str, Any], key: str, credentials: _Credentials) -> None:
        try:
            cache[key] = credentials.to_cache_entry()
        except Exception as error:
            _cache_failed(cache, "write", error)

    def _install(self, credentials: _Credentials) -> None:
        # The one place that writes botocore's private fields: botocore's
        # properties and get_frozen_credentials() read exactly these.
        self._warn_if_windows_exceed(credentials)
        self._windows = self._windows_for(credentials)
        self._advisory_refresh_timeout = self._windows.advisory
        self._mandatory_refresh_timeout = self._windows.mandatory
        self._access_key = credentials.access_key
        self._secret_key = credentials.secret_key
        self._token = credentials.token
        self._account_id = credentials.account_id
        self._expiry_time = credentials.expiry
        self._frozen_credentials = _frozen(credentials)

    # -- proactive refresh ----------------------------------------------------

    def start_proactive_refresh(self) -> None:
        """Fetch now (so errors surface at once), then refresh in the background."""
        self.get_frozen_credentials()
        self._proactive = True
        _proactive_refresher.add(self)

    def seconds_until_due(self) -> float:
        """Seconds until the advisory window opens (or the backoff ends)."""
        now = self._now()
        if self._expiry_time is None or self._frozen_credentials is None:
            due = now
        else:
            due = self._expiry_time - dt.timedelta(seconds=self._windows.advisory)
        if self._next_attempt is not None and self._next_attempt > due:
            due = self._next_attempt
        return float((due - now).total_seconds())

    def after_fork_in_child(self) -> None:
        """Replace locks that another thread of the parent may have held."""
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._source.after_fork()


def _add_note(error: BaseException, note: str) -> None:
    """Say which source failed, on Python 3.11+, without changing the error's type."""
    add_note = getattr(error, "add_note", None)
    if add_note is not None and note not in getattr(error, "__notes__", ()):
        add_note(note)


def _frozen(credentials: _Credentials) -> botocore.credentials.ReadOnlyCredentials:
    # ReadOnlyCredentials gained account_id in botocore 1.35; older ones have 3 fields.
    fields = [credentials.access_key, credentials.secret_key, credentials.token]
    if len(botocore.credentials.ReadOnlyCredentials._fields) > 3:
        fields.append(credentials.account_id)
    return botocore.credentials.ReadOnlyCredentials(*fields)


class _ProactiveRefresher:
    """One daemon thread that refreshes eager sessions before a call must wait.

    It wakes at the earliest advisory moment of the sessions it serves, and at
    least every second (so a clock that jumps, as in tests, is noticed).
    """

    _POLL_SECONDS = 1.0

    def __init__(self) -> None:
        self._engines: weakref.WeakSet[_RefreshingCredentials] = weakref.WeakSet()
        self._lock = threading.Lock()
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
        self._lock = threading.Lock()
        self._wakeup = threading.Event()
        self._thread = None  # restarted by the next credential read


_proactive_refresher = _ProactiveRefresher()


def _reinitialise_after_fork() -> None:
    _proactive_refresher.after_fork_in_child()
    for engine in list(_live_engines):
        engine.after_fork_in_child()
    _held_lock_files.clear()


# ---------------------------------------------------------------------------
# 5. The JSON file cache
# ---------------------------------------------------------------------------

_MAX_ENTRY_BYTES = 64 * 1024
_LOCK_TIMEOUT = 30.0
_STALE_TEMP_SECONDS = 600.0
_TEMP_PREFIX = ".tmp-"
_LOCK_FOLDER = ".locks"
_held_lock_files: set[int] = set()


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


class JSONFileCache(MutableMapping[str, JSONDict]):
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

    # -- locking -----------------------------------------------------------------

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
        try:
            acquired = _flock_with_deadline(fd, self.lock_timeout)
            if not acquired:
                logger.warning("cache lock for an entry in %s not acquired within %.0f s; going on without it", self.dir_path, self.lock_timeout)
            yield acquired
        finally:
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


@contextlib.contextmanager
def _entry_lock(cache: Any, key: str) -> Iterator[None]:
    """Hold the cache's per-entry lock, if it has one and it works."""
    lock = getattr(cache, "lock", None)
    with contextlib.ExitStack() as stack:
        if callable(lock):
            try:
                stack.enter_context(lock(key))
            except Exception as error:
                _cache_failed(cache, "lock", error)
        yield


_cache_failures_warned: dict[tuple[int, str], object] = {}


def _cache_failed(cache: Any, action: Literal["read", "write", "lock"], error: Exception) -> None:
    """Go on without a cache that raised: one warning per cache object and error type.

    The warning names the cache's type and the error's type only: a user's
    cache may quote the entry, secrets included, in its messages. The caches
    of this module report their own failures (a fleet store once per outage).
    """
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


# ---------------------------------------------------------------------------
# 5b. Fleet caches: Redis/Valkey and DynamoDB
# ---------------------------------------------------------------------------

_POLL_FIRST = 0.02
_POLL_CAP = 0.25
_SEAL_CONTEXT = b"assume-role-chain fleet entry v1\x00"
_REDIS_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_DYNAMODB_TTL_ATTRIBUTE = "expires_at"
_TABLE_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,255}")


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


class _FleetCache(MutableMapping[str, JSONDict]):
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
            if acquired:
                with contextlib.suppress(_StoreUnavailable):  # the lease ends it anyway
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
        lock_timeout: float = 30.0,
        operation_timeout: float = 1.0,
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
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "assume-role-chain:",
        encryption_key: bytes | None = None,
        lock_timeout: float = 30.0,
        operation_timeout: float = 1.0,
    ) -> RedisCache:
        """Connect to ``redis://``, ``rediss://`` or ``unix://`` ``url`` (needs the ``redis`` package).

        The client's socket and connect timeouts are ``operation_timeout`` and it
        does not retry: an unreachable store costs at most that long per operation.
        """
        problems = _Problems()
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            problems.add("url", "must be a redis://, rediss:// or unix:// URL")
        _check_fleet_options(problems, encryption_key, lock_timeout, operation_timeout)
        problems.raise_if_any()
        try:
            import redis
            import redis.backoff
            import redis.retry
        except ImportError as error:
            raise ImportError("RedisCache.from_url needs the 'redis' package: pip install 'assume-role-chain[fleet]'") from error
        client = redis.Redis.from_url(
            url,
            socket_timeout=operation_timeout,
            socket_connect_timeout=operation_timeout,
            retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        )
        return cls(client, prefix=prefix, encryption_key=encryption_key, lock_timeout=lock_timeout, operation_timeout=operation_timeout)

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
        lock_timeout: float = 30.0,
        operation_timeout: float = 1.0,
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
# 6. Building child sessions
# ---------------------------------------------------------------------------


def _botocore_session_of(session: boto3.Session) -> botocore.session.Session:
    # boto3 exposes its botocore session only as the private ``_session``.
    return session._session


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

    def __init__(self, credentials: _RefreshingCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> _RefreshingCredentials:
        return self._credentials


_loader_lock = threading.Lock()
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


_template_session: botocore.session.Session | None = None


def _fresh_botocore_session() -> botocore.session.Session:
    """A new botocore session, built in a tenth of the usual time.

    Most of ``botocore.session.Session()``'s cost is registering botocore's
    ~130 built-in event handlers (each one inspected). They are the same for
    every session, so each child gets a copy of a pristine emitter instead
    (botocore copies emitters the same way for every client it creates).
    """
    global _template_session
    with _loader_lock:
        if _template_session is None:
            _template_session = botocore.session.Session()
        emitter = copy.copy(_template_session.get_component("event_emitter"))
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


# ---------------------------------------------------------------------------
# 7. Credential sources
# ---------------------------------------------------------------------------

_REFUSED_COMMAND_OPTIONS = ("shell", "executable", "preexec_fn", "stdout", "stderr")
_MFA_COMMAND_TIMEOUT = 30.0
_SIX_DIGITS = re.compile(r"(?<!\d)\d{6}(?!\d)")

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
            result = self._provider(**self._kwargs)
            if not isinstance(result, str) or not _TOKEN_RE.fullmatch(result.strip()):
                raise MFATokenError("mfa_token_provider must return a string of six digits")
            return result.strip()
        return self._run_command(self._provider)

    def used(self) -> None:
        """The static code was accepted by STS; it cannot be used again."""
        self._static_code = None

    def _prompt(self) -> str:
        if not sys.stdin or not sys.stdin.isatty():
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
    if serial_number is not None and token_code is None and provider is None:
        problems.add("SerialNumber", "needs TokenCode or mfa_token_provider to supply MFA codes")


class _AssumeRoleSource:
    """Calls STS AssumeRole with the parent session's current credentials."""

    def __init__(
        self,
        parent: boto3.Session,
        params: JSONDict,
        automatic_name: bool,
        mfa: _MFACodes | None,
        sts_client_kwargs: Mapping[str, Any],
        clock: Clock,
    ) -> None:
        self._parent = _botocore_session_of(parent)
        self._params = params
        self._automatic_name = automatic_name
        self._mfa = mfa
        self._client_kwargs = dict(sts_client_kwargs)
        self._clock = clock
        self._client: Any = None
        self._client_credentials: Any = None
        self.name = str(params["RoleArn"])

    def _sts(self) -> Any:
        parent_credentials = self._parent.get_credentials()
        if parent_credentials is None:
            raise botocore.exceptions.NoCredentialsError()
        if self._client is None or parent_credentials is not self._client_credentials:
            self._client = self._parent.create_client("sts", **self._client_kwargs)
            self._client_credentials = parent_credentials
        return self._client

    def cache_key(self) -> str:
        client = self._sts()
        parent_key = self._client_credentials.get_frozen_credentials().access_key
        params = {k: v for k, v in self._params.items() if k != "TokenCode"}
        if self._automatic_name:
            params.pop("RoleSessionName", None)
        payload = {
            "parent": parent_key,
            "endpoint": client.meta.endpoint_url,
            "region": client.meta.region_name,
            "params": params,
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        return f"assume-role-{digest}"

    def fetch(self) -> JSONDict:
        params = dict(self._params)
        if self._automatic_name:
            params["RoleSessionName"] = f"assume-role-chain-{int(self._clock().timestamp())}"
        if self._mfa is not None:
            params["TokenCode"] = self._mfa.code()
        response = self._sts().assume_role(**params)
        if self._mfa is not None:
            self._mfa.used()
        credentials: JSONDict = dict(response["Credentials"])
        account = response.get("AssumedRoleUser", {}).get("Arn", "").split(":")
        if len(account) > 4 and account[4]:
            credentials["AccountId"] = account[4]
        return credentials

    def after_fork(self) -> None:
        # A client's connection pool shares sockets with the parent process.
        self._client = None
        self._client_credentials = None


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


# ---------------------------------------------------------------------------
# 8. Public API
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
        self._check(merged)
        object.__setattr__(self, "_values", {k: v for k, v in merged.items() if v is not None})

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
        return id(self)

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
        region = values.get("region_name")
        if region is not None and (not isinstance(region, str) or not re.fullmatch(r"[a-z0-9-]{1,50}", region)):
            problems.add("region_name", "must be a region name such as 'us-east-1'")
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
    if isinstance(params.get("Tags"), Mapping):
        params["Tags"] = [{"Key": k, "Value": v} for k, v in params["Tags"].items()]
    params.pop("TokenCode", None)
    return params, "RoleSessionName" not in params


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


def _validate_assume_role(session: Any, role_arn: Any, args: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
    problems = _Problems()
    _check_session(problems, session)
    _check_assume_role_fields(problems, role_arn, args)
    _check_mfa(problems, args.get("SerialNumber"), args.get("TokenCode"), extra.get("mfa_token_provider"), extra.get("mfa_token_provider_kwargs"))
    _check_region(problems, extra.get("region_name"))
    _check_cache(problems, extra.get("cache"))
    additional = extra.get("additional_kwargs")
    if additional is not None and not isinstance(additional, Mapping):
        problems.add("additional_kwargs", "must be a mapping of AssumeRole parameters")
    sts_kwargs = extra.get("sts_client_kwargs")
    if sts_kwargs is not None and not isinstance(sts_kwargs, Mapping):
        problems.add("sts_client_kwargs", "must be a mapping of client options")
    _check_windows(problems, extra.get("advisory_timeout"), extra.get("mandatory_timeout"), args.get("DurationSeconds"))
    _check_clock(problems, extra.get("clock"))
    problems.raise_if_any()
    if isinstance(sts_kwargs, Mapping):
        STSClientConfig(sts_kwargs)


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


def _clamp_for_chaining(params: JSONDict, parent_credentials: Any) -> None:
    duration = params.get("DurationSeconds")
    if isinstance(duration, int) and duration > 3600 and _is_temporary(parent_credentials):
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
        "DurationSeconds": DurationSeconds, "Tags": Tags, "TransitiveTagKeys": TransitiveTagKeys,
        "ExternalId": ExternalId, "SerialNumber": SerialNumber, "TokenCode": TokenCode,
        "SourceIdentity": SourceIdentity, "ProvidedContexts": ProvidedContexts,
    }
    role_arn, args = _merge_role_mapping(RoleArn, keywords)
    extra = {
        "mfa_token_provider": mfa_token_provider, "mfa_token_provider_kwargs": mfa_token_provider_kwargs,
        "region_name": region_name, "cache": cache, "additional_kwargs": additional_kwargs,
        "sts_client_kwargs": sts_client_kwargs, "advisory_timeout": advisory_timeout,
        "mandatory_timeout": mandatory_timeout, "clock": clock,
    }
    proactive = _resolve_eager(eager, defer_refresh)
    if validate:
        _validate_assume_role(session, role_arn, args, extra)
    params, automatic_name = _normalise_params(role_arn, args, additional_kwargs)
    if validate:
        _validate_with_botocore_model(session, params)
    parent_credentials = _botocore_session_of(session).get_credentials()
    if parent_credentials is None:
        raise botocore.exceptions.NoCredentialsError()
    _clamp_for_chaining(params, parent_credentials)
    serial = params.get("SerialNumber")
    mfa = _MFACodes(serial, args.get("TokenCode"), mfa_token_provider, mfa_token_provider_kwargs) if serial else None
    clock = clock or _utc_now
    source = _AssumeRoleSource(session, params, automatic_name, mfa, dict(sts_client_kwargs or {}), clock)
    credentials = _RefreshingCredentials(
        source, cache=cache, clock=clock, advisory_timeout=advisory_timeout, mandatory_timeout=mandatory_timeout
    )
    child = _new_session(credentials, session, region_name)
    child.assume_role_parent_session = session  # type: ignore[attr-defined]
    if proactive:
        credentials.start_proactive_refresh()
    return child


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
    if isinstance(roles, (str, bytes)) or not isinstance(roles, Sequence) or not roles:
        raise _invalid("Invalid roles: must be a non-empty list of RoleArn strings or mappings")
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
    current = session
    for hop in hops:
        role_arn = hop.pop("RoleArn")
        current = assume_role(current, role_arn, **hop)
    return current


def _assume_role_parameters() -> set[str]:
    return {name for name in inspect.signature(assume_role).parameters if name != "session"}


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
    problems = _Problems()
    if not callable(fetch):
        problems.add("fetch", f"must be callable, not {type(fetch).__name__}")
    _check_cache(problems, cache)
    if cache is not None and (not isinstance(cache_key, str) or not cache_key):
        problems.add("cache_key", "a non-empty string is required when cache is given")
    if isinstance(region_name, bool):
        problems.add("region_name", "must be a region name string or None")
    else:
        _check_region(problems, region_name)
    _check_windows(problems, advisory_timeout, mandatory_timeout, None)
    _check_clock(problems, clock)
    problems.raise_if_any()
    proactive = _resolve_eager(eager, defer_refresh)
    name = source_name or str(getattr(fetch, "__qualname__", "custom credentials"))
    credentials = _RefreshingCredentials(
        _FunctionSource(fetch, cache_key, name), cache=cache, clock=clock,
        advisory_timeout=advisory_timeout, mandatory_timeout=mandatory_timeout,
    )
    session = _new_session(credentials, None, region_name)
    if proactive:
        credentials.start_proactive_refresh()
    return session


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
# 9. Cached clients
# ---------------------------------------------------------------------------

EvictionPolicy = Literal["LRU", "LFU"]
_DEFAULT_CACHE_SIZE = 10


def _option_key(value: Any) -> Any:
    """A hashable, value-based key for one client argument (Config by its options)."""
    if isinstance(value, botocore.config.Config):
        return ("Config", json.dumps(vars(value), sort_keys=True, default=repr))
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _option_key(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_option_key(item) for item in value)
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
        self.max_size = max_size
        self._entries: dict[Any, Any] = {}  # insertion order = recency for LRU
        self._uses: dict[Any, int] = {}
        self._lock = threading.Lock()

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
_client_caches_lock = threading.Lock()


def client_cache(session: boto3.Session, kind: Literal["client", "resource"] = "client", eviction_policy: EvictionPolicy = "LRU") -> ClientCache:
    """The cache behind :func:`cached_client` (or :func:`cached_resource`) for a session."""
    with _client_caches_lock:
        by_kind = _client_caches.setdefault(session, {})
        return by_kind.setdefault((kind, eviction_policy), ClientCache(eviction_policy))


def _cached(session: Any, kind: Literal["client", "resource"], service_name: Any, eviction_policy: Any, max_size: Any, kwargs: dict[str, Any]) -> Any:
    problems = _Problems()
    _check_session(problems, session)
    if not isinstance(service_name, str) or not service_name:
        problems.add("service_name", "must be a service name such as 's3'")
    if eviction_policy not in ("LRU", "LFU"):
        problems.add("eviction_policy", "must be 'LRU' or 'LFU'")
    if max_size is not None and (not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1):
        problems.add("max_size", "must be a positive int or None (unbounded)")
    problems.raise_if_any()
    cache = client_cache(session, kind, eviction_policy)
    cache.max_size = max_size
    key = (service_name, _option_key(kwargs))
    factory = session.client if kind == "client" else session.resource
    return cache.get(key, lambda: factory(service_name, **kwargs))


def cached_client(
    session: boto3.Session,
    service_name: str,
    *,
    eviction_policy: EvictionPolicy = "LRU",
    max_size: int | None = _DEFAULT_CACHE_SIZE,
    **client_kwargs: Any,
) -> Any:
    """``session.client(service_name, **client_kwargs)``, created once and reused.

    Keyed on the session and every argument (a ``Config`` by its options);
    thread-safe; at most ``max_size`` clients per session and policy (``None``:
    unbounded), evicted least recently (``"LRU"``) or least frequently
    (``"LFU"``) used. A cached client always signs with the credentials of the
    session it was asked for. Dropping the session drops its clients.
    """
    return _cached(session, "client", service_name, eviction_policy, max_size, client_kwargs)


def cached_resource(
    session: boto3.Session,
    service_name: str,
    *,
    eviction_policy: EvictionPolicy = "LRU",
    max_size: int | None = _DEFAULT_CACHE_SIZE,
    **resource_kwargs: Any,
) -> Any:
    """Like :func:`cached_client`, for ``session.resource(...)``.

    boto3 resources are not thread-safe: share a cached resource between
    threads only for reading, or cache per thread.
    """
    return _cached(session, "resource", service_name, eviction_policy, max_size, resource_kwargs)


# ---------------------------------------------------------------------------
# 10. Helpers
# ---------------------------------------------------------------------------


def _account(account_id: str | int) -> str:
    text = str(int(account_id)) if isinstance(account_id, int) else str(account_id)
    return text.rjust(12, "0")


def get_role_arn(account_id: str | int, role_name: str, path: str = "", partition: str = "aws") -> str:
    """The ARN of an IAM role; the path may be given separately or in ``role_name``.

    Account ids are zero-padded to 12 digits.
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
    name = function_name or os.environ["AWS_LAMBDA_FUNCTION_NAME"]
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
    match = re.search(r"\w+$", os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", ""))
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
    one generation. Raises ``NoCredentialsError`` when there are none.
    """
    credentials = session.get_credentials()
    if credentials is None:
        raise botocore.exceptions.NoCredentialsError()
    frozen = credentials.get_frozen_credentials()
    expiry = getattr(credentials, "_expiry_time", None)  # botocore's only record of it
    return {
        "access_key": frozen.access_key,
        "secret_key": frozen.secret_key,
        "token": frozen.token,
        "expiry_time": _iso(expiry) if isinstance(expiry, dt.datetime) else None,
    }


# ---------------------------------------------------------------------------
# 11. Command line
# ---------------------------------------------------------------------------

EXIT_BAD_ARGUMENTS = 2
EXIT_NO_CREDENTIALS = 3
EXIT_ASSUME_ROLE_FAILED = 4


class _UsageError(Exception):
    pass


def _json_object(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a JSON object") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _string_list(text: str) -> list[str]:
    if text.lstrip().startswith("["):
        value = json.loads(text)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        raise argparse.ArgumentTypeError("must be a JSON list of strings")
    return [item.strip() for item in text.split(",") if item.strip()]


def _key_values(text: str) -> dict[str, str]:
    """``Key=Value,Key2=Value2`` or a JSON object (values may contain '=')."""
    if text.lstrip().startswith("{"):
        value = _json_object(text)
        if not all(isinstance(v, str) for v in value.values()):
            raise argparse.ArgumentTypeError("tag values must be strings")
        return dict(value)
    pairs: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"{item!r} is not Key=Value")
        pairs[key.strip()] = value.strip()
    return pairs


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise _UsageError(message)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="assume-role-chain",
        description="Assume one role, or a chain of roles, and print the credentials.",
    )
    parser.add_argument("RoleArn", nargs="+", help="role ARN; several make a chain A -> B -> C")
    parser.add_argument("--profile", help="AWS config profile of the starting credentials")
    parser.add_argument("--region", help="region for STS and the printed session")
    parser.add_argument("--cache-dir", help="cache credentials in this folder (JSON files, 0600)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--env", dest="format", action="store_const", const="env", help="print KEY=value lines (default)")
    output.add_argument("--json", dest="format", action="store_const", const="json", help="print credential_process JSON")
    parser.set_defaults(format="env")
    parser.add_argument("--RoleSessionName")
    parser.add_argument("--PolicyArns", type=_string_list, help="Arn1,Arn2 or a JSON list")
    parser.add_argument("--Policy", type=_json_object, help="JSON object")
    parser.add_argument("--DurationSeconds", type=int)
    parser.add_argument("--Tags", type=_key_values, help="Key=Value,Key2=Value2 or a JSON object")
    parser.add_argument("--TransitiveTagKeys", type=_string_list, help="Key1,Key2 or a JSON list")
    parser.add_argument("--ExternalId")
    parser.add_argument("--SourceIdentity")
    parser.add_argument("--SerialNumber", help="MFA device (first hop only)")
    parser.add_argument("--TokenCode", help="MFA code (first hop only)")
    parser.add_argument("--mfa-command", help="command that prints an MFA code (first hop only)")
    parser.add_argument("--additional-kwargs", type=_json_object, help="JSON object of further AssumeRole parameters")
    parser.add_argument("--sts-client-kwargs", type=_json_object, help="JSON object of STS client options, e.g. endpoint_url")
    parser.add_argument("--whoami", action="store_true", help="print the identity of the last hop instead of credentials")
    return parser


_CHAIN_WIDE = ("RoleSessionName", "PolicyArns", "Policy", "DurationSeconds", "Tags", "TransitiveTagKeys", "ExternalId", "SourceIdentity")


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
    if args.cache_dir:
        common["cache"] = JSONFileCache(args.cache_dir)
    if args.sts_client_kwargs:
        common["sts_client_kwargs"] = STSClientConfig(args.sts_client_kwargs)
    first: JSONDict = {"RoleArn": args.RoleArn[0]}
    for name, value in (("SerialNumber", args.SerialNumber), ("TokenCode", args.TokenCode), ("mfa_token_provider", args.mfa_command)):
        if value is not None:
            first[name] = value
    return assume_role_chain(session, [first, *args.RoleArn[1:]], **common)


def _print_credentials(session: boto3.Session, output: str) -> None:
    current = get_credentials(session)
    if output == "json":
        data: JSONDict = {
            "Version": 1,
            "AccessKeyId": current["access_key"],
            "SecretAccessKey": current["secret_key"],
            "SessionToken": current["token"],
        }
        if current["expiry_time"]:
            data["Expiration"] = current["expiry_time"]
        print(json.dumps(data, indent=2))
        return
    lines = [
        f"AWS_ACCESS_KEY_ID={current['access_key']}",
        f"AWS_SECRET_ACCESS_KEY={current['secret_key']}",
        f"AWS_SESSION_TOKEN={current['token']}",
    ]
    if current["expiry_time"]:
        lines.append(f"AWS_CREDENTIALS_EXPIRATION={current['expiry_time']}")
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print credentials for a role or a chain of roles.

    Exit codes: 0 success, 2 bad arguments, 3 no starting credentials,
    4 AssumeRole refused or failed.
    """
    try:
        args = _build_parser().parse_args(argv)
        session = _chain_from_args(args)
        if args.whoami:
            print(json.dumps(whoami(session), indent=2))
        else:
            _print_credentials(session, args.format)
    except _UsageError as error:
        print(f"assume-role-chain: bad arguments: {error}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    except botocore.exceptions.ParamValidationError as error:
        print(f"assume-role-chain: bad arguments: {_one_line(error)}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.ProfileNotFound) as error:
        print(f"assume-role-chain: no starting credentials: {_one_line(error)}", file=sys.stderr)
        return EXIT_NO_CREDENTIALS
    except botocore.exceptions.ClientError as error:
        info = error.response.get("Error", {})
        print(f"assume-role-chain: AssumeRole refused [{info.get('Code')}]: {info.get('Message')}", file=sys.stderr)
        return EXIT_ASSUME_ROLE_FAILED
    except (botocore.exceptions.BotoCoreError, OSError) as error:
        print(f"assume-role-chain: AssumeRole failed: {_one_line(error)}", file=sys.stderr)
        return EXIT_ASSUME_ROLE_FAILED
    return 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinitialise_after_fork)

if __name__ == "__main__":
    sys.exit(main())
