"""AWS IoT Core X.509 certificates for boto3 and MQTT.

``iot_session(cert, key, role_alias, endpoint=...)`` returns a plain
:class:`boto3.Session` whose credentials come from the AWS IoT Core
credentials provider (``GET /role-aliases/<alias>/credentials`` over mutual
TLS) and refresh themselves with :mod:`assume_role_chain`'s engine.
``mqtt_connection(...)`` builds an :class:`awscrt.mqtt.Connection` with the same
certificate. A :class:`TLSIdentity` loads certificate, key and CA once for
both. ``python -m iot_x509 ...`` prints ``credential_process`` JSON.

Keys are PEM (a path or the content) or live in a PKCS#11 token. Key material
is never written to disk or logged, and no repr or error message holds a
secret. PEM keys use the standard library's ``ssl`` (a connection costs a few
milliseconds and TLS failures are reported at once); PKCS#11 keys and MQTT use
awscrt, imported only then.

Sections:

1. Errors
2. Argument types and validation
3. PEM inputs and the TLS identity
4. Transports (standard-library ssl, awscrt)
5. The credentials provider
6. Public API: iot_session
7. MQTT
8. Command line (credential_process)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import hashlib
import http
import http.client
import io
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Union, cast

if TYPE_CHECKING:
    import boto3

__all__ = [
    "PIN_ENV",
    "Endpoint",
    "IoTConfigError",
    "IoTConnectionError",
    "IoTCredentialsProvider",
    "IoTError",
    "IoTHTTPError",
    "IoTResponseError",
    "IoTTLSError",
    "IoTTimeoutError",
    "Pkcs11Config",
    "TLSIdentity",
    "iot_session",
    "main",
    "mqtt_connection",
    "mqtt_websocket_connection",
    "parse_credentials_endpoint",
    "parse_data_endpoint",
    "websocket_signer",
]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())  # applications choose where records go

PemInput = Union[str, bytes, "os.PathLike[str]"]
Transport = Literal["auto", "ssl", "awscrt"]

# awscrt's futures raise this on timeout; TimeoutError is the same class only since 3.11.
_FutureTimeout = concurrent.futures.TimeoutError

MAX_RESPONSE_BYTES = 64 * 1024  # real answers are about 1.5 KiB
MQTT_ALPN = "x-amzn-mqtt-ca"  # AWS IoT: MQTT over mutual TLS on port 443


# ---------------------------------------------------------------------------
# 1. Errors
# ---------------------------------------------------------------------------


class IoTError(Exception):
    """Base class of every error this module raises."""


class IoTConfigError(IoTError, ValueError):
    """An argument is invalid (raised at the call, before any network I/O)."""


class IoTConnectionError(IoTError, ConnectionError):
    """The endpoint could not be reached or dropped the connection."""


class IoTTLSError(IoTConnectionError):
    """TLS failed: untrusted server certificate, refused client certificate..."""


class IoTTimeoutError(IoTError, TimeoutError):
    """The endpoint did not answer within ``timeout`` seconds."""


class IoTResponseError(IoTError):
    """The answer was malformed, truncated or too large."""


class IoTHTTPError(IoTError):
    """The credentials provider answered with an HTTP error status."""

    def __init__(self, status: int, server_message: str, url: str) -> None:
        self.status = status
        self.server_message = server_message
        phrase = _status_phrase(status)
        super().__init__(f"HTTP {status} {phrase} from {url}: {server_message}")


def _status_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


# ---------------------------------------------------------------------------
# 2. Argument types and validation
# ---------------------------------------------------------------------------

# Every pattern is ASCII-only and used with re.fullmatch (``$`` would let a
# trailing newline through, ``\w`` any Unicode letter).
_ROLE_ALIAS_RE = re.compile(r"[A-Za-z0-9_=,@-]{1,128}")
_THING_NAME_RE = re.compile(r"[A-Za-z0-9:_-]{1,128}")
_HOST_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_CREDENTIALS_HOST_RE = re.compile(
    r"[a-z0-9-]+\.credentials\.iot(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
)
_IOT_HOST_RE = re.compile(r"(?:[a-z0-9-]+\.)+iot(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")
_ACCESS_KEY_RE = re.compile(r"[A-Z0-9]{16,128}")
_PKCS11_KEYS = ("pkcs11_lib", "user_pin", "slot_id", "token_label", "private_key_label")


@dataclasses.dataclass(frozen=True)
class Pkcs11Config:
    """Where the private key lives: a PKCS#11 library, token and key label.

    Select the token by ``token_label`` (SoftHSM assigns random slot numbers)
    or ``slot_id``. The PIN never appears in a repr or a message.
    """

    pkcs11_lib: str
    user_pin: str | None = dataclasses.field(default=None, repr=False)
    slot_id: int | None = None
    token_label: str | None = None
    private_key_label: str | None = None

    @classmethod
    def from_value(cls, value: Pkcs11Config | Mapping[str, Any]) -> Pkcs11Config:
        """Accept a config or a mapping with boto3-refresh-session's keys."""
        if isinstance(value, Pkcs11Config):
            config = value
        elif isinstance(value, Mapping):
            unknown = sorted(str(k) for k in value if k not in _PKCS11_KEYS)
            if unknown:
                raise IoTConfigError(
                    f"pkcs11: unknown key(s) {', '.join(unknown)}; "
                    f"known: {', '.join(_PKCS11_KEYS)}"
                )
            if "pkcs11_lib" not in value:
                raise IoTConfigError("pkcs11: 'pkcs11_lib' (the library path) is required")
            config = cls(**dict(value))
        else:
            raise IoTConfigError(
                f"pkcs11 must be a Pkcs11Config or a mapping, not {type(value).__name__}"
            )
        config.validate()
        return config

    def validate(self) -> None:
        """Check types and that the library file exists."""
        if not isinstance(self.pkcs11_lib, (str, os.PathLike)):
            raise IoTConfigError("pkcs11: 'pkcs11_lib' must be a path")
        if not os.path.isfile(self.pkcs11_lib):
            raise IoTConfigError(f"pkcs11: library not found: {self.pkcs11_lib}")
        if not _is_utf8(os.fspath(self.pkcs11_lib)):  # awscrt takes UTF-8 paths only
            raise IoTConfigError(f"pkcs11: the library path {self.pkcs11_lib!r} is not valid UTF-8")
        for name in ("user_pin", "token_label", "private_key_label"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not _is_utf8(value)):
                raise IoTConfigError(f"pkcs11: '{name}' must be a string (valid UTF-8)")
        slot = self.slot_id
        if slot is not None and (isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < 2**64):
            raise IoTConfigError("pkcs11: 'slot_id' must be an integer from 0 to 2**64-1 (a CK_SLOT_ID)")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A parsed ``host[:port]`` with the region found in an AWS host name."""

    host: str
    port: int
    region: str | None

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 443 else f"{host}:{self.port}"


def _split_host_port(value: Any, what: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` (an ``https://`` prefix and a trailing ``/`` are tolerated)."""
    if not isinstance(value, str) or not value.strip():
        raise IoTConfigError(f"{what}: a host name (optionally with :port) is required")
    text = value.strip()
    if text.lower().startswith("https://"):
        text = text[len("https://"):]
    text = text.rstrip("/")
    if any(c in text for c in "/?@#") or any(c.isspace() or not c.isprintable() for c in text):
        raise IoTConfigError(f"{what}: expected host[:port], got {value!r}")
    if not text.isascii():
        raise IoTConfigError(
            f"{what}: the host name must be ASCII (give an internationalised name in its "
            f"xn-- form), got {value!r}"
        )
    try:
        parsed = urllib.parse.urlsplit("//" + text)
        port = parsed.port
    except ValueError:
        raise IoTConfigError(f"{what}: invalid port or host in {value!r}") from None
    if parsed.netloc.endswith(":") or port == 0:
        raise IoTConfigError(f"{what}: invalid port in {value!r} (1 to 65535)")
    return _check_host_name(parsed.hostname or "", what, value), default_port if port is None else port


def _check_host_name(host: str, what: str, value: str) -> str:
    """An IP address, ``localhost`` or a dotted DNS name; one trailing dot is dropped."""
    host = host.lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    valid = len(name) <= 253 and all(_HOST_LABEL_RE.fullmatch(label) for label in labels)
    if not valid or (len(labels) < 2 and name != "localhost"):
        raise IoTConfigError(
            f"{what}: expected a host name such as "
            f"<prefix>.credentials.iot.<region>.amazonaws.com[:port], got {value!r}"
        )
    return name


def parse_credentials_endpoint(value: Any) -> Endpoint:
    """Parse the credentials-provider endpoint; refuse a data endpoint."""
    host, port = _split_host_port(value, "endpoint", 443)
    match = _CREDENTIALS_HOST_RE.fullmatch(host)
    if match:
        return Endpoint(host, port, match.group(1))
    data = _IOT_HOST_RE.fullmatch(host)
    if data:
        raise IoTConfigError(
            f"endpoint {host!r} is an AWS IoT data (MQTT) endpoint; credentials come from "
            "the account's credentials-provider endpoint "
            "(<prefix>.credentials.iot.<region>.amazonaws.com). Find it with: "
            f"aws iot describe-endpoint --endpoint-type iot:CredentialProvider --region {data.group(1)}"
        )
    return Endpoint(host, port, None)


def parse_data_endpoint(value: Any, port: int, default_port: int) -> Endpoint:
    """Parse an MQTT (data) endpoint; refuse the credentials-provider endpoint."""
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise IoTConfigError(f"port: must be an integer from 1 to 65535, got {port!r}")
    host, given_port = _split_host_port(value, "endpoint", port)
    if given_port != port and port != default_port:
        raise IoTConfigError("endpoint: give the port in the endpoint or as port=, not both")
    if _CREDENTIALS_HOST_RE.fullmatch(host):
        raise IoTConfigError(
            f"endpoint {host!r} is the credentials-provider endpoint; MQTT needs the data "
            "endpoint. Find it with: aws iot describe-endpoint --endpoint-type iot:Data-ATS"
        )
    match = _IOT_HOST_RE.fullmatch(host)
    return Endpoint(host, given_port, match.group(1) if match else None)


def _check_pattern(value: Any, what: str, pattern: re.Pattern[str], rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = repr(value) if isinstance(value, str) and len(value) <= 200 else type(value).__name__
        raise IoTConfigError(f"{what} must be {rule}; got {shown}")
    return value


def check_role_alias(value: Any) -> str:
    """A role alias: 1-128 characters of letters, digits, ``_=,@-``."""
    return _check_pattern(value, "role_alias", _ROLE_ALIAS_RE, "1-128 characters of [A-Za-z0-9_=,@-]")


def check_thing_name(value: Any) -> str | None:
    """A thing name: 1-128 characters of letters, digits, ``:_-`` (or None)."""
    if value is None:
        return None
    return _check_pattern(value, "thing_name", _THING_NAME_RE, "1-128 characters of [A-Za-z0-9:_-]")


def _check_timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 600:
        raise IoTConfigError(f"timeout must be a number of seconds in (0, 600], got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------
# 3. PEM inputs and the TLS identity
# ---------------------------------------------------------------------------

_CERT_MARK = b"-----BEGIN CERTIFICATE-----"
_KEY_RE = re.compile(rb"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----")


@dataclasses.dataclass(frozen=True)
class _Pem:
    """PEM bytes and, when they came from a file, its path (data hidden)."""

    data: bytes = dataclasses.field(repr=False)
    path: str | None


def _load_pem(value: Any, what: str) -> _Pem:
    """Read ``value``: PEM content (str/bytes) or a path to a PEM file."""
    if isinstance(value, (str, bytes)) and b"-----BEGIN" in _as_bytes(value):
        return _Pem(_as_bytes(value), None)
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise IoTConfigError(f"{what} must be a path or PEM content, not {type(value).__name__}")
    path = os.fsdecode(value)
    # Echo only what looks like a path: a misplaced key must never reach a message.
    shown = f" {path!r}" if _looks_like_a_path(value) else f" (a value of {len(path)} characters)"
    if "\n" in path or "\0" in path or not os.path.isfile(path):
        raise IoTConfigError(f"{what}: not PEM content and not an existing file{shown}")
    try:
        with open(path, "rb") as handle:
            data = handle.read(1024 * 1024)
    except OSError as error:
        raise IoTConfigError(f"{what}: cannot read{shown}: {error.strerror}") from None
    if b"-----BEGIN" not in data:
        raise IoTConfigError(f"{what}: file{shown} is not PEM")
    return _Pem(data, path)


def _looks_like_a_path(value: Any) -> bool:
    """Safe to echo: a PathLike or a name with a key-file suffix (not key text)."""
    if isinstance(value, os.PathLike):
        return True
    text = os.fsdecode(value)
    return len(text) < 1024 and text.lower().endswith((".pem", ".key", ".crt", ".p8"))


def _as_bytes(value: str | bytes) -> bytes:
    # A path from a non-UTF-8 file system arrives surrogate-escaped: never a traceback here.
    return value.encode("utf-8", "replace") if isinstance(value, str) else value


def _load_cert(value: Any, what: str = "cert") -> tuple[_Pem, bytes]:
    """A PEM certificate (chain) and the DER of its first certificate."""
    pem = _load_pem(value, what)
    start = pem.data.find(_CERT_MARK)
    end = pem.data.find(b"-----END CERTIFICATE-----", start)
    if start < 0 or end < 0:
        raise IoTConfigError(f"{what}: no PEM certificate (BEGIN CERTIFICATE) found")
    try:
        der = ssl.PEM_cert_to_DER_cert(pem.data[start:end + 25].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise IoTConfigError(f"{what}: the PEM certificate is not valid base64") from None
    return pem, der


def _load_key(value: Any) -> _Pem:
    """A PEM private key (unencrypted: PKCS#8, PKCS#1 or SEC1)."""
    pem = _load_pem(value, "key")
    match = _KEY_RE.search(pem.data)
    if match is None:
        raise IoTConfigError("key holds no PEM private key")
    if match.group(1).startswith(b"ENCRYPTED") or b"Proc-Type: 4,ENCRYPTED" in pem.data:
        raise IoTConfigError("key is encrypted; an unencrypted PEM private key is required")
    return pem


def _memfd_available() -> bool:
    return hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


def _load_cert_chain(ctx: ssl.SSLContext, cert: _Pem, key: _Pem) -> None:
    """Load cert and key into ``ctx`` from memory (memfd), never from a temp file."""
    fds: list[int] = []
    try:
        paths = []
        for pem in (cert, key):
            if pem.path is not None:
                paths.append(pem.path)
                continue
            fd = os.memfd_create("iot-x509", os.MFD_CLOEXEC)  # RAM only, gone at close
            fds.append(fd)
            view = memoryview(pem.data)
            while view:
                view = view[os.write(fd, view):]
            paths.append(f"/proc/self/fd/{fd}")
        ctx.load_cert_chain(paths[0], paths[1])
    except ssl.SSLError as error:
        raise IoTConfigError(_cert_chain_problem(error)) from None
    finally:
        for fd in fds:
            os.close(fd)


def _cert_chain_problem(error: ssl.SSLError) -> str:
    reason = getattr(error, "reason", None) or ""
    if "KEY_VALUES_MISMATCH" in reason:
        return "key does not belong to cert (the public keys differ)"
    if "NO_CERTIFICATE_ASSIGNED" in reason:
        return "key does not belong to cert (the key types differ)"
    return f"cert/key could not be loaded ({reason or error.__class__.__name__})"


def _load_ca(value: Any) -> _Pem | None:
    """The CA bundle the servers' certificates are checked against (None: the system's)."""
    return _load_cert(value, "ca")[0] if value is not None else None


@dataclasses.dataclass(frozen=True, init=False, eq=False, repr=False)
class TLSIdentity:
    """A device's TLS client identity: certificate, private key and CA, loaded once.

    ``cert`` and ``ca`` (the CA of the servers, default: the system's) are
    paths or PEM content. The private key is ``key`` (a PEM path or content,
    unencrypted) or, with ``key=None``, a PKCS#11 token (``pkcs11=``, a
    :class:`Pkcs11Config` or a mapping of its fields): exactly one of them.
    Everything is read and checked here (a PEM key against the certificate
    too; awscrt logs in to a PKCS#11 token when a transport or connection is
    made), so that one identity serves :func:`iot_session`,
    :class:`IoTCredentialsProvider` and :func:`mqtt_connection` (``identity=``).
    Immutable; the repr names the certificate's SHA-256 and where the key
    lives, never key material or the PIN.
    """

    cert_sha256: str
    pkcs11: Pkcs11Config | None
    _cert: _Pem
    _key: _Pem | None
    _ca: _Pem | None

    def __init__(
        self,
        cert: PemInput,
        key: PemInput | None = None,
        *,
        pkcs11: Pkcs11Config | Mapping[str, Any] | None = None,
        ca: PemInput | None = None,
    ) -> None:
        cert_pem, der = _load_cert(cert)
        ca_pem = _load_ca(ca)
        if (key is None) == (pkcs11 is None):
            raise IoTConfigError("give exactly one of key (a PEM private key) and pkcs11")
        fields = {
            "cert_sha256": hashlib.sha256(der).hexdigest(),
            "pkcs11": Pkcs11Config.from_value(pkcs11) if pkcs11 is not None else None,
            "_cert": cert_pem,
            "_key": _load_key(key) if key is not None else None,
            "_ca": ca_pem,
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)
        if self._ssl_can_load_key:  # s2n refuses a mismatched pair without saying why; ssl names it
            self._load_into(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))

    def __repr__(self) -> str:
        key = f"key in {self.pkcs11!r}" if self.pkcs11 is not None else f"key {_origin(self._key)}"
        ca = f"CA {_origin(self._ca)}" if self._ca is not None else "system CAs"
        return f"<TLSIdentity cert sha256 {self.cert_sha256[:16]}..., {key}, {ca}>"

    @property
    def _ssl_can_load_key(self) -> bool:
        """The standard library's ssl loads a PEM key from a file or a memfd only."""
        if self._key is None:
            return False
        return _memfd_available() or (self._cert.path is not None and self._key.path is not None)

    def _load_into(self, ctx: ssl.SSLContext) -> None:
        assert self._key is not None
        _load_cert_chain(ctx, self._cert, self._key)


def _origin(pem: _Pem | None) -> str:
    """Where PEM came from, never its content."""
    return f"from file {pem.path!r}" if pem is not None and pem.path is not None else "from PEM content"


def _resolve_identity(identity: Any, cert: Any, key: Any, pkcs11: Any, ca: Any) -> TLSIdentity:
    """``identity=`` as given, or one built from cert/key/pkcs11/ca (not both)."""
    if identity is None:
        return TLSIdentity(cert, key, pkcs11=pkcs11, ca=ca)
    if not isinstance(identity, TLSIdentity):
        raise IoTConfigError(f"identity must be a TLSIdentity, not {type(identity).__name__}")
    given = [name for name, value in (("cert", cert), ("key", key), ("pkcs11", pkcs11), ("ca", ca)) if value is not None]
    if given:
        raise IoTConfigError(f"identity: give either identity= or {'/'.join(given)}, not both")
    return identity


# ---------------------------------------------------------------------------
# 4. Transports
# ---------------------------------------------------------------------------

Response = tuple[int, bytes]


class _Deadline:
    """One overall deadline shared by every wait of a request."""

    def __init__(self, timeout: float, url: str) -> None:
        self.timeout = timeout
        self.url = url
        self._end = time.monotonic() + timeout

    def remaining(self, doing: str) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise self.expired(doing)
        return left

    def expired(self, doing: str) -> IoTTimeoutError:
        return IoTTimeoutError(f"timed out after {self.timeout:g} s {doing} ({self.url})")


# -- standard library ssl --------------------------------------------------

_CLIENT_CERT_REFUSED = (
    "CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA", "CERTIFICATE_UNKNOWN",
    "ACCESS_DENIED", "CERTIFICATE_REVOKED", "CERTIFICATE_EXPIRED", "UNSUPPORTED_CERTIFICATE",
)
_OLD_PROTOCOL = ("UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "NO_PROTOCOLS_AVAILABLE")


def _tls_error(error: ssl.SSLError, ep: Endpoint) -> IoTTLSError:
    """Name a TLS failure: untrusted or too old a server, refused client certificate, other."""
    where = ep.authority
    if isinstance(error, ssl.SSLCertVerificationError):
        return IoTTLSError(
            f"TLS: the server certificate of {where} is not trusted "
            f"({error.verify_message}); pass ca= with the CA that issued it"
        )
    reason = error.reason or type(error).__name__
    if reason in _OLD_PROTOCOL:
        return IoTTLSError(
            f"TLS: {where} does not offer TLS 1.2 or newer ({reason}); older versions are refused"
        )
    if any(mark in reason for mark in _CLIENT_CERT_REFUSED):
        return IoTTLSError(
            f"TLS: {where} refused the client certificate ({reason}); is it registered, "
            "active and attached to a policy?"
        )
    return IoTTLSError(f"TLS failure with {where}: {reason}")


def _resolve(ep: Endpoint, deadline: _Deadline) -> list[Any]:
    """getaddrinfo bounded by the deadline (it cannot be cancelled: a thread)."""
    try:
        ipaddress.ip_address(ep.host)
        return socket.getaddrinfo(ep.host, ep.port, type=socket.SOCK_STREAM)
    except ValueError:
        pass
    result: list[Any] = []
    done = threading.Event()

    def run() -> None:
        try:
            result.append(socket.getaddrinfo(ep.host, ep.port, type=socket.SOCK_STREAM))
        except OSError as error:
            result.append(error)
        finally:
            done.set()

    threading.Thread(target=run, name="iot-x509-resolve", daemon=True).start()
    if not done.wait(deadline.remaining(f"resolving {ep.host}")):
        raise deadline.expired(f"resolving {ep.host}")
    if isinstance(result[0], OSError):
        raise IoTConnectionError(f"cannot resolve {ep.host}: {result[0]}")
    return cast(list[Any], result[0])


def _connect(ep: Endpoint, deadline: _Deadline) -> socket.socket:
    last: OSError | None = None
    for family, kind, proto, _, address in _resolve(ep, deadline):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.remaining(f"connecting to {ep.authority}"))
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except TimeoutError:
            sock.close()
            raise deadline.expired(f"connecting to {ep.authority}") from None
        except OSError as error:
            sock.close()
            last = error
    reason = (last.strerror if last else None) or str(last)
    raise IoTConnectionError(f"cannot connect to {ep.authority}: {reason}")


class _DeadlineReader(io.RawIOBase):
    """A socket reader whose every recv waits only until the deadline."""

    def __init__(self, sock: socket.socket, deadline: _Deadline, doing: str) -> None:
        self._sock, self._deadline, self._doing = sock, deadline, doing

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(self._deadline.remaining(self._doing))
        return self._sock.recv_into(buffer)


class _DeadlineSocket:
    """What :class:`http.client.HTTPResponse` needs from a socket."""

    def __init__(self, sock: socket.socket, deadline: _Deadline, doing: str) -> None:
        self._reader = _DeadlineReader(sock, deadline, doing)

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(self._reader)


def _request_bytes(ep: Endpoint, path: str, headers: Mapping[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {ep.authority}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Connection: close", "", ""]
    return "\r\n".join(lines).encode("ascii")


def _read_response(tls: ssl.SSLSocket, ep: Endpoint, deadline: _Deadline, doing: str) -> Response:
    fake = cast(socket.socket, _DeadlineSocket(tls, deadline, doing))
    response = http.client.HTTPResponse(fake, method="GET")
    try:
        response.begin()
        if response.length is None:  # chunked or until close: read at most the limit
            body = response.read(MAX_RESPONSE_BYTES + 1)
        elif response.length > MAX_RESPONSE_BYTES:
            raise _oversized(ep)
        else:
            body = response.read()  # raises IncompleteRead when cut short
    except http.client.IncompleteRead:
        raise IoTResponseError(f"the response from {ep.authority} ended early") from None
    except http.client.RemoteDisconnected:
        raise _closed_after_handshake(ep) from None
    except http.client.HTTPException as error:
        raise IoTResponseError(
            f"malformed HTTP response from {ep.authority} ({type(error).__name__})"
        ) from None
    finally:  # now, not when the collector gets to it after the socket is gone (an error on 3.13)
        with contextlib.suppress(Exception):
            response.close()
    if len(body) > MAX_RESPONSE_BYTES:
        raise _oversized(ep)
    return response.status, body


def _closed_after_handshake(ep: Endpoint) -> IoTTLSError:
    return IoTTLSError(
        f"TLS: {ep.authority} ended the connection after the handshake without answering; "
        "it most likely refused the client certificate (registered, active, right CA?)"
    )


def _oversized(ep: Endpoint) -> IoTResponseError:
    return IoTResponseError(
        f"the response from {ep.authority} is larger than {MAX_RESPONSE_BYTES} bytes"
    )


class _SslTransport:
    """HTTPS GET with the standard library's ssl; the key stays in the SSLContext."""

    name = "ssl"

    def __init__(self, identity: TLSIdentity) -> None:
        ca = identity._ca
        cadata = ca.data.decode("ascii", "replace") if ca else None
        try:
            ctx = ssl.create_default_context(cadata=cadata)
        except ssl.SSLError as error:
            raise IoTConfigError(f"ca could not be loaded ({error.reason})") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        identity._load_into(ctx)
        self._ctx = ctx

    def get(self, ep: Endpoint, path: str, headers: Mapping[str, str], timeout: float) -> Response:
        deadline = _Deadline(timeout, f"https://{ep.authority}{path}")
        sock = _connect(ep, deadline)
        try:
            tls = self._ctx.wrap_socket(sock, server_hostname=ep.host, do_handshake_on_connect=False)
            try:
                return self._exchange(tls, ep, path, headers, deadline)
            finally:
                tls.close()
        finally:
            sock.close()

    def _exchange(
        self, tls: ssl.SSLSocket, ep: Endpoint, path: str, headers: Mapping[str, str], deadline: _Deadline
    ) -> Response:
        doing = f"in the TLS handshake with {ep.authority}"
        shaken = False
        try:
            tls.settimeout(deadline.remaining(doing))
            tls.do_handshake()
            shaken = True
            doing = f"sending the request to {ep.authority}"
            tls.settimeout(deadline.remaining(doing))
            tls.sendall(_request_bytes(ep, path, headers))
            doing = f"waiting for the response from {ep.authority}"
            return _read_response(tls, ep, deadline, doing)
        except IoTError:
            raise
        except (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError):
            if shaken:  # TLS 1.3: the verdict on the client certificate comes after the handshake
                raise _closed_after_handshake(ep) from None
            raise IoTConnectionError(f"{ep.authority} closed the connection {doing}") from None
        except ssl.SSLError as error:
            raise _tls_error(error, ep) from None
        except TimeoutError:
            raise deadline.expired(doing) from None
        except OSError as error:
            raise IoTConnectionError(f"connection to {ep.authority} failed {doing}: {error}") from None


# -- awscrt ----------------------------------------------------------------


def _awscrt() -> Any:
    """Import awscrt on first use (PKCS#11 and MQTT only; it takes ~0.2 s)."""
    try:
        import awscrt.auth  # type: ignore[import-untyped]
        import awscrt.exceptions  # type: ignore[import-untyped]
        import awscrt.http  # type: ignore[import-untyped]
        import awscrt.io  # type: ignore[import-untyped]
        import awscrt.mqtt  # type: ignore[import-untyped]
    except ImportError:
        raise IoTConfigError(
            'awscrt is needed for PKCS#11 keys, transport="awscrt" and MQTT: '
            'pip install "assume-role-chain[iot]"'
        ) from None
    return awscrt


_bootstrap_lock = threading.Lock()
_bootstrap: tuple[int, Any] | None = None
_pkcs11_libs: dict[tuple[int, str], Any] = {}


def _new_lock_in_child() -> None:
    """A child forked while another thread held the lock would wait for that thread forever."""
    global _bootstrap_lock
    _bootstrap_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def _crt_bootstrap() -> Any:
    """One event loop per process (made again in a forked child)."""
    global _bootstrap
    with _bootstrap_lock:
        if _bootstrap is None or _bootstrap[0] != os.getpid():
            crt = _awscrt()
            group = crt.io.EventLoopGroup(1)
            resolver = crt.io.DefaultHostResolver(group)
            _bootstrap = (os.getpid(), crt.io.ClientBootstrap(group, resolver))
        return _bootstrap[1]


def _pkcs11_lib(path: str) -> Any:
    """Load a PKCS#11 library once per process and keep it loaded."""
    key = (os.getpid(), os.fspath(path))
    with _bootstrap_lock:
        if key not in _pkcs11_libs:
            crt = _awscrt()
            try:
                _pkcs11_libs[key] = crt.io.Pkcs11Lib(file=key[1])
            except (crt.exceptions.AwsCrtError, RuntimeError) as error:
                raise IoTConfigError(f"pkcs11: cannot load {key[1]}: {_crt_error_text(error)}") from None
        return _pkcs11_libs[key]


def _crt_identity_context(identity: TLSIdentity, alpn: str | None = None) -> Any:
    """An awscrt ClientTlsContext presenting ``identity`` (a PKCS#11 token logs in here)."""
    io_ = _awscrt().io
    pkcs11, cert = identity.pkcs11, identity._cert
    if pkcs11 is not None:
        options = io_.TlsContextOptions.create_client_with_mtls_pkcs11(
            pkcs11_lib=_pkcs11_lib(pkcs11.pkcs11_lib),
            user_pin=pkcs11.user_pin,
            slot_id=pkcs11.slot_id,
            token_label=pkcs11.token_label,
            private_key_label=pkcs11.private_key_label,
            cert_file_contents=cert.data,
        )
    else:
        assert identity._key is not None
        options = io_.TlsContextOptions.create_client_with_mtls(cert.data, identity._key.data)
    if identity._ca is not None:
        options.override_default_trust_store(identity._ca.data)
    if alpn is not None:
        options.alpn_list = [alpn]
    return _crt_tls_context(options, "pkcs11" if pkcs11 is not None else "cert/key")


def _crt_tls_context(options: Any, what: str) -> Any:
    """Create the ClientTlsContext (TLS 1.2 or newer); PKCS#11 logs in here.

    Every awscrt connection (HTTPS, MQTT, MQTT over WebSocket) gets its
    context here: awscrt's default would accept a TLS 1.0 server.
    """
    crt = _awscrt()
    options.min_tls_ver = crt.io.TlsVersion.TLSv1_2
    try:
        return crt.io.ClientTlsContext(options)
    except (crt.exceptions.AwsCrtError, RuntimeError) as error:
        raise IoTConfigError(f"{what}: {_crt_error_text(error)}") from None


def _crt_error_text(error: BaseException) -> str:
    """``NAME: description`` of an awscrt error (AwsCrtError or RuntimeError)."""
    name = getattr(error, "name", None)
    if name:
        return f"{name}: {getattr(error, 'message', '')}"
    match = re.match(r"^-?\d+ \((AWS_[A-Z0-9_]+)\): (.*)$", str(error))
    return f"{match.group(1)}: {match.group(2)}" if match else f"{type(error).__name__}: {error}"


def _crt_error(error: Any, ep: Endpoint, after_handshake: bool) -> IoTError:
    name = str(getattr(error, "name", type(error).__name__))
    if name == "AWS_IO_SOCKET_TIMEOUT":
        return IoTTimeoutError(f"timed out connecting to {ep.authority} ({name})")
    if after_handshake and ("TLS" in name or "CONNECTION_CLOSED" in name):
        return _closed_after_handshake(ep)
    if "TLS" in name:
        return IoTTLSError(f"TLS failure with {ep.authority} ({name})")
    return IoTConnectionError(f"connection to {ep.authority} failed ({name})")


def _probe_server(ep: Endpoint, ca: _Pem | None, deadline: _Deadline) -> None:
    """Raise IoTTLSError if the server is untrusted or too old (stdlib check).

    awscrt (s2n) reports an untrusted server only after 10-30 s of "error
    blinding", and a TLS version below 1.2 only as a "negotiation failure";
    a handshake without a client certificate names either at once.
    """
    try:
        ctx = ssl.create_default_context(cadata=ca.data.decode("ascii", "replace") if ca else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        sock = _connect(ep, deadline)
    except (IoTError, ssl.SSLError):
        return  # nothing to add to what awscrt reports
    try:
        with ctx.wrap_socket(sock, server_hostname=ep.host, do_handshake_on_connect=False) as tls:
            tls.settimeout(deadline.remaining(f"checking the server certificate of {ep.authority}"))
            tls.do_handshake()
    except ssl.SSLCertVerificationError as error:
        raise _tls_error(error, ep) from None
    except ssl.SSLError as error:
        if error.reason in _OLD_PROTOCOL:
            raise _tls_error(error, ep) from None
    except OSError:
        pass  # other failures (a refused empty client certificate) say nothing here
    finally:
        sock.close()


class _CrtTransport:
    """HTTPS GET with awscrt (needed for PKCS#11); every wait bounded by us."""

    name = "awscrt"

    def __init__(self, identity: TLSIdentity) -> None:
        self._ctx = _crt_identity_context(identity)
        self._ca = identity._ca
        self._pid = os.getpid()
        # A PKCS#11 login does not survive fork: a child logs in again. (PEM
        # contexts hold no session, so their key bytes are not kept.)
        self._pkcs11_identity = identity if identity.pkcs11 is not None else None

    def _context(self) -> Any:
        if self._pkcs11_identity is not None and os.getpid() != self._pid:
            self._ctx = _crt_identity_context(self._pkcs11_identity)
            self._pid = os.getpid()
        return self._ctx

    def get(self, ep: Endpoint, path: str, headers: Mapping[str, str], timeout: float) -> Response:
        deadline = _Deadline(timeout, f"https://{ep.authority}{path}")
        connection = self._connect(ep, deadline)
        try:
            return self._request(connection, ep, path, headers, deadline)
        finally:
            connection.close()

    def _connect(self, ep: Endpoint, deadline: _Deadline) -> Any:
        crt = _awscrt()
        options = self._context().new_connection_options()
        options.set_server_name(ep.host)
        doing = f"connecting to {ep.authority} (TCP + TLS)"
        socket_options = crt.io.SocketOptions()
        socket_options.connect_timeout_ms = max(1, int(deadline.remaining(doing) * 1000))
        future = crt.http.HttpClientConnection.new(
            host_name=ep.host, port=ep.port, bootstrap=_crt_bootstrap(),
            socket_options=socket_options, tls_connection_options=options,
        )
        try:
            try:
                return future.result(timeout=min(1.0, deadline.remaining(doing) / 4))
            except _FutureTimeout:
                _probe_server(ep, self._ca, deadline)
                return future.result(timeout=deadline.remaining(doing))
        except _FutureTimeout:
            future.add_done_callback(_close_when_connected)
            raise deadline.expired(doing) from None
        except IoTError:
            future.add_done_callback(_close_when_connected)
            raise
        except crt.exceptions.AwsCrtError as error:
            if error.name == "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE":
                _probe_server(ep, self._ca, deadline)  # names an untrusted or too old server
            raise _crt_error(error, ep, after_handshake=False) from None

    def _request(
        self, connection: Any, ep: Endpoint, path: str, headers: Mapping[str, str], deadline: _Deadline
    ) -> Response:
        crt = _awscrt()
        collector = _BodyCollector(connection)
        header_list = [("Host", ep.authority), *headers.items()]
        request = crt.http.HttpRequest("GET", path, crt.http.HttpHeaders(header_list))
        stream = connection.request(request, on_response=collector.on_response, on_body=collector.on_body)
        stream.activate()
        doing = f"waiting for the response from {ep.authority}"
        try:
            stream.completion_future.result(timeout=deadline.remaining(doing))
        except _FutureTimeout:
            raise deadline.expired(doing) from None
        except crt.exceptions.AwsCrtError as error:
            raise collector.failure(error, ep) from None
        if collector.status is None:
            raise IoTResponseError(f"no HTTP status from {ep.authority}")
        return collector.status, bytes(collector.body)


def _close_when_connected(future: Any) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


class _BodyCollector:
    """Collects status and body; closes the connection when the body is too big."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self.status: int | None = None
        self.body = bytearray()
        self.oversized = False

    def on_response(self, status_code: int, **_: Any) -> None:
        self.status = status_code

    def on_body(self, chunk: bytes, **_: Any) -> None:
        if len(self.body) + len(chunk) > MAX_RESPONSE_BYTES:
            self.oversized = True
            self._connection.close()
            return
        self.body.extend(chunk)

    def failure(self, error: Any, ep: Endpoint) -> IoTError:
        if self.oversized:
            return _oversized(ep)
        if self.status is not None:
            return IoTResponseError(f"the response from {ep.authority} ended early ({error.name})")
        return _crt_error(error, ep, after_handshake=True)


# ---------------------------------------------------------------------------
# 5. The credentials provider
# ---------------------------------------------------------------------------


_CREDENTIAL_WORDS = re.compile(r"secretaccesskey|sessiontoken|accesskeyid", re.IGNORECASE)


def _server_message(body: bytes) -> str:
    """The server's error message (JSON ``message`` or the text), shortened."""
    text = body.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):  # only the message: other fields may be credentials
        message = doc.get("message")
        text = message if isinstance(message, str) else "(a JSON body without a message)"
    if _CREDENTIAL_WORDS.search(text):
        return "(a body that holds credential fields, not shown)"
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return (text[:300] + "...") if len(text) > 300 else (text or "(empty body)")


def _parse_credentials(body: bytes, url: str) -> dict[str, Any]:
    """The STS-shaped mapping the engine takes (secrets never in messages)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise IoTResponseError(f"the response from {url} is not JSON") from None
    creds = doc.get("credentials") if isinstance(doc, dict) else None
    if not isinstance(creds, dict):
        raise IoTResponseError(f"the response from {url} has no 'credentials' object")
    fields = ("accessKeyId", "secretAccessKey", "sessionToken", "expiration")
    bad = [f for f in fields if not isinstance(creds.get(f), str) or not creds[f]]
    if bad:
        raise IoTResponseError(f"the response from {url} lacks or mistypes {', '.join(bad)}")
    if not _ACCESS_KEY_RE.fullmatch(creds["accessKeyId"]):
        raise IoTResponseError(f"the response from {url} has a malformed accessKeyId")
    for name in ("secretAccessKey", "sessionToken"):
        if not _is_plain_token(creds[name]):  # e.g. a newline would forge shell or header lines
            raise IoTResponseError(
                f"the response from {url} has a {name} with whitespace or control characters"
            )
    return {
        "AccessKeyId": creds["accessKeyId"],
        "SecretAccessKey": creds["secretAccessKey"],
        "SessionToken": creds["sessionToken"],
        "Expiration": _parse_expiration(creds["expiration"], url),
    }


def _is_plain_token(value: str) -> bool:
    """No whitespace and no control characters (the value is never echoed)."""
    return all(c.isprintable() and not c.isspace() for c in value)


def _parse_expiration(text: str, url: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        moment = moment.astimezone(dt.timezone.utc)
    except (ValueError, OverflowError):
        raise IoTResponseError(f"the response from {url} has a malformed expiration") from None
    if moment <= dt.datetime.now(dt.timezone.utc):
        raise IoTResponseError(f"the response from {url} holds credentials that expired at {text}")
    return moment


class IoTCredentialsProvider:
    """Validated settings plus a transport; calling it fetches credentials once.

    The call returns ``{"AccessKeyId", "SecretAccessKey", "SessionToken",
    "Expiration"}`` (an aware UTC datetime) or raises an :class:`IoTError`.
    """

    def __init__(
        self,
        cert: PemInput | None = None,
        key: PemInput | None = None,
        role_alias: str | None = None,
        *,
        endpoint: str,
        thing_name: str | None = None,
        ca: PemInput | None = None,
        pkcs11: Pkcs11Config | Mapping[str, Any] | None = None,
        timeout: float = 10.0,
        transport: Transport = "auto",
        identity: TLSIdentity | None = None,
    ) -> None:
        self.role_alias = check_role_alias(role_alias)
        self.thing_name = check_thing_name(thing_name)
        self.endpoint = parse_credentials_endpoint(endpoint)
        self.timeout = _check_timeout(timeout)
        tls_identity = _resolve_identity(identity, cert, key, pkcs11, ca)
        self.cert_sha256 = tls_identity.cert_sha256
        self._transport = _make_transport(tls_identity, transport)

    def __repr__(self) -> str:
        thing = f", thing {self.thing_name}" if self.thing_name else ""
        return (
            f"<IoTCredentialsProvider {self.url} (cert sha256 {self.cert_sha256[:16]}..."
            f"{thing}, {self._transport.name})>"
        )

    @property
    def path(self) -> str:
        return f"/role-aliases/{urllib.parse.quote(self.role_alias, safe='')}/credentials"

    @property
    def url(self) -> str:
        return f"https://{self.endpoint.authority}{self.path}"

    @property
    def transport(self) -> str:
        """``"ssl"`` or ``"awscrt"``."""
        return self._transport.name

    def cache_key(self) -> str:
        """Names endpoint, role alias, thing and certificate (never the key)."""
        parts = (self.endpoint.authority, self.role_alias, self.thing_name or "", self.cert_sha256)
        return "iot-x509-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]

    def __call__(self) -> dict[str, Any]:
        headers = {"x-amzn-iot-thingname": self.thing_name} if self.thing_name else {}
        started = time.monotonic()
        logger.debug("fetching IoT credentials: %s", self)
        status, body = self._transport.get(self.endpoint, self.path, headers, self.timeout)
        if status != 200:
            raise IoTHTTPError(status, _server_message(body), self.url)
        credentials = _parse_credentials(body, self.url)
        logger.debug(
            "IoT credentials for role alias %s expire %s (%.3f s)",
            self.role_alias, credentials["Expiration"].isoformat(), time.monotonic() - started,
        )
        return credentials


def _make_transport(identity: TLSIdentity, transport: Transport) -> _SslTransport | _CrtTransport:
    """PKCS#11 needs awscrt; a PEM key prefers ssl where ssl can load it."""
    if transport not in ("auto", "ssl", "awscrt"):
        raise IoTConfigError(f"transport must be 'auto', 'ssl' or 'awscrt', not {transport!r}")
    if identity.pkcs11 is not None and transport == "ssl":
        raise IoTConfigError("PKCS#11 keys need transport='awscrt' (or 'auto')")
    if transport == "awscrt" or not identity._ssl_can_load_key:
        if transport == "ssl":
            raise IoTConfigError("transport='ssl' needs key and cert as files on this platform")
        return _CrtTransport(identity)
    return _SslTransport(identity)


# ---------------------------------------------------------------------------
# 6. Public API: iot_session
# ---------------------------------------------------------------------------


def _check_session_options(options: Any, cache_key: Any) -> None:
    """The session-level arguments, with assume_role_chain's checks, as one IoTConfigError."""
    import assume_role_chain

    problems = assume_role_chain._Problems()
    if isinstance(options.region_name, bool):
        problems.add("region_name", "must be a region name string or None")
    options.check(problems)
    if cache_key is not None and (not isinstance(cache_key, str) or not cache_key):
        problems.add("cache_key", "must be a non-empty string")
    if problems.items:
        raise IoTConfigError("; ".join(item.removeprefix("Invalid ") for item in problems.items))


def iot_session(
    cert: PemInput | None = None,
    key: PemInput | None = None,
    role_alias: str | None = None,
    *,
    endpoint: str,
    transport: Transport = "auto",
    timeout: float = 10.0,
    thing_name: str | None = None,
    region_name: str | None = None,
    ca: PemInput | None = None,
    pkcs11: Pkcs11Config | Mapping[str, Any] | None = None,
    identity: TLSIdentity | None = None,
    cache: MutableMapping[str, Any] | None = None,
    cache_key: str | None = None,
    eager: bool = False,
    clock: Callable[[], dt.datetime] | None = None,
) -> boto3.Session:
    """A boto3 Session with refreshing credentials from the IoT credentials provider.

    ``cert``, ``key`` and ``ca`` are paths or PEM content; for a key in a
    PKCS#11 token pass ``key=None`` and ``pkcs11=``. Or pass them loaded
    once as ``identity=`` (a :class:`TLSIdentity`). ``role_alias`` is
    required. ``endpoint`` is the credentials-provider endpoint (``aws iot
    describe-endpoint --endpoint-type iot:CredentialProvider``); its region is
    used unless ``region_name`` is given. Each fetch is bounded by
    ``timeout`` seconds. ``cache`` (e.g. ``assume_role_chain.JSONFileCache()``)
    shares credentials between processes. Errors are :class:`IoTError`
    subclasses.
    """
    import assume_role_chain

    options = assume_role_chain._SessionOptions(region_name=region_name, cache=cache, clock=clock, eager=bool(eager))
    _check_session_options(options, cache_key)
    provider = IoTCredentialsProvider(
        cert, key, role_alias, endpoint=endpoint, thing_name=thing_name, ca=ca,
        pkcs11=pkcs11, timeout=timeout, transport=transport, identity=identity,
    )
    source = assume_role_chain._FunctionSource(
        provider, (cache_key or provider.cache_key()) if cache is not None else None, f"iot:{provider.role_alias}"
    )
    options = options._replace(region_name=region_name or provider.endpoint.region)
    return assume_role_chain._build_session(source, options, None)


# ---------------------------------------------------------------------------
# 7. MQTT
# ---------------------------------------------------------------------------


def _check_client_id(client_id: Any) -> str:
    if not isinstance(client_id, str) or not 1 <= len(client_id.encode()) <= 128:
        raise IoTConfigError("client_id must be a string of 1-128 bytes")
    return client_id


def mqtt_connection(
    endpoint: str,
    client_id: str,
    cert: PemInput | None = None,
    key: PemInput | None = None,
    *,
    pkcs11: Pkcs11Config | Mapping[str, Any] | None = None,
    ca: PemInput | None = None,
    port: int = 8883,
    alpn: bool | None = None,
    identity: TLSIdentity | None = None,
    **connection_options: Any,
) -> Any:
    """An :class:`awscrt.mqtt.Connection` (MQTT 3.1.1) over mutual TLS, not yet connected.

    ``endpoint`` is the data endpoint (``aws iot describe-endpoint
    --endpoint-type iot:Data-ATS``). ``cert``, ``key``/``pkcs11`` and ``ca``
    are as for :func:`iot_session`, or ``identity=`` (a :class:`TLSIdentity`)
    instead. On port 443 ALPN ``x-amzn-mqtt-ca`` is used unless
    ``alpn=False``. ``connection_options`` go to :class:`awscrt.mqtt.Connection`
    (``clean_session``, ``keep_alive_secs``...).
    Call ``.connect().result(timeout)`` on the result.
    """
    ep = parse_data_endpoint(endpoint, port, 8883)
    _check_client_id(client_id)
    tls_identity = _resolve_identity(identity, cert, key, pkcs11, ca)
    use_alpn = alpn or (alpn is None and ep.port == 443)
    tls = _crt_identity_context(tls_identity, MQTT_ALPN if use_alpn else None)
    crt = _awscrt()
    client = crt.mqtt.Client(_crt_bootstrap(), tls)
    return crt.mqtt.Connection(client, ep.host, ep.port, client_id, **connection_options)


def mqtt_websocket_connection(
    endpoint: str,
    client_id: str,
    session: boto3.Session,
    *,
    region_name: str | None = None,
    ca: PemInput | None = None,
    port: int = 443,
    **connection_options: Any,
) -> Any:
    """An MQTT-over-WebSocket connection signed (SigV4) with ``session``'s credentials.

    Every (re)connect signs with the session's current credentials, so an
    :func:`iot_session` keeps it authorised. The region comes from the
    endpoint, ``region_name`` or the session.
    """
    ep = parse_data_endpoint(endpoint, port, 443)
    _check_client_id(client_id)
    region = region_name or ep.region or session.region_name
    if not region:
        raise IoTConfigError("region_name is required (not found in endpoint or session)")
    crt = _awscrt()
    options = crt.io.TlsContextOptions()
    ca_pem = _load_ca(ca)
    if ca_pem is not None:
        options.override_default_trust_store(ca_pem.data)
    client = crt.mqtt.Client(_crt_bootstrap(), _crt_tls_context(options, "ca"))
    return crt.mqtt.Connection(
        client, ep.host, ep.port, client_id, use_websockets=True,
        websocket_handshake_transform=websocket_signer(session, region), **connection_options,
    )


def websocket_signer(session: boto3.Session, region: str) -> Callable[[Any], None]:
    """A ``websocket_handshake_transform`` presigning with SigV4 (iotdevicegateway).

    Signing runs in its own thread: getting credentials may fetch them, and
    that must not block (or, with awscrt, deadlock) the event loop.
    """

    def transform(transform_args: Any, **_: Any) -> None:  # awscrt passes it by keyword
        threading.Thread(target=_sign_handshake, args=(session, region, transform_args), daemon=True).start()

    return transform


def _sign_handshake(session: boto3.Session, region: str, args: Any) -> None:
    crt = _awscrt()
    try:
        credentials = session.get_credentials()
        if credentials is None:
            raise IoTConfigError("the session has no credentials")
        frozen = credentials.get_frozen_credentials()  # one generation
        provider = crt.auth.AwsCredentialsProvider.new_static(frozen.access_key, frozen.secret_key, None)
        config = crt.auth.AwsSigningConfig(
            algorithm=crt.auth.AwsSigningAlgorithm.V4,
            signature_type=crt.auth.AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
            credentials_provider=provider, region=region, service="iotdevicegateway",
            should_sign_header=_only_host, signed_body_value=crt.auth.AwsSignedBodyValue.EMPTY_SHA256,
        )
        signed = crt.auth.aws_sign_request(args.http_request, config)
        signed.add_done_callback(lambda future: _finish_signing(future, args, frozen.token))
    except Exception as error:  # reported to awscrt as a failed handshake
        logger.warning("signing the MQTT WebSocket handshake failed: %s: %s", type(error).__name__, error)
        args.set_done(error)


def _only_host(name: str) -> bool:
    return name.lower() == "host"  # proxies may rewrite the WebSocket headers


def _finish_signing(future: Any, args: Any, token: str | None) -> None:
    error = future.exception()
    if error is None and token:
        args.http_request.path += "&X-Amz-Security-Token=" + urllib.parse.quote(token, safe="")
    args.set_done(error)


# ---------------------------------------------------------------------------
# 8. Command line (credential_process)
# ---------------------------------------------------------------------------

PIN_ENV = "IOT_X509_PKCS11_PIN"
EXIT_FAILED = 1
EXIT_CLOSED_STDOUT = 141  # 128 + SIGPIPE, as a shell reports for `cat` in `cat | head -c1`

# Library parameters as the command line spells them (messages name the flags).
_CLI_FLAGS = {
    "cert": "--cert", "key": "--key", "ca": "--ca", "role_alias": "--role-alias",
    "endpoint": "--endpoint", "thing_name": "--thing-name", "timeout": "--timeout",
    "pkcs11": "PKCS#11", "pkcs11_lib": "--pkcs11-lib", "slot_id": "--slot-id",
    "token_label": "--token-label", "private_key_label": "--private-key-label",
    "user_pin": f"${PIN_ENV}",
}
_NAMES = "|".join(sorted(_CLI_FLAGS, key=len, reverse=True))
_PARAMETER_RE = re.compile(
    r"^(?P<library>pkcs11)(?=: (?:the )?library)"  # pkcs11: library not found: ...
    rf"|^pkcs11: '(?P<inner>{_NAMES})'"  # pkcs11: 'slot_id' must be ...
    rf"|^(?P<first>{_NAMES})\b"  # ca: cannot read ..., key holds no ...
    rf"|'(?P<quoted>{_NAMES})'"
    rf"|(?<![-\w])(?P<keyword>{_NAMES})="  # pass ca= with the CA ...
    rf"|(?<![-\w])(?P<compound>{'|'.join(name for name in _CLI_FLAGS if '_' in name)})\b"
)


def _with_flag_names(message: str) -> str:
    """A library message as the command line says it: ``--ca``, not ``ca=``."""

    def flag(match: re.Match[str]) -> str:
        return "--pkcs11-lib" if match["library"] else _CLI_FLAGS[next(name for name in match.groups() if name)]

    return _PARAMETER_RE.sub(flag, message)


class _ArgumentParser(argparse.ArgumentParser):
    """Bad arguments become one IoTConfigError line, like every other error, values redacted."""

    argv: Sequence[str] = ()  # what was typed, for the redaction: set by _parse_command_line

    def error(self, message: str) -> Any:
        from assume_role_chain import _redact_values

        raise IoTConfigError(f"bad arguments: {_redact_values(message, self.argv)}")


def _argument_parser() -> _ArgumentParser:
    parser = _ArgumentParser(
        prog="python -m iot_x509",
        description="Print AWS credential_process JSON obtained with an AWS IoT certificate.",
        epilog=f"The PKCS#11 PIN is read from ${PIN_ENV}, never from the command line.",
    )
    parser.add_argument("--cert", required=True, help="device certificate (PEM file)")
    parser.add_argument("--key", help="private key (PEM file); or use --pkcs11-lib")
    parser.add_argument("--role-alias", required=True)
    parser.add_argument("--endpoint", required=True, help="credentials-provider endpoint host[:port]")
    parser.add_argument("--thing-name")
    parser.add_argument("--ca", help="CA bundle for the endpoint (PEM file)")
    parser.add_argument("--timeout", type=_seconds, default=10.0)
    parser.add_argument("--pkcs11-lib", help="PKCS#11 library (.so) holding the key")
    parser.add_argument("--token-label")
    parser.add_argument("--slot-id", type=_slot_number)
    parser.add_argument("--private-key-label")
    return parser


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None


def _slot_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number") from None


def _parse_command_line(argv: Sequence[str] | None, parser: _ArgumentParser | None = None) -> argparse.Namespace:
    parser = parser or _argument_parser()
    parser.argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(parser.argv)
    if (args.key is None) == (args.pkcs11_lib is None):
        parser.error("give exactly one of --key and --pkcs11-lib")
    return args


def _pkcs11_from_args(args: argparse.Namespace) -> Pkcs11Config | None:
    if not args.pkcs11_lib:
        return None
    return Pkcs11Config(
        pkcs11_lib=args.pkcs11_lib, user_pin=os.environ.get(PIN_ENV),
        slot_id=args.slot_id, token_label=args.token_label,
        private_key_label=args.private_key_label,
    )


def credential_process_json(credentials: Mapping[str, Any]) -> str:
    """The ``credential_process`` output (Version 1) for fetched credentials."""
    expiry: dt.datetime = credentials["Expiration"]
    return json.dumps({
        "Version": 1,
        "AccessKeyId": credentials["AccessKeyId"],
        "SecretAccessKey": credentials["SecretAccessKey"],
        "SessionToken": credentials["SessionToken"],
        "Expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
    })


def _serve_argument_parser() -> _ArgumentParser:
    import assume_role_chain as arc

    parser = _argument_parser()
    parser.prog += " serve"
    parser.description = "Serve the device's AWS credentials on a local container-credentials endpoint (127.0.0.1)."
    arc._add_endpoint_arguments(parser)
    return parser


def _serve(argv: Sequence[str]) -> int:
    """``python -m iot_x509 serve ...``: :func:`assume_role_chain.serve_credentials` for the device."""
    import botocore.exceptions

    import assume_role_chain as arc

    try:
        options, command = arc._split_exec(argv)
        args = _parse_command_line(options, _serve_argument_parser())
        session = iot_session(
            args.cert, args.key, args.role_alias, endpoint=args.endpoint,
            thing_name=args.thing_name, ca=args.ca, pkcs11=_pkcs11_from_args(args),
            timeout=args.timeout,
        )
        return arc._serve_session(session, args.port, args.token_file, command)
    except arc._UsageError as error:
        message = f"bad arguments: {error}"
    except botocore.exceptions.ParamValidationError as error:
        message = f"bad arguments: {error.kwargs.get('report', error)}"
    except IoTError as error:
        message = _with_flag_names(str(error))
        print(f"iot_x509: {type(error).__name__}: {arc._one_line(message)}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        arc._silence_closed_stdout()
        return EXIT_CLOSED_STDOUT
    print(f"iot_x509: IoTConfigError: {arc._one_line(message)}", file=sys.stderr)
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m iot_x509``: print credential_process JSON.

    ``serve ...`` (the same options, and ``--port``, ``--token-file``,
    ``--exec -- COMMAND``) serves the credentials on a local
    container-credentials endpoint instead, as ``assume-role-chain serve``.

    Exit codes: 0 success, 1 any error (one line on stderr), 141 standard
    output closed early; with ``serve --exec``, the command's exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return _serve(argv[1:])
    try:
        args = _parse_command_line(argv)
        provider = IoTCredentialsProvider(
            args.cert, args.key, args.role_alias, endpoint=args.endpoint,
            thing_name=args.thing_name, ca=args.ca, pkcs11=_pkcs11_from_args(args),
            timeout=args.timeout,
        )
        sys.stdout.write(credential_process_json(provider()) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        from assume_role_chain import _silence_closed_stdout

        _silence_closed_stdout()
        return EXIT_CLOSED_STDOUT
    except IoTError as error:
        from assume_role_chain import _one_line

        print(f"iot_x509: {type(error).__name__}: {_one_line(_with_flag_names(str(error)))}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
