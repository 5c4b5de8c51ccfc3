"""TLSIdentity: certificate, key (PEM or PKCS#11) and CA loaded once, used for a session and MQTT."""

from __future__ import annotations

import dataclasses
import hashlib
import ssl
from pathlib import Path
from typing import Any

import pytest

import iot_x509

from .conftest import Broker, SoftHSM
from .iot_standin import REGION, IoTWorld
from .test_iot_mqtt import round_trip


def identity_session(iot: IoTWorld, identity: Any, **kwargs: Any) -> Any:
    return iot_x509.iot_session(
        role_alias=iot.role_alias, endpoint=iot.endpoint, thing_name="thing-ec",
        region_name=REGION, timeout=5.0, identity=identity, **kwargs,
    )


def caller_arn(session: Any) -> str:
    return str(session.client("sts").get_caller_identity()["Arn"])


def test_one_pem_identity_serves_a_session_providers_and_mqtt(iot: IoTWorld, mosquitto: Broker) -> None:
    identity = iot_x509.TLSIdentity(iot.files["ec.cert"], Path(iot.files["ec.key"]), ca=iot.pki.server_ca_pem)
    session = identity_session(iot, identity)
    assert caller_arn(session) == "arn:aws:sts::123456789012:assumed-role/iot-device/thing-ec"
    for transport in ("ssl", "awscrt"):
        provider = iot_x509.IoTCredentialsProvider(
            role_alias=iot.role_alias, endpoint=iot.endpoint, identity=identity, transport=transport,
        )
        assert provider.transport == transport
        assert provider()["AccessKeyId"]
    assert iot.server.fetches == 3
    connection = iot_x509.mqtt_connection(mosquitto.host, "identity-pem", identity=identity, port=mosquitto.port)
    assert round_trip(connection) == b'{"temperature": 21.5}'
    assert " as identity-pem " in mosquitto.log_text()


def test_one_pkcs11_identity_serves_a_session_and_mqtt(
    iot: IoTWorld, mosquitto: Broker, softhsm: SoftHSM
) -> None:
    identity = iot_x509.TLSIdentity(iot.devices["ec"].cert_pem, pkcs11=softhsm.pkcs11("ec"), ca=iot.files["ca"])
    assert isinstance(identity.pkcs11, iot_x509.Pkcs11Config)
    assert caller_arn(identity_session(iot, identity)).endswith("/thing-ec")
    connection = iot_x509.mqtt_connection(mosquitto.host, "identity-hsm", identity=identity, port=mosquitto.port)
    assert round_trip(connection) == b'{"temperature": 21.5}'
    assert " as identity-hsm " in mosquitto.log_text()
    with pytest.raises(iot_x509.IoTConfigError, match="PKCS#11 keys need transport='awscrt'"):
        identity_session(iot, identity, transport="ssl")


def test_the_same_identity_works_with_the_same_outcome_as_separate_arguments(iot: IoTWorld) -> None:
    d = iot.devices["rsa"]
    identity = iot_x509.TLSIdentity(d.cert_pem, d.key_pem, ca=iot.pki.server_ca_pem)
    separate = iot.provider("rsa")
    shared = iot_x509.IoTCredentialsProvider(
        role_alias=iot.role_alias, endpoint=iot.endpoint, thing_name="thing-rsa", identity=identity,
    )
    assert identity.cert_sha256 == separate.cert_sha256 == shared.cert_sha256
    assert identity.cert_sha256 == hashlib.sha256(ssl.PEM_cert_to_DER_cert(d.cert_pem.decode())).hexdigest()
    assert shared.cache_key() == separate.cache_key()
    assert shared.transport == separate.transport == "ssl"


def test_the_exactly_one_rule_is_raised_at_construction(iot: IoTWorld, softhsm: SoftHSM) -> None:
    d = iot.devices["ec"]
    with pytest.raises(iot_x509.IoTConfigError, match="give exactly one of key \\(a PEM private key\\) and pkcs11"):
        iot_x509.TLSIdentity(d.cert_pem)
    with pytest.raises(iot_x509.IoTConfigError, match="give exactly one of key"):
        iot_x509.TLSIdentity(d.cert_pem, d.key_pem, pkcs11=softhsm.pkcs11("ec"))
    # and the same checks, with the same messages, as the separate arguments
    with pytest.raises(iot_x509.IoTConfigError, match="key does not belong to cert"):
        iot_x509.TLSIdentity(d.cert_pem, iot.devices["rsa"].key_pem)
    with pytest.raises(iot_x509.IoTConfigError, match="cert: not PEM content and not an existing file"):
        iot_x509.TLSIdentity("/nonexistent/cert.pem", d.key_pem)
    with pytest.raises(iot_x509.IoTConfigError, match="ca: no PEM certificate"):
        iot_x509.TLSIdentity(d.cert_pem, d.key_pem, ca=d.key_pem)
    with pytest.raises(iot_x509.IoTConfigError, match="pkcs11: unknown key\\(s\\) pin"):
        iot_x509.TLSIdentity(d.cert_pem, pkcs11={"pkcs11_lib": softhsm.lib, "pin": "1"})
    assert iot.server.requests == [] and iot.server.handshake_errors == []


@pytest.mark.parametrize("given", ["cert", "key", "pkcs11", "ca"])
def test_identity_excludes_the_separate_arguments(iot: IoTWorld, given: str) -> None:
    d = iot.devices["ec"]
    identity = iot_x509.TLSIdentity(d.cert_pem, d.key_pem, ca=iot.pki.server_ca_pem)
    value = {"cert": d.cert_pem, "key": d.key_pem, "pkcs11": {"pkcs11_lib": "/x.so"}, "ca": iot.pki.server_ca_pem}
    match = f"identity: give either identity= or {given}, not both"
    with pytest.raises(iot_x509.IoTConfigError, match=match):
        identity_session(iot, identity, **{given: value[given]})
    with pytest.raises(iot_x509.IoTConfigError, match=match):
        iot_x509.mqtt_connection("localhost", "c", identity=identity, **{given: value[given]})
    assert iot.server.requests == []


def test_identity_must_be_a_tls_identity(iot: IoTWorld) -> None:
    with pytest.raises(iot_x509.IoTConfigError, match="identity must be a TLSIdentity, not str"):
        identity_session(iot, iot.files["ec.cert"])
    with pytest.raises(iot_x509.IoTConfigError, match="cert must be a path or PEM content, not NoneType"):
        identity_session(iot, None)  # neither identity= nor cert


def test_no_key_material_or_pin_in_the_repr(iot: IoTWorld, softhsm: SoftHSM) -> None:
    d = iot.devices["ec"]
    key_lines = [line for line in d.key_pem.decode().splitlines() if "-----" not in line]
    from_content = iot_x509.TLSIdentity(d.cert_pem.decode(), d.key_pem.decode())
    from_files = iot_x509.TLSIdentity(iot.files["ec.cert"], iot.files["ec.key"], ca=iot.files["ca"])
    in_token = iot_x509.TLSIdentity(d.cert_pem, pkcs11=softhsm.pkcs11("ec"))
    assert repr(from_content) == (
        f"<TLSIdentity cert sha256 {from_content.cert_sha256[:16]}..., key from PEM content, system CAs>"
    )
    assert f"key from file {iot.files['ec.key']!r}" in repr(from_files)
    assert f"CA from file {iot.files['ca']!r}" in repr(from_files)
    assert "private_key_label='ec-key'" in repr(in_token)
    token_text = repr(in_token).replace(in_token.cert_sha256[:16], "")
    assert "user_pin" not in token_text and softhsm.user_pin not in token_text
    for identity in (from_content, from_files, in_token):
        text = repr(identity) + str(identity)
        assert "PRIVATE KEY" not in text
        assert not any(line in text for line in key_lines)


def test_an_identity_is_immutable(iot: IoTWorld) -> None:
    identity = iot_x509.TLSIdentity(iot.devices["ec"].cert_pem, iot.devices["ec"].key_pem)
    with pytest.raises(dataclasses.FrozenInstanceError):
        identity.cert_sha256 = "0" * 64  # type: ignore[misc]
