"""The secret-hygiene pytest plugin, and the checks it shares with tests/test_secret_hygiene.py.

:class:`Emissions` collects what code emits (log records, warnings, exception
messages, reprs, command-line stderr), :class:`Secrets` the secrets the tests
handled, and :func:`find_leaks` reports any secret found in any emission.
Loaded as a plugin (``-p tests.hygiene_plugin`` or
``pytest_plugins = ["tests.hygiene_plugin"]`` in ``tests/conftest.py``) it does
so for the whole test session and fails the session on a leak (see
docs/RELIABILITY.md, "Secret hygiene").
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

import pytest

OURS = ("assume_role_chain", "iot_x509", "tests")
#: Loggers whose DEBUG and INFO records are not checked: the test servers'
#: (moto and werkzeug print what they receive and answer) and s3transfer's.
#: botocore's, boto3's and urllib3's wire logs are checked: the library redacts
#: the secrets in them (request parameters, signed headers, response bodies).
UNCHECKED_WIRE_LOGGERS = ("s3transfer", "moto", "werkzeug")
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "IOT_X509_PKCS11_PIN")
CLI_MARKERS = ("assume-role-chain", "assume_role_chain", "iot_x509")
_BOUNDED = ("MFA code", "PKCS#11 PIN")  # short secrets: matched as whole words

# ---------------------------------------------------------------------------
# Secrets and emissions
# ---------------------------------------------------------------------------


@functools.cache
def _library_source() -> str:
    """The source text of the library's modules: no secret is ever in it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    texts = []
    for name in ("assume_role_chain.py", "iot_x509.py", "assume_role_chain_aio.py"):
        with contextlib.suppress(OSError), open(os.path.join(root, name), encoding="utf-8") as source:
            texts.append(source.read())
    return "\n".join(texts)


class Secrets:
    """Secret values to look for: long ones as substrings, MFA codes and PINs as whole words.

    Strings that occur in the library's source are not secrets: Hypothesis
    draws test values from the code under test (``"DynamoDBCache"`` as a
    session token), and the library's own names and messages are public.
    Secrets of 32 characters or more are also looked for by their first and
    last 20 characters (a message that echoes ``value[:40]`` leaks too).
    Credentials shorter than 8 characters are test placeholders ("s",
    "token") that would match ordinary words, and PINs shorter than 6 are
    not distinctive ("1234" is in ``arn:aws:iam::1234:role/x``); they are not
    tracked.
    """

    def __init__(self) -> None:
        self.kinds: dict[str, str] = {}

    def add(self, value: Any, kind: str) -> None:
        if not isinstance(value, str):
            return
        value = value.strip()
        if value in _library_source():
            return  # the library's own words (Hypothesis draws strings from the code under test): public
        if len(value) >= (6 if kind in _BOUNDED else 8):
            self.kinds.setdefault(value, kind)
        if len(value) >= 32 and kind not in _BOUNDED:
            for fragment in (value[:20], value[-20:]):
                if len(set(fragment)) >= 10:  # a fragment like "aaaa..." is no evidence
                    self.kinds.setdefault(fragment, f"{kind} (20 characters of it)")

    def add_credentials(self, data: Any) -> None:
        """Secret fields of a credentials mapping (any of the shapes the library reads)."""
        if isinstance(data, dict) or hasattr(data, "get"):
            for name in ("SecretAccessKey", "SessionToken", "secret_key", "token", "secretAccessKey", "sessionToken"):
                with contextlib.suppress(Exception):
                    self.add(data.get(name), "credential")

    def add_pem_key(self, pem: bytes) -> None:
        """The base64 lines of a private key (any one of them is key material)."""
        for line in pem.decode("ascii", "replace").splitlines():
            if len(line) >= 40 and not line.startswith("-----"):
                self.add(line, "private key")

    def __len__(self) -> int:
        return len(self.kinds)


@dataclass
class Emissions:
    """Texts emitted, each with its source and the test it came from."""

    items: list[tuple[str, str, str]] = field(default_factory=list)  # (where, source, text)
    where: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, source: str, text: str) -> None:
        if text:
            with self.lock:
                self.items.append((self.where, source, text))

    def add_repr(self, *objects: Any) -> None:
        for value in objects:
            self.add(f"repr of {type(value).__name__}", repr(value))
            self.add(f"str of {type(value).__name__}", str(value))

    def add_exception(self, error: BaseException | None) -> None:
        """str, repr and notes of an exception and of the exceptions a traceback shows with it."""
        seen: set[int] = set()
        while error is not None and id(error) not in seen:
            seen.add(id(error))
            name = type(error).__name__
            self.add(f"exception {name}", f"{error}\n{error!r}\n" + "\n".join(getattr(error, "__notes__", ())))
            # the chain a traceback shows: "raise ... from None" hides the context
            error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)


def find_leaks(emissions: Emissions, secrets: Secrets) -> list[str]:
    """One line per emission holding a secret, with every secret in it masked."""
    with emissions.lock:
        items = list(emissions.items)
    joined = "\0".join(dict.fromkeys(text for _, _, text in items))
    found = {value: kind for value, kind in secrets.kinds.items() if kind not in _BOUNDED and value in joined}
    bounded = [value for value, kind in secrets.kinds.items() if kind in _BOUNDED]
    if bounded:
        pattern = re.compile(_WORD.format("|".join(map(re.escape, bounded))))
        found.update((match.group(), secrets.kinds[match.group()]) for match in pattern.finditer(joined))
    leaks = []
    for where, source, text in items:
        hits = sorted((value for value, kind in found.items()
                       if (re.search(_WORD.format(re.escape(value)), text) if kind in _BOUNDED else value in text)),
                      key=len, reverse=True)
        if hits:
            kinds = sorted({found[value].split(" (")[0] for value in hits})
            for value in hits:
                text = text.replace(value, f"<{found[value].split(' (')[0]}>")
            leaks.append(f"{where or '(session)'}: {', '.join(kinds)} in {source}: {' '.join(text.split())[:300]}")
    return list(dict.fromkeys(leaks))


_WORD = r"(?<![0-9A-Za-z])(?:{})(?![0-9A-Za-z])"


class _RecordingHandler(logging.Handler):
    """Records every log record except the test servers' DEBUG and INFO records."""

    def __init__(self, emissions: Emissions) -> None:
        super().__init__(logging.DEBUG)
        self.emissions = emissions
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING and record.name.split(".")[0] in UNCHECKED_WIRE_LOGGERS:
            return
        try:
            text = self.format(record)
        except Exception as error:  # a broken record is still evidence
            text = f"{record.msg!r} {record.args!r} ({error})"
        self.emissions.add(f"log {record.name} {record.levelname}", text)


@contextlib.contextmanager
def captured(emissions: Emissions, *, everything: bool = True) -> Iterator[Emissions]:
    """Record log records and warnings into ``emissions`` while the block runs.

    ``everything``: every logger at DEBUG (the root logger too); otherwise only
    this project's loggers are lowered to DEBUG.
    """
    handler = _RecordingHandler(emissions)
    root = logging.getLogger()
    names = ["", *OURS] if everything else list(OURS)
    levels = {name: logging.getLogger(name).level for name in names}
    root.addHandler(handler)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield emissions
        for message in caught:
            emissions.add(f"warning {message.category.__name__}", str(message.message))
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def assert_no_leaks(emissions: Emissions, secrets: Secrets) -> None:
    assert len(secrets) > 0, "no secret to look for"
    leaks = find_leaks(emissions, secrets)
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)


# ---------------------------------------------------------------------------
# The plugin: the same checks over the whole test session
# ---------------------------------------------------------------------------


class _Tee:
    """Writes to a stream and a copy; anything else goes to the stream."""

    def __init__(self, stream: Any, copy: io.StringIO) -> None:
        self.stream, self.copy = stream, copy

    def write(self, text: str) -> int:
        self.copy.write(text)
        return int(self.stream.write(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class SessionHygiene:
    """Installs recorders for the whole session; :meth:`check` reports leaks."""

    def __init__(self) -> None:
        self.emissions = Emissions()
        self.secrets = Secrets()
        self.leaks: list[str] = []
        self._undo: list[Callable[[], None]] = []

    def _patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        setattr(owner, name, functools.wraps(original)(make(original)))
        self._undo.append(lambda: setattr(owner, name, original))

    def install(self) -> None:
        import botocore.credentials
        from _pytest._code.code import ExceptionInfo

        import assume_role_chain as arc

        iot_x509: Any
        try:
            import iot_x509
        except ImportError:  # pragma: no cover - assume_role_chain.py vendored alone
            iot_x509 = None
        emissions, secrets = self.emissions, self.secrets
        handler = _RecordingHandler(emissions)
        logging.getLogger().addHandler(handler)
        self._undo.append(lambda: logging.getLogger().removeHandler(handler))
        for name in OURS[:2]:
            logger = logging.getLogger(name)
            level = logger.level
            logger.setLevel(logging.DEBUG)
            self._undo.append(functools.partial(logger.setLevel, level))

        def show(original: Any) -> Any:
            def recording(message: warnings.WarningMessage) -> Any:
                emissions.add(f"warning {message.category.__name__}", str(message.message))
                return original(message)
            return recording

        def filled(original: Any) -> Any:  # every exception caught by pytest.raises
            def recording(self: Any, exc_info: Any) -> Any:
                emissions.add_exception(exc_info[1])
                return original(self, exc_info)
            return recording

        def tee_stderr(original: Any) -> Any:  # in-process command lines
            def main(*args: Any, **kwargs: Any) -> Any:
                buffer, stream = io.StringIO(), sys.stderr
                sys.stderr = cast(TextIO, _Tee(stream, buffer))
                try:
                    return original(*args, **kwargs)
                finally:
                    sys.stderr = stream
                    emissions.add("command-line stderr", buffer.getvalue())
            return main

        def popen_init(original: Any) -> Any:
            def init(self: Any, *args: Any, **kwargs: Any) -> Any:
                for name in SECRET_ENV:
                    secrets.add((kwargs.get("env") or {}).get(name), "PKCS#11 PIN" if "PIN" in name else "credential")
                return original(self, *args, **kwargs)
            return init

        def communicate(original: Any) -> Any:  # command lines run as subprocesses
            def run(self: Any, *args: Any, **kwargs: Any) -> Any:
                out, err = original(self, *args, **kwargs)
                command = " ".join(map(str, self.args)) if isinstance(self.args, (list, tuple)) else str(self.args)
                if any(marker in command for marker in CLI_MARKERS):
                    _learn_from_output(secrets, out)
                    emissions.add("command-line stderr", err.decode(errors="replace") if isinstance(err, bytes) else err or "")
                return out, err
            return run

        def credentials_init(original: Any) -> Any:
            def init(self: Any, access_key: Any, secret_key: Any, token: Any = None, *args: Any, **kwargs: Any) -> Any:
                secrets.add(secret_key, "credential")
                secrets.add(token, "credential")
                return original(self, access_key, secret_key, token, *args, **kwargs)
            return init

        def from_mapping(original: Any) -> Any:
            def read(data: Any, *args: Any) -> Any:
                secrets.add_credentials(data)
                return original(data, *args)
            return read

        def mfa_code(original: Any) -> Any:
            def code(self: Any) -> Any:
                value = original(self)
                secrets.add(value, "MFA code")
                return value
            return code

        def pkcs11_validate(original: Any) -> Any:
            def validate(self: Any) -> Any:
                secrets.add(self.user_pin, "PKCS#11 PIN")
                return original(self)
            return validate

        def load_key(original: Any) -> Any:
            def load(value: Any) -> Any:
                pem = original(value)
                secrets.add_pem_key(pem.data)
                return pem
            return load

        self._patch(warnings, "_showwarnmsg", show)
        self._patch(ExceptionInfo, "fill_unfilled", filled)
        self._patch(arc, "main", tee_stderr)
        self._patch(subprocess.Popen, "__init__", popen_init)
        self._patch(subprocess.Popen, "communicate", communicate)
        self._patch(botocore.credentials.Credentials, "__init__", credentials_init)
        self._patch(arc, "_credentials_from_mapping", from_mapping)
        self._patch(arc._MFACodes, "code", mfa_code)  # type: ignore[attr-defined]
        if iot_x509 is not None:
            self._patch(iot_x509, "main", tee_stderr)
            self._patch(iot_x509.Pkcs11Config, "validate", pkcs11_validate)
            self._patch(iot_x509, "_load_key", load_key)

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def learn_environment(self) -> None:
        for name in SECRET_ENV:
            self.secrets.add(os.environ.get(name), "PKCS#11 PIN" if "PIN" in name else "credential")

    def check(self) -> list[str]:
        self.leaks = find_leaks(self.emissions, self.secrets)
        return self.leaks


def _learn_from_output(secrets: Secrets, output: Any) -> None:
    """Credentials a command line printed (credential_process JSON or KEY=value lines)."""
    text = output.decode(errors="replace") if isinstance(output, bytes) else output or ""
    with contextlib.suppress(ValueError):
        document = json.loads(text)
        if isinstance(document, dict):
            secrets.add_credentials(document)
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            secrets.add(value, "credential")


_active: list[SessionHygiene] = []  # the plugin's recorder, once configured


def pytest_configure(config: pytest.Config) -> None:
    hygiene = SessionHygiene()
    hygiene.install()
    _active.append(hygiene)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _active:
        _active.pop().uninstall()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _active[0].emissions.where = item.nodeid
    try:
        return (yield)
    finally:
        _active[0].emissions.where = ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    _active[0].learn_environment()  # the fixtures have set it up by now
    return (yield)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.capstderr:
        with _active[0].emissions.lock:
            _active[0].emissions.items.append((report.nodeid, "captured stderr", report.capstderr))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    hygiene = _active[0]
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: the controller checks what every worker saw
        with hygiene.emissions.lock:
            workeroutput["secret_hygiene"] = {"emissions": list(hygiene.emissions.items), "secrets": dict(hygiene.secrets.kinds)}
        return
    if hygiene.check():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist's controller: a worker's emissions and secrets join its own, so that a
    secret one test handled is looked for in what every other test emitted, as in one process."""
    report = getattr(node, "workeroutput", {}).get("secret_hygiene")
    hygiene = _active[0]
    if report is None:  # a worker that crashed; pytest-xdist fails the session for it
        return
    with hygiene.emissions.lock:
        hygiene.emissions.items.extend(tuple(item) for item in report["emissions"])
    for value, kind in report["secrets"].items():
        hygiene.secrets.kinds.setdefault(value, kind)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workeroutput"):
        return
    hygiene = _active[0]
    if hygiene.leaks:
        terminalreporter.section("secret hygiene: LEAKS", red=True, bold=True)
        for line in hygiene.leaks:
            terminalreporter.write_line(line)
    else:
        terminalreporter.write_line(
            f"secret hygiene: {len(hygiene.emissions.items)} emissions checked against "
            f"{len(hygiene.secrets)} secrets: no leak"
        )
