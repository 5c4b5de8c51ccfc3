"""Every failure: the right iot_x509 exception, a clear message, within the timeout."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import iot_x509

from .conftest import free_port, require
from .iot_standin import IoTWorld

TRANSPORTS = ["ssl", "awscrt"]


def timed_failure(call: Any, error: type[BaseException], match: str, within: float) -> BaseException:
    started = time.monotonic()
    with pytest.raises(error, match=match) as info:
        call()
    elapsed = time.monotonic() - started
    assert elapsed < within, f"took {elapsed:.2f} s"
    return info.value


# --------------------------------------------------------------------------
# Validation at the call (no network I/O)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"role_alias": "bad/alias"}, "role_alias must be 1-128 characters"),
        ({"role_alias": ""}, "role_alias must be"),
        ({"role_alias": "a" * 129}, "role_alias must be"),
        ({"role_alias": 42}, "role_alias must be .*got int"),
        ({"thing_name": "thing name"}, "thing_name must be 1-128 characters"),
        ({"thing_name": "t" * 129}, "thing_name must be"),
        ({"endpoint": "a1b2c3-ats.iot.eu-west-1.amazonaws.com"},
         "data \\(MQTT\\) endpoint.*describe-endpoint --endpoint-type iot:CredentialProvider --region eu-west-1"),
        ({"endpoint": "http://localhost:8443"}, "expected host\\[:port\\]"),
        ({"endpoint": "localhost:8443/role-aliases"}, "expected host\\[:port\\]"),
        ({"endpoint": "localhost:99999"}, "invalid port"),
        ({"endpoint": ""}, "a host name"),
        # Names are full matches of ASCII classes: no trailing newline, no Unicode letters.
        ({"role_alias": "device-role\n"}, "role_alias must be 1-128 characters of \\[A-Za-z0-9_=,@-\\]"),
        ({"role_alias": "dévice-role"}, "role_alias must be"),
        ({"role_alias": "device_rôle"}, "role_alias must be"),
        ({"role_alias": "role\u0663"}, "role_alias must be"),  # an Arabic-Indic digit
        ({"thing_name": "thing-ec\n"}, "thing_name must be 1-128 characters of \\[A-Za-z0-9:_-\\]"),
        ({"thing_name": "thïng-ec"}, "thing_name must be"),
        ({"thing_name": "thing-\u0435c"}, "thing_name must be"),  # a Cyrillic e
        # The endpoint's shape, checked at construction.
        ({"endpoint": "bad-endpoint"}, "endpoint: expected a host name such as <prefix>.credentials"),
        ({"endpoint": "bad_host.example.com"}, "endpoint: expected a host name"),
        ({"endpoint": "-bad.example.com"}, "endpoint: expected a host name"),
        ({"endpoint": "a..b.example.com"}, "endpoint: expected a host name"),
        ({"endpoint": "bücher.credentials.iot.eu-west-1.amazonaws.com"}, "endpoint: the host name must be ASCII"),
        ({"endpoint": "例え.jp:8443"}, "endpoint: the host name must be ASCII .*xn--"),
        ({"endpoint": "localhost:0"}, "endpoint: invalid port in 'localhost:0'"),
        ({"endpoint": "abc.credentials.iot.eu-west-1.amazonaws.com:0"}, "endpoint: invalid port"),
        ({"endpoint": "localhost:"}, "endpoint: invalid port"),
        ({"endpoint": "a1b2c3-ats.iot.eu-west-1.amazonaws.com."},
         "data \\(MQTT\\) endpoint.*--region eu-west-1"),
        ({"timeout": 0}, "timeout must be"),
        ({"timeout": "10"}, "timeout must be"),
        ({"transport": "curl"}, "transport must be"),
    ],
)
def test_invalid_arguments(iot: IoTWorld, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(iot_x509.IoTConfigError, match=match):
        iot.session("ec", **kwargs)
    assert iot.server.requests == [] and iot.server.handshake_errors == []


def test_a_trailing_dot_on_the_endpoint_keeps_its_region(iot: IoTWorld) -> None:
    ep = iot_x509.parse_credentials_endpoint("x1.credentials.iot.eu-west-1.amazonaws.com.")
    assert (ep.host, ep.port, ep.region) == ("x1.credentials.iot.eu-west-1.amazonaws.com", 443, "eu-west-1")
    session = iot.session("ec", endpoint="x1.credentials.iot.eu-west-1.amazonaws.com.", region_name=None)
    assert session.region_name == "eu-west-1"
    data = iot_x509.parse_data_endpoint("a1b2c3-ats.iot.ap-south-1.amazonaws.com.", 8883, 8883)
    assert (data.host, data.region) == ("a1b2c3-ats.iot.ap-south-1.amazonaws.com", "ap-south-1")
    # and the normalised name works on the wire (SNI, certificate check, Host header)
    session = iot.session("ec", endpoint=f"localhost.:{iot.server.port}")
    assert session.client("sts").get_caller_identity()["Arn"].endswith("/thing-ec")
    assert iot.server.requests[0]["host"] == f"localhost:{iot.server.port}"


def test_host_names_and_addresses_that_are_accepted() -> None:
    for value, host in [("LOCALHOST:8443", "localhost"), ("127.0.0.1:8443", "127.0.0.1"), ("[::1]:8443", "::1"),
                        ("https://proxy.internal.example:8443/", "proxy.internal.example")]:
        assert iot_x509.parse_credentials_endpoint(value) == iot_x509.Endpoint(host, 8443, None)


def test_exactly_one_of_key_and_pkcs11(iot: IoTWorld) -> None:
    with pytest.raises(iot_x509.IoTConfigError, match="exactly one of key"):
        iot.session("ec", key=None)
    with pytest.raises(iot_x509.IoTConfigError, match="exactly one of key"):
        iot.session("ec", pkcs11={"pkcs11_lib": "/nonexistent.so"})


def test_files_must_exist_and_be_pem(iot: IoTWorld, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(iot_x509.IoTConfigError, match=f"cert: not PEM content and not an existing file '{missing}'"):
        iot.session("ec", cert=str(missing))
    with pytest.raises(iot_x509.IoTConfigError, match=r"cert: file .* is not PEM"):
        iot.session("ec", cert=not_pem)
    with pytest.raises(iot_x509.IoTConfigError, match="key: not PEM content and not an existing file"):
        iot.session("ec", key=str(missing))
    with pytest.raises(iot_x509.IoTConfigError, match="ca: no PEM certificate"):
        iot.session("ec", ca=iot.devices["ec"].key_pem)
    with pytest.raises(iot_x509.IoTConfigError, match="key holds no PEM private key"):
        iot.session("ec", key=iot.devices["ec"].cert_pem)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("kind", ["bytes", "surrogate-escaped str"])
def test_certificate_paths_that_are_not_utf8_work(iot: IoTWorld, tmp_path: Path, transport: str, kind: str) -> None:
    folder = os.fsencode(tmp_path) + b"/caf\xe9"  # Latin-1, as on an old file system
    os.mkdir(folder)
    for name, data in (b"cert", iot.devices["ec"].cert_pem), (b"key", iot.devices["ec"].key_pem), (b"ca", iot.pki.server_ca_pem):
        with open(folder + b"/" + name + b".pem", "wb") as handle:
            handle.write(data)
    paths = {name: folder + f"/{name}.pem".encode() for name in ("cert", "key", "ca")}
    args = paths if kind == "bytes" else {name: os.fsdecode(path) for name, path in paths.items()}
    session = iot.session("ec", transport=transport, **args)
    assert session.client("sts").get_caller_identity()["Arn"].endswith("/thing-ec")
    missing = folder + b"/missing\xff.pem"
    for value in (missing, os.fsdecode(missing)):
        with pytest.raises(iot_x509.IoTConfigError, match=r"cert: not PEM content and not an existing file '.*missing\\udcff\.pem'"):
            iot.session("ec", cert=value)


def test_a_pkcs11_library_path_that_is_not_utf8_is_refused(iot: IoTWorld, tmp_path: Path) -> None:
    library = os.fsencode(tmp_path) + b"/lib\xff.so"
    with open(library, "wb"):
        pass
    with pytest.raises(iot_x509.IoTConfigError, match=r"pkcs11: the library path .* is not valid UTF-8"):
        iot.session("ec", key=None, pkcs11={"pkcs11_lib": os.fsdecode(library)})


def test_slot_id_out_of_range_on_the_command_line(iot: IoTWorld, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--cert", iot.files["ec.cert"], "--role-alias", iot.role_alias, "--endpoint", iot.endpoint,
            "--pkcs11-lib", __file__, "--slot-id", "99999999999999999999"]
    assert iot_x509.main(args) == 1
    out, err = capsys.readouterr()
    assert out == "" and "--slot-id" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_secret_looking_key_value_is_never_echoed(iot: IoTWorld) -> None:
    der_base64 = "".join(iot.devices["ec"].key_pem.decode().splitlines()[1:-1])
    with pytest.raises(iot_x509.IoTConfigError) as info:
        iot.session("ec", key=der_base64)
    assert der_base64[:20] not in str(info.value)


def test_encrypted_keys_are_refused(iot: IoTWorld) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(iot.devices["ec"].key_pem, None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    with pytest.raises(iot_x509.IoTConfigError, match="key is encrypted"):
        iot.session("ec", key=encrypted)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_key_must_belong_to_the_certificate(iot: IoTWorld, transport: str) -> None:
    with pytest.raises(iot_x509.IoTConfigError, match="key does not belong to cert"):
        iot.session("ec", key=iot.devices["rsa"].key_pem, transport=transport)
    with pytest.raises(iot_x509.IoTConfigError, match="key does not belong to cert"):
        iot.session("rsa", key=iot.files["rogue.key"], transport=transport)


@pytest.mark.parametrize(
    ("pkcs11", "match"),
    [
        ({"pkcs11_lib": "/nonexistent/libpkcs11.so"}, "library not found: /nonexistent/libpkcs11.so"),
        ({"user_pin": "1234"}, "'pkcs11_lib' \\(the library path\\) is required"),
        ({"pkcs11_lib": __file__, "pin": "1234"}, "unknown key\\(s\\) pin; known: pkcs11_lib, user_pin"),
        ({"pkcs11_lib": __file__, "slot_id": "0"}, r"'slot_id' must be an integer from 0 to 2\*\*64-1"),
        ({"pkcs11_lib": __file__, "slot_id": 2**64}, r"'slot_id' must be an integer from 0 to 2\*\*64-1"),
        ({"pkcs11_lib": __file__, "slot_id": -1}, r"'slot_id' must be an integer from 0 to 2\*\*64-1"),
        ({"pkcs11_lib": __file__, "token_label": "t\udcff"}, "'token_label' must be a string \\(valid UTF-8\\)"),
        ("lib.so", "pkcs11 must be a Pkcs11Config or a mapping"),
        ({"pkcs11_lib": __file__, "token_label": "t"}, r"pkcs11: cannot load .*test_iot_errors\.py: AWS_IO_SHARED_LIBRARY_LOAD_FAILURE"),
    ],
)
def test_invalid_pkcs11_config(iot: IoTWorld, pkcs11: Any, match: str) -> None:
    with pytest.raises(iot_x509.IoTConfigError, match=match) as info:
        iot.session("ec", key=None, pkcs11=pkcs11)
    assert "1234" not in str(info.value)


# --------------------------------------------------------------------------
# Failures from the server, through both transports
# --------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("status", "message"),
    [(403, "Access denied"), (404, "Not Found here"), (500, "Internal failure"), (503, "Slow down")],
)
def test_http_errors_carry_status_and_server_message(iot: IoTWorld, transport: str, status: int, message: str) -> None:
    iot.server.behaviour.mode = "status"
    iot.server.behaviour.status = status
    iot.server.behaviour.message = message
    provider = iot.provider("ec", transport=transport)
    error = timed_failure(provider, iot_x509.IoTHTTPError, f"HTTP {status} .*: {message}$", 3)
    assert isinstance(error, iot_x509.IoTHTTPError)
    assert (error.status, error.server_message) == (status, message)
    assert "/role-aliases/device-role/credentials" in str(error)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_error_body_holding_credentials_is_not_quoted(iot: IoTWorld, transport: str) -> None:
    iot.server.behaviour.mode = "status"
    iot.server.behaviour.status = 500
    iot.server.behaviour.message = 'failed: {"secretAccessKey": "leakedSecret123", "sessionToken": "leakedToken"}'
    provider = iot.provider("ec", transport=transport)
    error = timed_failure(provider, iot_x509.IoTHTTPError, "HTTP 500 .*: [(]a body that holds credential fields, not shown[)]$", 3)
    assert "leaked" not in str(error)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_role_alias_and_wrong_thing_name(iot: IoTWorld, transport: str) -> None:
    provider = iot.provider("ec", role_alias="no-such-alias", transport=transport)
    timed_failure(provider, iot_x509.IoTHTTPError, "HTTP 404 Not Found .*: Role alias does not exist", 3)
    provider = iot.provider("ec", thing_name="thing-rsa", transport=transport)
    timed_failure(provider, iot_x509.IoTHTTPError, "HTTP 403 Forbidden .*: Invalid thing name", 3)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("mode", "match"),
    [
        ("garbage", "is not JSON"),
        ("oversized", "larger than 65536 bytes"),
        ("truncated", "ended early"),
    ],
)
def test_malformed_responses(iot: IoTWorld, transport: str, mode: str, match: str) -> None:
    iot.server.behaviour.mode = mode
    provider = iot.provider("ec", transport=transport)
    timed_failure(provider, iot_x509.IoTResponseError, match, 3)


HOSTILE = [
    ("accessKeyId", "ASIAHOSTILEANSWER000\n"),
    ("secretAccessKey", "hostileSecret\nAWS_PROFILE=evil"),
    ("secretAccessKey", "hostileSecret\tmore"),
    ("sessionToken", "hostileToken\nexport X=$(id)"),
    ("sessionToken", "hostileToken more"),
    ("sessionToken", "hostileToken\x1b[2J"),
    ("sessionToken", "hostileToken\u2028"),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("field", "value"), HOSTILE)
def test_credentials_with_whitespace_or_control_characters_are_refused(
    iot: IoTWorld, transport: str, field: str, value: str
) -> None:
    iot.server.behaviour.replace = {field: value}
    provider = iot.provider("ec", transport=transport)
    match = "malformed accessKeyId" if field == "accessKeyId" else f"a {field} with whitespace or control characters"
    error = timed_failure(provider, iot_x509.IoTResponseError, match, 3)
    assert value[:12] not in str(error)  # never echoed


def test_hostile_credentials_reach_neither_a_session_nor_the_command_line(
    iot: IoTWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    iot.server.behaviour.replace = {"sessionToken": "hostileToken\nexport X=$(id)"}
    with pytest.raises(iot_x509.IoTResponseError) as info:
        iot.session("ec").get_credentials().get_frozen_credentials()
    assert "hostileToken" not in str(info.value)
    args = ["--cert", iot.files["ec.cert"], "--key", iot.files["ec.key"], "--role-alias", iot.role_alias,
            "--endpoint", iot.endpoint, "--thing-name", "thing-ec", "--ca", iot.files["ca"]]
    assert iot_x509.main(args) == 1
    out, err = capsys.readouterr()
    assert out == "" and "sessionToken with whitespace or control characters" in err
    assert "hostileToken" not in err


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_stalled_server_times_out(iot: IoTWorld, transport: str) -> None:
    iot.server.behaviour.mode = "stall"
    provider = iot.provider("ec", transport=transport, timeout=1.0)
    timed_failure(provider, iot_x509.IoTTimeoutError, "timed out after 1 s waiting for the response", 1.5)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_untrusted_server_is_named_within_the_timeout(iot: IoTWorld, transport: str) -> None:
    iot.server.untrusted = True
    provider = iot.provider("ec", transport=transport, timeout=3.0)
    timed_failure(provider, iot_x509.IoTTLSError, "server certificate of localhost:\\d+ is not trusted", 2.5)
    assert iot.server.fetches == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_client_certificate_from_another_ca_is_refused(iot: IoTWorld, transport: str) -> None:
    provider = iot.provider("rogue", thing_name=None, transport=transport, timeout=3.0)
    for _ in range(5):  # the server's alert may or may not arrive before its close
        timed_failure(provider, iot_x509.IoTTLSError, "refused the client certificate", 3)
    assert iot.server.fetches == 0
    assert "certificate verify failed" in iot.server.wait_for_handshake_error()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_nothing_listening(iot: IoTWorld, transport: str) -> None:
    provider = iot.provider("ec", endpoint=f"127.0.0.1:{free_port()}", transport=transport)
    timed_failure(provider, iot_x509.IoTConnectionError, "127.0.0.1:\\d+", 3)


def test_the_session_raises_the_providers_exception(iot: IoTWorld) -> None:
    iot.server.behaviour.mode = "status"
    session = iot.session("ec")
    with pytest.raises(iot_x509.IoTHTTPError, match="HTTP 403"):
        session.client("sts").get_caller_identity()
    iot.server.behaviour.mode = "stall"
    session = iot.session("ec", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(iot_x509.IoTTimeoutError):
        session.client("sts").get_caller_identity()
    assert time.monotonic() - started < 1.5


def test_errors_are_one_family() -> None:
    for cls in (iot_x509.IoTConfigError, iot_x509.IoTConnectionError, iot_x509.IoTTLSError,
                iot_x509.IoTTimeoutError, iot_x509.IoTResponseError, iot_x509.IoTHTTPError):
        assert issubclass(cls, iot_x509.IoTError)
    assert issubclass(iot_x509.IoTTimeoutError, TimeoutError)
    assert issubclass(iot_x509.IoTConfigError, ValueError)


def test_missing_components_fail_in_ci_and_skip_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="mosquitto is required in CI"):
        require(False, "mosquitto")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="mosquitto is not installed"):
        require(False, "mosquitto")
    require(True, "mosquitto")  # present: neither
