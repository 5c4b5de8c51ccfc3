"""Keys in a PKCS#11 token (SoftHSM2): end to end, errors, the CLI in a fresh process."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import iot_x509

from .conftest import SoftHSM
from .iot_standin import IoTWorld

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("device", ["rsa", "ec"])
def test_pkcs11_key_end_to_end(iot: IoTWorld, softhsm: SoftHSM, device: str) -> None:
    session = iot.session(device, key=None, pkcs11=softhsm.pkcs11(device))
    arn = session.client("sts").get_caller_identity()["Arn"]
    assert arn == f"arn:aws:sts::123456789012:assumed-role/iot-device/thing-{device}"
    assert iot.server.fetches == 1


def test_pkcs11_config_object_and_certificate_file(iot: IoTWorld, softhsm: SoftHSM) -> None:
    config = iot_x509.Pkcs11Config(**softhsm.pkcs11("ec"))
    session = iot.session("ec", cert=iot.files["ec.cert"], key=None, pkcs11=config, ca=iot.files["ca"])
    assert session.client("sts").get_caller_identity()["Arn"].endswith("/thing-ec")
    assert softhsm.user_pin not in repr(config)
    assert iot.provider("ec", key=None, pkcs11=config).transport == "awscrt"


def test_pkcs11_refuses_the_ssl_transport(iot: IoTWorld, softhsm: SoftHSM) -> None:
    with pytest.raises(iot_x509.IoTConfigError, match="PKCS#11 keys need transport='awscrt'"):
        iot.session("ec", key=None, pkcs11=softhsm.pkcs11("ec"), transport="ssl")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"private_key_label": "no-such-key"}, "pkcs11: AWS_ERROR_PKCS11_KEY_NOT_FOUND"),
        ({"token_label": "no-such-token"}, "pkcs11: AWS_ERROR_PKCS11_TOKEN_NOT_FOUND"),
    ],
)
def test_a_missing_token_or_key_is_reported_at_the_call(
    iot: IoTWorld, softhsm: SoftHSM, change: dict[str, str], match: str
) -> None:
    with pytest.raises(iot_x509.IoTConfigError, match=match) as info:
        iot.session("ec", key=None, pkcs11={**softhsm.pkcs11("ec"), **change})
    assert softhsm.user_pin not in str(info.value)
    assert iot.server.requests == []


def test_a_token_key_that_does_not_match_the_certificate_fails_tls(iot: IoTWorld, softhsm: SoftHSM) -> None:
    provider = iot.provider("ec", key=None, pkcs11=softhsm.pkcs11("rsa"), timeout=3.0)
    started = time.monotonic()
    with pytest.raises(iot_x509.IoTTLSError, match="TLS"):
        provider()
    assert time.monotonic() - started < 3.5
    assert iot.server.fetches == 0


def test_untrusted_server_with_a_pkcs11_key(iot: IoTWorld, softhsm: SoftHSM) -> None:
    iot.server.untrusted = True
    provider = iot.provider("rsa", key=None, pkcs11=softhsm.pkcs11("rsa"), timeout=4.0)
    started = time.monotonic()
    with pytest.raises(iot_x509.IoTTLSError, match=r"server certificate of localhost:\d+ is not trusted"):
        provider()
    assert time.monotonic() - started < 2.5


def _cli(iot: IoTWorld, softhsm: SoftHSM, pin: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SOFTHSM2_CONF": softhsm.conf, iot_x509.PIN_ENV: pin, "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable, "-m", "iot_x509", "--cert", iot.files["ec.cert"], "--role-alias", iot.role_alias,
        "--endpoint", iot.endpoint, "--thing-name", "thing-ec", "--ca", iot.files["ca"],
        "--pkcs11-lib", softhsm.lib, "--token-label", softhsm.token_label, "--private-key-label", "ec-key",
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=30, env=env, check=False)


def test_cli_with_pkcs11_and_a_wrong_pin_in_a_fresh_process(iot: IoTWorld, softhsm: SoftHSM) -> None:
    ok = _cli(iot, softhsm, softhsm.user_pin)
    assert ok.returncode == 0, ok.stderr
    document = json.loads(ok.stdout)
    assert document["Version"] == 1 and document["AccessKeyId"].startswith("ASIA")
    wrong = _cli(iot, softhsm, "999999")
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert "IoTConfigError: PKCS#11: AWS_ERROR_PKCS11_CKR_PIN_INCORRECT" in wrong.stderr
    assert "999999" not in wrong.stderr
    assert iot.server.fetches == 1


def test_a_forked_child_fetches_with_its_own_event_loop_and_login(iot: IoTWorld, softhsm: SoftHSM) -> None:
    provider = iot.provider("ec", key=None, pkcs11=softhsm.pkcs11("ec"), timeout=5.0)
    parent_key = provider()["AccessKeyId"]
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # child: fetch with the inherited provider, report, leave at once
        try:
            os.write(write_end, provider()["AccessKeyId"].encode())
        except BaseException as error:
            os.write(write_end, f"error {type(error).__name__}: {error}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    ready, _, _ = select.select([read_end], [], [], 15)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    with os.fdopen(read_end, "rb") as pipe:
        child_key = pipe.read().decode() if ready else "child hung"
    os.waitpid(pid, 0)
    assert child_key.startswith("ASIA"), child_key
    assert child_key != parent_key and iot.server.fetches == 2
    assert provider()["AccessKeyId"] not in (parent_key, child_key)  # the parent still works
