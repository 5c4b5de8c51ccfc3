"""Test helpers: a local AWS IoT credentials-provider stand-in and a test PKI.

The stand-in speaks the credentials-provider protocol over mutual TLS
(standard library ``ssl`` + ``http.server``) on 127.0.0.1. It checks the client
certificate against the registered things, serves credentials obtained from
moto's AssumeRole (so that STS calls made with them work), and can be told to
misbehave: HTTP errors, garbage, oversized bodies, stalls, an untrusted server
certificate.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.servers import AcceptLoop, read_request_head

# --------------------------------------------------------------------------
# PKI
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """A device certificate with its key (PEM, PKCS#8, unencrypted)."""

    name: str
    cert_pem: bytes
    key_pem: bytes
    key_type: str  # "rsa" or "ec"

    @property
    def fingerprint(self) -> str:
        der = ssl.PEM_cert_to_DER_cert(self.cert_pem.decode())
        return hashlib.sha256(der).hexdigest()


def _pkcs8(key_pem: bytes) -> bytes:
    key = load_pem_private_key(key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def issue_device(ca: trustme.CA, name: str, key_type: str) -> Device:
    """Issue a client certificate for ``name`` signed by ``ca``."""
    kt = trustme.KeyType.RSA if key_type == "rsa" else trustme.KeyType.ECDSA
    leaf = ca.issue_cert(f"{name}.devices.test", common_name=name, key_type=kt)
    return Device(
        name=name,
        cert_pem=leaf.cert_chain_pems[0].bytes(),
        key_pem=_pkcs8(leaf.private_key_pem.bytes()),
        key_type=key_type,
    )


@dataclass
class TestPKI:
    """Server CA (what clients trust), device CA (what servers trust), rogue CA."""

    server_ca: trustme.CA = field(default_factory=trustme.CA)
    device_ca: trustme.CA = field(default_factory=trustme.CA)
    rogue_ca: trustme.CA = field(default_factory=trustme.CA)

    def server_context(self, rogue: bool = False) -> ssl.SSLContext:
        """A server context requiring client certificates from the device CA."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca = self.rogue_ca if rogue else self.server_ca
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
        self.device_ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    @property
    def server_ca_pem(self) -> bytes:
        return self.server_ca.cert_pem.bytes()

    @property
    def device_ca_pem(self) -> bytes:
        return self.device_ca.cert_pem.bytes()


# --------------------------------------------------------------------------
# Credentials-provider stand-in
# --------------------------------------------------------------------------

_PATH = re.compile(r"^/role-aliases/([^/]+)/credentials$")


@dataclass
class Behaviour:
    """What the stand-in does with the next requests (tests mutate it)."""

    mode: str = "ok"  # ok | status | garbage | oversized | stall | truncated
    status: int = 403
    message: str = "Access denied"
    lifetime: int = 3600
    delay: float = 0.0  # seconds before answering (widens race windows)
    replace: dict[str, str] = field(default_factory=dict)  # hostile values for answer fields


class StandIn(ThreadingHTTPServer):
    """A mutual-TLS IoT credentials-provider stand-in on 127.0.0.1."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self, pki: TestPKI, assume_role: Callable[[int, str], dict[str, str]]
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pki = pki
        self.assume_role = assume_role
        self.behaviour = Behaviour()
        self.role_aliases: set[str] = set()
        self.things: dict[str, str] = {}  # thing name -> cert fingerprint
        self.fetches = 0  # successful credential answers
        self.requests: list[dict[str, Any]] = []
        self.handshake_errors: list[str] = []
        self.release = threading.Event()  # ends stalls
        self._lock = threading.Lock()
        self._ctx = pki.server_context()
        self._rogue_ctx = pki.server_context(rogue=True)
        self.untrusted = False

    # -- lifecycle ---------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"localhost:{self.port}"

    def start(self) -> StandIn:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()

    def reset(self) -> None:
        with self._lock:
            self.behaviour = Behaviour()
            self.fetches = 0
            self.requests.clear()
            self.handshake_errors.clear()
            self.untrusted = False
            self.release.set()  # end the stalls of the previous test
            self.release = threading.Event()

    def register(self, thing: str, device: Device) -> None:
        self.things[thing] = device.fingerprint

    # -- TLS in the worker thread -------------------------------------------
    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        ctx = self._rogue_ctx if self.untrusted else self._ctx
        request.settimeout(10)
        try:
            tls = ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            with self._lock:
                self.handshake_errors.append(type(exc).__name__ + ": " + str(exc))
            return
        try:
            _Handler(tls, client_address, self)
        except (ssl.SSLError, OSError) as exc:  # client went away mid-request
            with self._lock:
                self.handshake_errors.append(type(exc).__name__ + ": " + str(exc))
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def wait_for_handshake_error(self, seconds: float = 2.0) -> str:
        """The first failed handshake (the server thread may record it late)."""
        deadline = time.monotonic() + seconds
        while not self.handshake_errors and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.handshake_errors[0] if self.handshake_errors else ""

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)

    def count_fetch(self) -> None:
        with self._lock:
            self.fetches += 1


class _Handler(BaseHTTPRequestHandler):
    server: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        b = srv.behaviour
        thing = self.headers.get("x-amzn-iot-thingname")
        srv.record({"path": self.path, "thing": thing, "host": self.headers.get("host")})
        if b.delay:
            time.sleep(b.delay)
        if b.mode == "stall":
            srv.release.wait(30)
            return
        if b.mode == "status":
            return self._send(b.status, json.dumps({"message": b.message}).encode())
        if b.mode == "garbage":
            return self._send(200, b"<html>this is not json</html>")
        if b.mode == "oversized":
            return self._send(200, b'{"credentials": "' + b"A" * 2_000_000 + b'"}')
        if b.mode == "truncated":
            return self._send(200, b'{"credentials": {"accessKeyId": "AS', length=500)
        self._serve_credentials(thing, b.lifetime)

    def _serve_credentials(self, thing: str | None, lifetime: int) -> None:
        srv = self.server
        m = _PATH.match(self.path)
        if not m or m.group(1) not in srv.role_aliases:
            msg = {"message": "Role alias does not exist"}
            return self._send(404, json.dumps(msg).encode())
        der = self.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        fp = hashlib.sha256(der).hexdigest()
        if fp not in srv.things.values():
            return self._send(403, b'{"message":"Certificate is not registered"}')
        if thing is not None and srv.things.get(thing) != fp:
            return self._send(403, b'{"message":"Invalid thing name"}')
        creds = srv.assume_role(lifetime, thing or "device")
        expires = datetime.now(timezone.utc) + timedelta(seconds=lifetime)
        body = {
            "credentials": {
                "accessKeyId": creds["AccessKeyId"],
                "secretAccessKey": creds["SecretAccessKey"],
                "sessionToken": creds["SessionToken"],
                "expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                **srv.behaviour.replace,
            }
        }
        srv.count_fetch()
        self._send(200, json.dumps(body).encode())

    def _send(self, status: int, body: bytes, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length if length else len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True


# --------------------------------------------------------------------------
# What the IoT tests get from the ``iot`` fixture
# --------------------------------------------------------------------------

ROLE_ALIAS = "device-role"
REGION = "us-east-1"


@dataclass
class IoTWorld:
    """The stand-in, the PKI, devices and their PEM files, for one test."""

    server: StandIn
    pki: TestPKI
    devices: dict[str, Device]  # "rsa", "ec" (registered), "rogue" (other CA)
    files: dict[str, str]  # "<device>.cert", "<device>.key", "ca"
    role_alias: str = ROLE_ALIAS

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def thing(self, device: str) -> str:
        return f"thing-{device}"

    def session(self, device: str = "ec", **kwargs: Any) -> Any:
        """``iot_session`` for a device with PEM content and the test CA."""
        import iot_x509

        d = self.devices[device]
        kwargs.setdefault("thing_name", self.thing(device))
        kwargs.setdefault("ca", self.pki.server_ca_pem)
        kwargs.setdefault("region_name", REGION)
        kwargs.setdefault("timeout", 5.0)
        key = kwargs.pop("key", d.key_pem)
        return iot_x509.iot_session(
            kwargs.pop("cert", d.cert_pem), key, kwargs.pop("role_alias", self.role_alias),
            endpoint=kwargs.pop("endpoint", self.endpoint), **kwargs,
        )

    def provider(self, device: str = "ec", **kwargs: Any) -> Any:
        """An ``IoTCredentialsProvider`` (one fetch per call) for a device."""
        import iot_x509

        d = self.devices[device]
        kwargs.setdefault("thing_name", self.thing(device))
        kwargs.setdefault("ca", self.pki.server_ca_pem)
        kwargs.setdefault("timeout", 5.0)
        return iot_x509.IoTCredentialsProvider(
            kwargs.pop("cert", d.cert_pem), kwargs.pop("key", d.key_pem),
            kwargs.pop("role_alias", self.role_alias),
            endpoint=kwargs.pop("endpoint", self.endpoint), **kwargs,
        )


# --------------------------------------------------------------------------
# MQTT over WebSocket stand-in (mosquitto from Debian has no WebSocket support)
# --------------------------------------------------------------------------

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocketMqttStandIn(AcceptLoop):
    """TLS WebSocket endpoint that records the upgrade request and answers CONNECT.

    It reads the client's first frame (MQTT CONNECT) and answers CONNACK
    (accepted), enough for ``awscrt`` to report a successful connection.
    """

    def __init__(self, pki: TestPKI) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pki.server_ca.issue_cert("localhost", "127.0.0.1").configure_cert(self.ctx)
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers)
        self.connects: list[bytes] = []
        super().__init__()

    def _handle(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as tls:
                key = self._upgrade(tls)
                accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
                tls.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            b"Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
                self.connects.append(_read_frame(tls))
                tls.sendall(b"\x82\x04\x20\x02\x00\x00")  # binary frame: CONNACK, accepted
                while tls.recv(4096):
                    pass
        except (OSError, ValueError):
            pass  # the client went away

    def _upgrade(self, tls: ssl.SSLSocket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(4096)
            if not chunk:
                raise ValueError("closed during the upgrade")
            data += chunk
        head = data.split(b"\r\n\r\n")[0].decode()
        request_line, *lines = head.split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        self.requests.append((request_line.split()[1], headers))
        return headers["sec-websocket-key"].encode()


def _read_exact(tls: ssl.SSLSocket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = tls.recv(size - len(data))
        if not chunk:
            raise ValueError("closed mid-frame")
        data += chunk
    return data


def _read_frame(tls: ssl.SSLSocket) -> bytes:
    """One client WebSocket frame's payload (clients always mask)."""
    _, second = _read_exact(tls, 2)
    size = second & 0x7F
    if size == 126:
        size = int.from_bytes(_read_exact(tls, 2), "big")
    elif size == 127:
        size = int.from_bytes(_read_exact(tls, 8), "big")
    mask = _read_exact(tls, 4)
    return bytes(b ^ mask[i % 4] for i, b in enumerate(_read_exact(tls, size)))


# --------------------------------------------------------------------------
# A TLS 1.0-only server (what every transport must refuse)
# --------------------------------------------------------------------------


def _allow_tls10(ctx: ssl.SSLContext) -> None:
    """OpenSSL 3 refuses TLS 1.0 at the default security level, even as a server."""
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl.TLSVersion.TLSv1 is deprecated
        ctx.minimum_version = ssl.TLSVersion.TLSv1


def tls10_server_context(pki: TestPKI) -> ssl.SSLContext:
    """A server context that speaks TLS 1.0 and nothing newer (no client certificate asked)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki.server_ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    _allow_tls10(ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.maximum_version = ssl.TLSVersion.TLSv1
    return ctx


def negotiated_version(port: int, pki: TestPKI) -> str | None:
    """The TLS version a client that still allows TLS 1.0 gets from 127.0.0.1:port."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=pki.server_ca_pem.decode())
    _allow_tls10(ctx)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
            ctx.wrap_socket(sock, server_hostname="localhost") as tls:
        return tls.version()


class Tls10Server(AcceptLoop):
    """Speaks only TLS 1.0; answers a credentials GET with (fake) credentials and
    an MQTT CONNECT with CONNACK, so that a client accepting TLS 1.0 would succeed."""

    def __init__(self, pki: TestPKI) -> None:
        self.ctx = tls10_server_context(pki)
        self.handshakes: list[str] = []  # versions of the handshakes that completed
        self.answered: list[str] = []  # "http" or "mqtt"
        super().__init__()

    def reset(self) -> None:
        self.handshakes.clear()
        self.answered.clear()

    def _handle(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as tls:
                self.handshakes.append(str(tls.version()))
                first = tls.recv(1)
                if first == b"G":
                    self._answer_http(tls, first)
                elif first and first[0] >> 4 == 1:  # MQTT CONNECT
                    self._answer_mqtt(tls)
        except (OSError, ValueError):
            pass  # the client refused the handshake or went away

    def _answer_http(self, tls: ssl.SSLSocket, first: bytes) -> None:
        if read_request_head(tls, first) is None:
            return
        expires = datetime.now(timezone.utc) + timedelta(hours=1)
        body = json.dumps({"credentials": {
            "accessKeyId": "ASIAOLDTLSSERVER0000", "secretAccessKey": "old-tls-secret",
            "sessionToken": "old-tls-token", "expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }}).encode()
        self.answered.append("http")
        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    def _answer_mqtt(self, tls: ssl.SSLSocket) -> None:
        size, shift = 0, 0
        while True:  # the remaining length, then the rest of CONNECT
            byte = _read_exact(tls, 1)[0]
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        _read_exact(tls, size)
        self.answered.append("mqtt")
        tls.sendall(b"\x20\x02\x00\x00")  # CONNACK, accepted
        while tls.recv(4096):
            pass
