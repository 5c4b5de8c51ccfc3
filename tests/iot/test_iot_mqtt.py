"""MQTT over mutual TLS against a real mosquitto: PEM and PKCS#11 keys."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
import time_machine
from awscrt import mqtt

import iot_x509

from .conftest import Broker, SoftHSM
from .iot_standin import IoTWorld, WebSocketMqttStandIn

WAIT = 5.0


def round_trip(connection: Any) -> bytes:
    """Connect, subscribe, publish, receive the message, disconnect."""
    topic = f"devices/{uuid.uuid4().hex}/telemetry"
    received: list[bytes] = []
    arrived = threading.Event()

    def on_message(topic: str, payload: bytes, **_: Any) -> None:
        received.append(payload)
        arrived.set()

    connection.connect().result(WAIT)
    try:
        subscribed, _ = connection.subscribe(topic, mqtt.QoS.AT_LEAST_ONCE, on_message)
        assert subscribed.result(WAIT)["qos"] == mqtt.QoS.AT_LEAST_ONCE
        published, _ = connection.publish(topic, b'{"temperature": 21.5}', mqtt.QoS.AT_LEAST_ONCE)
        published.result(WAIT)
        assert arrived.wait(WAIT), "the published message did not come back"
    finally:
        connection.disconnect().result(WAIT)
    return received[0]


@pytest.mark.parametrize("device", ["rsa", "ec"])
def test_mqtt_with_pem_key(iot_world: IoTWorld, mosquitto: Broker, device: str) -> None:
    connection = iot_x509.mqtt_connection(
        mosquitto.host, f"client-{device}", iot_world.files[f"{device}.cert"], iot_world.devices[device].key_pem,
        ca=iot_world.pki.server_ca_pem, port=mosquitto.port,
    )
    assert isinstance(connection, mqtt.Connection)
    assert round_trip(connection) == b'{"temperature": 21.5}'
    assert f" as client-{device} " in mosquitto.log_text()


@pytest.mark.parametrize("device", ["rsa", "ec"])
def test_mqtt_with_pkcs11_key(iot_world: IoTWorld, mosquitto: Broker, softhsm: SoftHSM, device: str) -> None:
    connection = iot_x509.mqtt_connection(
        mosquitto.host, f"hsm-{device}", iot_world.devices[device].cert_pem, pkcs11=softhsm.pkcs11(device),
        ca=iot_world.files["ca"], port=mosquitto.port, keep_alive_secs=30,
    )
    assert round_trip(connection) == b'{"temperature": 21.5}'
    assert f" as hsm-{device} " in mosquitto.log_text()


def test_a_certificate_from_another_ca_is_refused(iot_world: IoTWorld, mosquitto: Broker) -> None:
    connection = iot_x509.mqtt_connection(
        mosquitto.host, "rogue", iot_world.devices["rogue"].cert_pem, iot_world.devices["rogue"].key_pem,
        ca=iot_world.pki.server_ca_pem, port=mosquitto.port,
    )
    started = time.monotonic()
    with pytest.raises(Exception) as info:  # awscrt raises AwsCrtError
        connection.connect().result(WAIT)
    assert type(info.value).__name__ == "AwsCrtError"
    assert time.monotonic() - started < WAIT
    assert " as rogue " not in mosquitto.log_text()


def test_alpn_is_offered_on_port_443_or_on_request(iot_world: IoTWorld, mosquitto: Broker) -> None:
    # mosquitto ignores ALPN, so the connection must still work with it offered.
    connection = iot_x509.mqtt_connection(
        mosquitto.host, "alpn-client", iot_world.devices["ec"].cert_pem, iot_world.devices["ec"].key_pem,
        ca=iot_world.pki.server_ca_pem, port=mosquitto.port, alpn=True,
    )
    assert round_trip(connection) == b'{"temperature": 21.5}'


@pytest.mark.parametrize(
    ("endpoint", "kwargs", "match"),
    [
        ("abc.credentials.iot.us-east-1.amazonaws.com", {}, "credentials-provider endpoint; MQTT needs the data"),
        ("localhost", {"client_id": ""}, "client_id must be"),
        ("localhost", {"key": None}, "exactly one of key"),
    ],
)
def test_mqtt_arguments_are_validated(iot_world: IoTWorld, endpoint: str, kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"client_id": "c", "key": iot_world.devices["ec"].key_pem, **kwargs}
    with pytest.raises(iot_x509.IoTConfigError, match=match):
        iot_x509.mqtt_connection(endpoint, args.pop("client_id"), iot_world.devices["ec"].cert_pem, **args)


# --------------------------------------------------------------------------
# MQTT over WebSocket, presigned with an iot_session's refreshing credentials
# --------------------------------------------------------------------------


@pytest.fixture
def ws_broker(iot_world: IoTWorld) -> Iterator[WebSocketMqttStandIn]:
    server = WebSocketMqttStandIn(iot_world.pki).start()
    yield server
    server.stop()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def expected_signature(route: str, params: list[tuple[str, str]], host: str, secret: str) -> str:
    """SigV4 query-string signature computed independently of awscrt."""
    fields = dict(params)
    signed = sorted((k, v) for k, v in params if k not in ("X-Amz-Signature", "X-Amz-Security-Token"))
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in signed)
    canonical = "\n".join(["GET", route, query, f"host:{host}", "", "host", hashlib.sha256(b"").hexdigest()])
    date, scope = fields["X-Amz-Date"], fields["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["AWS4-HMAC-SHA256", date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = _hmac(key, part)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_websocket_connection_is_presigned_with_refreshing_credentials(
    iot: IoTWorld, ws_broker: WebSocketMqttStandIn
) -> None:
    iot.server.behaviour.lifetime = 900
    session = iot.session("ec")
    connection = iot_x509.mqtt_websocket_connection(
        "localhost", "ws-client", session, region_name="us-east-1", ca=iot.pki.server_ca_pem, port=ws_broker.port,
    )
    keys = []
    for shift in (0, 1000):  # the second connect comes after the first credentials expired
        with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=shift)):
            connection.connect().result(WAIT)
            connection.disconnect().result(WAIT)
            frozen = session.get_credentials().get_frozen_credentials()
        path, headers = ws_broker.requests[-1]
        route, _, query = path.partition("?")
        params = parse_qsl(query, keep_blank_values=True)
        fields = dict(params)
        assert route == "/mqtt" and fields["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
        assert fields["X-Amz-Credential"].startswith(frozen.access_key + "/")
        assert fields["X-Amz-Credential"].endswith("/us-east-1/iotdevicegateway/aws4_request")
        assert fields["X-Amz-SignedHeaders"] == "host"
        assert fields["X-Amz-Security-Token"] == frozen.token
        assert fields["X-Amz-Signature"] == expected_signature(route, params, headers["host"], frozen.secret_key)
        assert ws_broker.connects[-1][0] >> 4 == 1  # the first MQTT packet is CONNECT
        keys.append(frozen.access_key)
    assert keys[0] != keys[1] and iot.server.fetches == 2
