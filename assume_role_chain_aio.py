"""asyncio sessions whose assumed-role credentials refresh themselves (aioboto3, aiobotocore).

The same engine as :mod:`assume_role_chain`, for the event loop: the same
refresh policy (when to refresh), the same cached source (cache read, lock,
fetch, write: every store shared with synchronous processes) and the same
refresh bookkeeping, events and log lines. Only the shell differs:

* the cached source runs in a worker thread (``asyncio.to_thread``), so file,
  Redis and DynamoDB stores and MFA command providers never block the loop,
  while the AssumeRole call itself is made by an aiobotocore client on the
  loop of the task that started the refresh;
* single flight holds across tasks, event loops and threads: a refresh is one
  task, recorded under a thread lock that is held for a few instructions only
  (never across an ``await``); waiters await it from their own loop through a
  thread-safe future, shielded, so a cancelled waiter cancels nothing else.

Install with ``pip install assume-role-chain[aio]``. Vendoring this module
means copying it with ``assume_role_chain.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import json
import os
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar, Union

import aioboto3
import aiobotocore.credentials
import aiobotocore.session
import boto3
import botocore.credentials
import botocore.exceptions
import botocore.session

import assume_role_chain as _arc
from assume_role_chain import JSONDict

__all__ = [
    "assume_role",
    "assume_role_chain",
    "get_credentials",
    "patch_aioboto3",
    "refreshable_session",
    "whoami",
]

logger = _arc.logger  # the same log lines as the synchronous sessions, on the same logger

AsyncParent = Union[aioboto3.Session, aiobotocore.session.AioSession, boto3.Session]  # noqa: UP007 (a runtime alias on 3.10)
_T = TypeVar("_T")


# ---------------------------------------------------------------------------
# 1. Sources: the synchronous source protocol, answered from the event loop
# ---------------------------------------------------------------------------
#
# ``_CachedSource.obtain()`` is synchronous and runs in a worker thread. It
# asks its source for ``cache_key()`` and ``fetch()``; the sources below
# answer by running a coroutine on the loop of the refresh and waiting for it
# in that worker thread. ``asyncio.to_thread`` runs the thread in a copy of
# the refresh's context, so the loop travels in a context variable: a refresh
# abandoned with its loop never reaches the loop of the next one.

_refresh_loop: contextvars.ContextVar[asyncio.AbstractEventLoop] = contextvars.ContextVar("assume_role_chain_aio_loop")


class _LoopBound:
    """Runs coroutines on the refreshing loop from the worker thread of ``obtain()``."""

    def _on_loop(self, awaitable: Awaitable[_T]) -> _T:
        loop = _refresh_loop.get(None)
        if loop is None or loop.is_closed():
            raise RuntimeError("the event loop of this refresh is gone")

        async def run() -> _T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(run(), loop).result()

    def after_fork(self) -> None:
        pass


class _Parent:
    """The session AssumeRole is called from: its credentials, and STS clients made with them."""

    def __init__(self, session: Any) -> None:
        core = session if isinstance(session, botocore.session.Session) else _arc._botocore_session_of(session)
        self.core: botocore.session.Session = core
        self.is_async = isinstance(core, aiobotocore.session.AioSession)
        self._client_session: aiobotocore.session.AioSession | None = None

    async def credentials(self) -> tuple[Any, botocore.credentials.ReadOnlyCredentials]:
        """The parent's credentials object and a frozen reading of them (refreshed if due)."""
        if self.is_async:
            credentials = await self.core.get_credentials()  # type: ignore[misc]
            frozen = None if credentials is None else await credentials.get_frozen_credentials()
        else:  # a synchronous boto3 session: its providers may read files or call IMDS
            credentials = await asyncio.to_thread(self.core.get_credentials)
            frozen = None if credentials is None else await asyncio.to_thread(credentials.get_frozen_credentials)
        if credentials is None or frozen is None:
            raise botocore.exceptions.NoCredentialsError()
        return credentials, frozen

    def sts_client(self, options: Mapping[str, Any], frozen: botocore.credentials.ReadOnlyCredentials) -> Any:
        """An aiobotocore STS client context; a sync parent's keys are passed explicitly."""
        if self.is_async:
            return self.core.create_client("sts", **options)
        if self._client_session is None:  # aiobotocore clients need an AioSession: one reading the parent's config
            self._client_session = aiobotocore.session.AioSession()
            _arc._link_config(self._client_session, self.core, link_region=True)
        keys = {"aws_access_key_id": frozen.access_key, "aws_secret_access_key": frozen.secret_key,
                "aws_session_token": frozen.token}
        return self._client_session.create_client("sts", **{**keys, **options})


class _AioAssumeRoleSource(_LoopBound):
    """Calls STS AssumeRole with an aiobotocore client made from the parent's current credentials.

    One client serves one refresh (cache key, then AssumeRole) and is closed
    with it: an aiohttp connection pool belongs to one event loop.
    """

    def __init__(
        self, parent: _Parent, params: JSONDict, automatic_name: bool, mfa: Any,
        client_kwargs: Mapping[str, Any], clock: _arc.Clock, fallback_region: str | None,
    ) -> None:
        self._parent = parent
        self._params = params
        self._automatic_name = automatic_name
        self._mfa = mfa
        self._client_kwargs = dict(client_kwargs)
        self._fallback_region = fallback_region
        self._clock = clock
        self._open: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._parent_key = ""
        self.name = str(params["RoleArn"])

    async def _sts(self) -> Any:
        credentials, frozen = await self._parent.credentials()
        _arc._clamp_for_chaining(self._params, credentials)  # once: later calls find 3600 s
        loop = asyncio.get_running_loop()
        if self._client_loop is not loop:  # a refresh cut short with its loop: that client is unusable
            self._open, self._client = None, None
        if self._client is None or frozen.access_key != self._parent_key:
            await self.close()
            options = self._client_kwargs
            if self._fallback_region is not None and _arc._sts_region(self._parent.core, options) is None:
                options = {**options, "region_name": self._fallback_region}
            stack = contextlib.AsyncExitStack()
            self._client = await stack.enter_async_context(self._parent.sts_client(options, frozen))
            self._open, self._parent_key, self._client_loop = stack, frozen.access_key or "", loop
        return self._client

    async def close(self) -> None:
        """Close the client of the refresh that just ended (on its loop)."""
        stack, self._open, self._client = self._open, None, None
        if stack is not None:
            await stack.aclose()

    def principal(self) -> str:
        """Who this hop's credentials act as, known without a call (as for a sync hop)."""
        return "assumed-role " + json.dumps(self._key_params(), sort_keys=True, default=str)

    def _key_params(self) -> JSONDict:
        return _arc._assume_role_key_params(self._params, self._automatic_name)

    async def _parent_principal(self, client: Any) -> str | None:
        """The parent's principal: from its hop if it is ours, else GetCallerIdentity (remembered, shared with sync)."""
        credentials, _ = await self._parent.credentials()
        known = _arc._known_principal(credentials)
        if known is not None:
            return known
        with _arc._principals_lock:
            remembered = _arc._principals.get(self._parent_key)
        if remembered is not None:
            return remembered
        try:
            principal = str((await client.get_caller_identity())["Arn"])
        except Exception as error:
            logger.warning(
                "GetCallerIdentity failed for the parent credentials of %s (%s); fetching without the cache this time",
                self.name, type(error).__name__,
            )
            return None
        with _arc._principals_lock:
            _arc._principals[self._parent_key] = principal
        return principal

    async def _cache_key(self) -> str | None:
        client = await self._sts()
        principal = await self._parent_principal(client)
        if principal is None:
            return None
        # the same key as the synchronous source: caches are shared
        return _arc._sts_cache_key("assume-role", principal, client.meta.endpoint_url, client.meta.region_name, self._key_params())

    async def _assume_role(self, token_code: str | None) -> JSONDict:
        client = await self._sts()
        response: JSONDict = await client.assume_role(
            **_arc._assume_role_request(self._params, self._automatic_name, self._clock, token_code)
        )
        return response

    # -- the synchronous protocol, called by _CachedSource.obtain() in a worker thread --

    def cache_key(self) -> str | None:
        return self._on_loop(self._cache_key())

    def fetch(self) -> JSONDict:
        code = self._mfa.code() if self._mfa is not None else None  # a command provider runs in this thread
        response = self._on_loop(self._assume_role(code))
        if self._mfa is not None:
            self._mfa.used()
        return _arc._assume_role_credentials(response)


class _AioFunctionSource(_LoopBound):
    """Calls a user's fetch: a plain function in the worker thread, a coroutine on the loop."""

    def __init__(self, fetch: Callable[[], Any], key: str | None, name: str) -> None:
        self._fetch = fetch
        self._key = key
        self.name = name

    def cache_key(self) -> str | None:
        return self._key

    def fetch(self) -> Any:
        result = self._fetch()
        return self._on_loop(result) if inspect.isawaitable(result) else result

    async def close(self) -> None:
        pass


# ---------------------------------------------------------------------------
# 2. The asyncio shell: single flight across tasks, loops and threads
# ---------------------------------------------------------------------------


class _Flight:
    """One refresh in flight: a task on ``loop``, and a future any loop can await."""

    __slots__ = ("done", "loop", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.task: asyncio.Task[None] | None = None


_Source = Union[_AioAssumeRoleSource, _AioFunctionSource]  # noqa: UP007


class _AioRefreshingCredentials(aiobotocore.credentials.AioDeferredRefreshableCredentials):  # type: ignore[misc]
    """aiobotocore credentials driven by the refresh policy and the cached source of the sync engine.

    Every aiobotocore client awaits ``get_frozen_credentials()``, which awaits
    ``_refresh()``: this shell's hook. The bookkeeping (checking new
    credentials, backoff, installing them, their log lines) is the synchronous
    shell's own code; what differs is how callers wait (see the module's doc).
    """

    def __init__(
        self, source: _Source, *, cache: Any = None, clock: _arc.Clock | None = None,
        advisory_timeout: float | None = None, mandatory_timeout: float | None = None,
    ) -> None:
        self._clock: _arc.Clock = clock or _arc._utc_now
        super().__init__(refresh_using=self._unused_refresh_using, method="assume-role-chain", time_fetcher=self._clock)
        self._policy = _arc._RefreshPolicy(advisory_timeout, mandatory_timeout)
        self._loop_source = source
        self._source = _arc._CachedSource(source, _arc._as_store(cache), self._policy, self._clock)
        self._generation: _arc._Generation | None = None
        self._backoff = _arc._NO_BACKOFF
        self._last_error: BaseException | None = None
        self._warned_windows = False
        self._state_lock = _arc._ForkSafeLock()  # guards _flight; never held across an await
        self._flight: _Flight | None = None
        _live_engines.add(self)

    # The synchronous shell's bookkeeping, shared rather than copied: the
    # same checks, backoff, installation into botocore's fields and log lines.
    __repr__ = _arc._RefreshingCredentials.__repr__
    source = _arc._RefreshingCredentials.source
    _unused_refresh_using = _arc._RefreshingCredentials._unused_refresh_using
    _decide = _arc._RefreshingCredentials._decide
    _checked = _arc._RefreshingCredentials._checked
    _record_failure = _arc._RefreshingCredentials._record_failure
    _warn_if_windows_exceed = _arc._RefreshingCredentials._warn_if_windows_exceed
    _install = _arc._RefreshingCredentials._install

    # -- aiobotocore's hook ----------------------------------------------------

    async def _refresh(self) -> None:
        while True:
            action = self._decide()
            if action is _arc._Action.USE:
                return
            if action is _arc._Action.FAIL:
                assert self._last_error is not None
                raise self._last_error.with_traceback(None)
            flight = self._join_or_start()
            if action is _arc._Action.REFRESH_IN_BACKGROUND:
                return  # the advisory window: never wait
            # shielded: a cancelled waiter cancels neither the refresh nor the others' wait
            await asyncio.shield(asyncio.wrap_future(flight.done))
            # decide again: new credentials (use), a failure (fail or serve), or a lost refresh (retry)

    def _join_or_start(self) -> _Flight:
        loop = asyncio.get_running_loop()
        with self._state_lock:
            flight = self._flight
            if flight is not None and not flight.loop.is_closed():
                return flight
            flight = self._flight = _Flight(loop)
        flight.task = loop.create_task(self._fly(flight), name=f"assume-role-chain refresh of {self._source.name}")
        return flight

    async def _fly(self, flight: _Flight) -> None:
        events: list[_arc.RefreshEvent] = []
        try:
            await self._attempt(events)
        except Exception:  # recorded as the last error: the waiters raise it
            pass
        finally:
            with self._state_lock:
                if self._flight is flight:
                    self._flight = None
            flight.done.set_result(None)
            for event in events:  # no lock held: a listener may use the session
                _arc._emit(event)

    async def _attempt(self, events: list[_arc.RefreshEvent]) -> None:
        """The synchronous shell's ``_attempt``, with ``obtain()`` run in a worker thread."""
        started = time.perf_counter()
        current = self._generation
        usable = current is not None and self._policy.is_usable(current.schedule, self._clock())
        logger.debug("refreshing credentials for %s", self._source.name)
        try:
            credentials, outcome = await self._obtain()
            generation = self._checked(credentials)
        except Exception as error:
            events.append(self._record_failure(error, started, usable))
            if usable:
                return
            _arc._add_note(error, f"assume_role_chain: no usable credentials for {self._source.name}")
            raise
        self._install(generation)
        elapsed = time.perf_counter() - started
        logger.debug(
            "credentials for %s %s in %.3f s, expire %s",
            self._source.name, outcome, elapsed, _arc._iso(credentials.expiry),
        )
        events.append(_arc.RefreshEvent(self._source.name, outcome, credentials.expiry, elapsed))

    async def _obtain(self) -> tuple[_arc._Credentials, _arc.Outcome]:
        _refresh_loop.set(asyncio.get_running_loop())  # in this task's context, copied into the thread
        try:
            return await asyncio.to_thread(self._source.obtain)
        finally:
            await self._loop_source.close()

    async def current_generation(self) -> _arc._Credentials:
        """Refresh if due, then the generation in use: keys and expiry of one fetch."""
        await self._refresh()
        generation = self._generation
        if generation is None:  # pragma: no cover - _refresh() raises instead
            raise botocore.exceptions.NoCredentialsError()
        return generation.credentials

    def start_in_background(self) -> None:
        """``eager=True``: start the first fetch now on the running loop, if there is one."""
        with contextlib.suppress(RuntimeError):  # no running loop: the first use fetches
            self._join_or_start()


_live_engines: weakref.WeakSet[_AioRefreshingCredentials] = weakref.WeakSet()


def _forget_flights_in_child() -> None:
    """In a forked child no refresh of the parent's is running: waiting for one would hang."""
    for engine in list(_live_engines):
        engine._flight = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_flights_in_child)


class _AioProvider(_arc._FixedProvider):
    """Hands aiobotocore our credentials object through its resolver, which awaits ``load``."""

    async def load(self) -> botocore.credentials.Credentials:  # type: ignore[override]
        return self._credentials


# ---------------------------------------------------------------------------
# 3. Building sessions
# ---------------------------------------------------------------------------

_model_session: boto3.Session | None = None


def _model_checker() -> boto3.Session:
    """A synchronous session for checking requests against the STS model (an AioSession's is async)."""
    global _model_session
    if _model_session is None:
        core = _arc._fresh_botocore_session()
        core.register_component("data_loader", _arc._standalone_loader())
        _model_session = boto3.Session(botocore_session=core)
    return _model_session


def _check_parent(session: Any) -> boto3.Session:
    """A boto3.Session for the synchronous checks (the parent itself, if it is one), or a ParamValidationError."""
    if isinstance(session, boto3.Session):  # aioboto3.Session is one too
        return session
    if isinstance(session, aiobotocore.session.AioSession):
        return _model_checker()  # wrapping the parent in an aioboto3.Session would register handlers into it
    raise _arc._invalid(
        "Invalid session: must be an aioboto3.Session, an aiobotocore.session.AioSession or a "
        f"boto3.Session, not {type(session).__name__}"
    )


def _check_sts_reachable(parent: _Parent, client_kwargs: Mapping[str, Any], region_name: str | None) -> None:
    """``assume_role_chain._check_sts_reachable`` for any parent (an AioSession is no boto3.Session)."""
    if region_name is None:
        endpoint = _arc._sts_endpoint_needing_region(parent.core, client_kwargs)
        if endpoint is not None:
            raise _arc._RegionRequiredError(endpoint)


def _new_session(
    credentials: _AioRefreshingCredentials, parent: Any, region_name: str | bool | None,
) -> aioboto3.Session | aiobotocore.session.AioSession:
    """The child: an AioSession reading its config from the parent, with our credentials."""
    child = aiobotocore.session.AioSession()
    parent_core = None if parent is None else _Parent(parent).core
    if parent_core is not None:
        _arc._link_config(child, parent_core, link_region=region_name is None)
        loader = parent_core.get_component("data_loader")
        region = parent_core.get_config_variable("region") if region_name is True else region_name
    else:
        loader = _arc._standalone_loader()
        region = region_name
    child.register_component("data_loader", loader)
    child.register_component(
        "credential_provider", aiobotocore.credentials.AioCredentialResolver([_AioProvider(credentials)])
    )
    if isinstance(region, str):
        child.set_config_variable("region", region)
    child.assume_role_chain_credentials = credentials  # marks our sessions
    if isinstance(parent, aiobotocore.session.AioSession):
        return child
    with _arc._loader_lock:
        session = aioboto3.Session(botocore_session=child)
        _arc._dedupe_search_paths(loader)
    if parent is not None:
        session.assume_role_parent_session = parent
    return session


def _build(source: _Source, options: _arc._SessionOptions, parent: Any) -> Any:
    credentials = _AioRefreshingCredentials(
        source, cache=options.cache, clock=options.clock,
        advisory_timeout=options.advisory_timeout, mandatory_timeout=options.mandatory_timeout,
    )
    session = _new_session(credentials, parent, options.region_name)
    if options.eager:
        credentials.start_in_background()
    return session


# ---------------------------------------------------------------------------
# 4. Public API
# ---------------------------------------------------------------------------

_ASSUME_ROLE_SIGNATURE = inspect.signature(_arc.assume_role)
_REFRESHABLE_SESSION_SIGNATURE = inspect.signature(_arc.refreshable_session)


def assume_role(parent: AsyncParent, RoleArn: str | Mapping[str, Any], **kwargs: Any) -> Any:
    """Return a session for ``RoleArn``, assumed from ``parent``, refreshing itself on the event loop.

    ``parent`` is an ``aioboto3.Session`` (returns an ``aioboto3.Session``),
    an ``aiobotocore.session.AioSession`` (returns an ``AioSession``) or a
    ``boto3.Session`` (its credentials are read in a worker thread; returns an
    ``aioboto3.Session``). The keyword arguments, their validation and errors
    are those of :func:`assume_role_chain.assume_role`. A plain function: no
    I/O happens until a client first needs the credentials (``eager=True``
    starts that fetch at once in the background when a loop is running).
    """
    arguments = _ASSUME_ROLE_SIGNATURE.bind(parent, RoleArn, **kwargs)
    arguments.apply_defaults()
    a = dict(arguments.arguments)
    checked_parent = _check_parent(a.pop("session"))
    keywords: dict[str, Any] = {name: a[name] for name in _arc._ASSUME_ROLE_FIELDS if name != "RoleArn"}
    keywords["Tags"] = _arc._materialised(keywords["Tags"])
    role_arn, args = _arc._merge_role_mapping(a["RoleArn"], keywords)
    options = _arc._SessionOptions(
        a["region_name"], a["cache"], a["clock"], a["advisory_timeout"], a["mandatory_timeout"],
        _arc._resolve_eager(a["eager"], a["defer_refresh"]),
    )
    sts_client_kwargs, additional_kwargs = a["sts_client_kwargs"], a["additional_kwargs"]
    if a["validate"]:
        _arc._validate_assume_role(
            checked_parent, role_arn, args, options, mfa_token_provider=a["mfa_token_provider"],
            mfa_token_provider_kwargs=a["mfa_token_provider_kwargs"], additional_kwargs=additional_kwargs,
            sts_client_kwargs=sts_client_kwargs,
        )
    params, automatic_name = _arc._normalise_params(role_arn, args, additional_kwargs)
    fallback_region = a["region_name"] if isinstance(a["region_name"], str) else None
    source_parent = _Parent(parent)
    if a["validate"]:
        _arc._validate_with_botocore_model(_model_checker(), params)
        _check_sts_reachable(source_parent, sts_client_kwargs or {}, fallback_region)
    ours = getattr(source_parent.core, "assume_role_chain_credentials", None)
    if ours is not None:  # known without I/O to be temporary; other parents are checked at the first fetch
        _arc._clamp_for_chaining(params, ours)
    serial = params.get("SerialNumber")
    mfa = (
        _arc._MFACodes(serial, args.get("TokenCode"), a["mfa_token_provider"], a["mfa_token_provider_kwargs"])
        if serial else None
    )
    source = _AioAssumeRoleSource(
        source_parent, params, automatic_name, mfa, dict(sts_client_kwargs or {}),
        a["clock"] or _arc._utc_now, fallback_region,
    )
    return _build(source, options, parent)


def assume_role_chain(parent: AsyncParent, roles: Sequence[str | Mapping[str, Any]], **common: Any) -> Any:
    """Assume each role in turn (see :func:`assume_role_chain.assume_role_chain`); the last hop's session."""
    hops = _arc._chain_hops(roles, common)
    current: Any = parent
    for hop in hops:
        role_arn = hop.pop("RoleArn")
        current = assume_role(current, role_arn, **hop)
    return current


def refreshable_session(
    fetch: Callable[[], Mapping[str, Any]] | Callable[[], Coroutine[Any, Any, Mapping[str, Any]]], **kwargs: Any
) -> aioboto3.Session:
    """An ``aioboto3.Session`` whose credentials come from ``fetch``.

    ``fetch`` may be a coroutine function (awaited on the loop) or a plain
    function (called in a worker thread, so it may block). The keyword
    arguments, their validation and errors are those of
    :func:`assume_role_chain.refreshable_session`.
    """
    arguments = _REFRESHABLE_SESSION_SIGNATURE.bind(fetch, **kwargs)
    arguments.apply_defaults()
    a = arguments.arguments
    options = _arc._SessionOptions(
        a["region_name"], a["cache"], a["clock"], a["advisory_timeout"], a["mandatory_timeout"],
        _arc._resolve_eager(a["eager"], a["defer_refresh"]),
    )
    _arc._function_source_problems(fetch, options, a["cache_key"]).raise_if_any()
    name = a["source_name"] or str(getattr(fetch, "__qualname__", "custom credentials"))
    session: aioboto3.Session = _build(_AioFunctionSource(fetch, a["cache_key"], name), options, None)
    return session


def patch_aioboto3() -> None:
    """Add ``aioboto3.Session.assume_role(...)`` and ``.assume_role_chain(...)``. Idempotent."""
    aioboto3.Session.assume_role = assume_role
    aioboto3.Session.assume_role_chain = assume_role_chain


def _core_of(session: Any) -> aiobotocore.session.AioSession:
    if isinstance(session, aiobotocore.session.AioSession):
        return session
    if isinstance(session, aioboto3.Session):
        core = _arc._botocore_session_of(session)
        assert isinstance(core, aiobotocore.session.AioSession)
        return core
    raise _arc._invalid(f"Invalid session: must be an aioboto3.Session or an AioSession, not {type(session).__name__}")


async def whoami(session: aioboto3.Session | aiobotocore.session.AioSession) -> JSONDict:
    """The caller identity (``UserId``, ``Account``, ``Arn``) of ``session``'s credentials."""
    async with _core_of(session).create_client("sts") as sts:
        identity = dict(await sts.get_caller_identity())
    identity.pop("ResponseMetadata", None)
    return identity


async def get_credentials(session: aioboto3.Session | aiobotocore.session.AioSession) -> dict[str, str | None]:
    """The session's current credentials, refreshed first if needed (see :func:`assume_role_chain.get_credentials`)."""
    credentials = await _core_of(session).get_credentials()
    if credentials is None:
        raise botocore.exceptions.NoCredentialsError()
    if isinstance(credentials, _AioRefreshingCredentials):
        generation = await credentials.current_generation()
        return {
            "access_key": generation.access_key,
            "secret_key": generation.secret_key,
            "token": generation.token,
            "expiry_time": _arc._iso(generation.expiry),
        }
    frozen = await credentials.get_frozen_credentials()
    expiry = _arc._expiry_of(credentials)
    return {
        "access_key": frozen.access_key,
        "secret_key": frozen.secret_key,
        "token": frozen.token,
        "expiry_time": _arc._iso(expiry) if expiry is not None else None,
    }
