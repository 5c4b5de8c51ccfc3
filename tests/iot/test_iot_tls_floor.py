"""TLS 1.2 or newer on every transport: a real TLS 1.0-only server is refused.

The server answers a credentials request with credentials and an MQTT CONNECT
with CONNACK, so a client that accepted TLS 1.0 would succeed; each test also
checks that the server completed no handshake with us.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import iot_x509

from .conftest import SoftHSM
from .iot_standin import IoTWorld, Tls10Server, WebSocketMqttStandIn, negotiated_version, tls10_server_context

WAIT = 5.0


@pytest.fixture
def tls10(iot_world: IoTWorld) -> Iterator[Tls10Server]:
    server = Tls10Server(iot_world.pki).start()
    try:
        # The server really speaks TLS 1.0 to a client that allows it (both sides agree).
        assert negotiated_version(server.port, iot_world.pki) == "TLSv1"
        deadline = time.monotonic() + WAIT
        while not server.handshakes and time.monotonic() < deadline:
            time.sleep(0.01)  # the server thread records it after the client returns
        assert server.handshakes == ["TLSv1"]
        server.reset()
        yield server
    finally:
        server.stop()


def refused(call: object, error: type[BaseException], match: str | None = None) -> None:
    started = time.monotonic()
    with pytest.raises(error, match=match):
        call()  # type: ignore[operator]
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("transport", ["ssl", "awscrt"])
def test_pem_key_refuses_a_tls10_credentials_endpoint(iot: IoTWorld, tls10: Tls10Server, transport: str) -> None:
    provider = iot.provider("ec", endpoint=f"localhost:{tls10.port}", transport=transport, timeout=3.0)
    refused(provider, iot_x509.IoTTLSError, r"localhost:\d+ does not offer TLS 1\.2 or newer")
    assert tls10.handshakes == [] and tls10.answered == []


def test_pkcs11_key_refuses_a_tls10_credentials_endpoint(iot: IoTWorld, softhsm: SoftHSM, tls10: Tls10Server) -> None:
    provider = iot.provider("ec", key=None, pkcs11=softhsm.pkcs11("ec"), endpoint=f"localhost:{tls10.port}", timeout=3.0)
    assert provider.transport == "awscrt"
    refused(provider, iot_x509.IoTTLSError, r"does not offer TLS 1\.2 or newer")
    assert tls10.handshakes == [] and tls10.answered == []


def test_the_session_refuses_it_too(iot: IoTWorld, tls10: Tls10Server) -> None:
    session = iot.session("ec", endpoint=f"localhost:{tls10.port}", transport="awscrt", timeout=3.0)
    with pytest.raises(iot_x509.IoTTLSError):
        session.get_credentials().get_frozen_credentials()
    assert tls10.answered == []


@pytest.mark.parametrize("key", ["pem", "pkcs11"])
def test_mqtt_refuses_a_tls10_broker(iot_world: IoTWorld, softhsm: SoftHSM, tls10: Tls10Server, key: str) -> None:
    device = iot_world.devices["ec"]
    credentials = {"key": device.key_pem} if key == "pem" else {"pkcs11": softhsm.pkcs11("ec")}
    connection = iot_x509.mqtt_connection(
        "localhost", f"old-tls-{key}", device.cert_pem, ca=iot_world.pki.server_ca_pem, port=tls10.port, **credentials,
    )
    with pytest.raises(Exception) as info:  # awscrt raises AwsCrtError
        connection.connect().result(WAIT)
    assert type(info.value).__name__ == "AwsCrtError", info.value
    assert (tls10.handshakes, tls10.answered) == ([], []), info.value


def test_mqtt_over_websocket_refuses_a_tls10_endpoint(iot: IoTWorld) -> None:
    server = WebSocketMqttStandIn(iot.pki)
    server.ctx = tls10_server_context(iot.pki)
    server.start()
    try:
        assert negotiated_version(server.port, iot.pki) == "TLSv1"
        connection = iot_x509.mqtt_websocket_connection(
            "localhost", "old-tls-ws", iot.session("ec"), region_name="us-east-1",
            ca=iot.pki.server_ca_pem, port=server.port,
        )
        with pytest.raises(Exception) as info:
            connection.connect().result(WAIT)
        assert type(info.value).__name__ == "AwsCrtError"
        assert server.requests == [] and server.connects == []
    finally:
        server.stop()
