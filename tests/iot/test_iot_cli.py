"""``python -m iot_x509`` as a credential_process, run in real subprocesses."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.servers import RawResponder, http_answer

from .conftest import Broker
from .iot_standin import IoTWorld

ROOT = Path(__file__).resolve().parents[2]


def cli_args(iot: IoTWorld, device: str = "ec") -> list[str]:
    return [
        sys.executable, "-m", "iot_x509", "--cert", iot.files[f"{device}.cert"], "--key", iot.files[f"{device}.key"],
        "--role-alias", iot.role_alias, "--endpoint", iot.endpoint, "--thing-name", f"thing-{device}",
        "--ca", iot.files["ca"], "--timeout", "5",
    ]


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, capture_output=True, text=True, timeout=30, env=env, check=False)


def test_prints_credential_process_json(iot: IoTWorld) -> None:
    iot.server.behaviour.lifetime = 900
    result = run(cli_args(iot))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert sorted(document) == ["AccessKeyId", "Expiration", "SecretAccessKey", "SessionToken", "Version"]
    assert document["Version"] == 1
    expiry = dt.datetime.strptime(document["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    left = (expiry - dt.datetime.now(dt.timezone.utc)).total_seconds()
    assert 880 < left <= 900
    assert result.stderr == ""


def test_the_aws_sdk_uses_it_as_credential_process(iot: IoTWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    config.write_text(f"[profile device]\nregion = us-east-1\ncredential_process = {shlex.join(cli_args(iot, 'rsa'))}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    arn = boto3.Session(profile_name="device").client("sts").get_caller_identity()["Arn"]
    assert arn == "arn:aws:sts::123456789012:assumed-role/iot-device/thing-rsa"
    assert iot.server.fetches == 1


def test_errors_go_to_stderr_with_exit_status_1(iot: IoTWorld) -> None:
    iot.server.behaviour.mode = "status"
    iot.server.behaviour.message = "Certificate is not active"
    result = run(cli_args(iot))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().startswith("iot_x509: IoTHTTPError: HTTP 403 Forbidden from https://localhost:")
    assert result.stderr.strip().endswith(": Certificate is not active")
    invalid = run([*cli_args(iot), "--role-alias", "bad alias"])
    assert invalid.returncode == 1 and "IoTConfigError: --role-alias must be" in invalid.stderr


def test_the_example_device_script(iot: IoTWorld, mosquitto: Broker) -> None:
    result = run([
        sys.executable, str(ROOT / "examples" / "iot_demo.py"), "--endpoint", iot.endpoint,
        "--role-alias", iot.role_alias, "--thing-name", "thing-ec", "--cert", iot.files["ec.cert"],
        "--key", iot.files["ec.key"], "--ca", iot.files["ca"], "--region", "us-east-1",
        "--mqtt-endpoint", mosquitto.host, "--mqtt-port", str(mosquitto.port),
    ])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "calling AWS as arn:aws:sts::123456789012:assumed-role/iot-device/thing-ec",
        "published to demo/thing-ec/hello",
    ]
    assert "Received PUBLISH from thing-ec" in mosquitto.log_text()


def test_hostile_credential_values_are_refused_without_echo(iot: IoTWorld) -> None:
    responder = RawResponder(iot.pki.server_context())
    try:
        for field in ("accessKeyId", "secretAccessKey", "sessionToken"):
            credentials = {"accessKeyId": "ASIAEXAMPLEEXAMPLE00", "secretAccessKey": "iot-secret-0123456789abcdef",
                           "sessionToken": "iot-token-0123456789abcdef", "expiration": "2099-01-01T00:00:00Z"}
            credentials[field] = "ASIAEXAMPLE\nAWS_REGION=INJECTED"
            body = json.dumps({"credentials": credentials}).encode()
            responder.answer = http_answer(200, [(b"Content-Length", str(len(body)).encode())], body)
            args = cli_args(iot)
            args[args.index("--endpoint") + 1] = responder.endpoint
            result = run(args)
            assert result.returncode == 1 and result.stdout == ""
            assert result.stderr.count("\n") == 1 and "IoTResponseError" in result.stderr and field in result.stderr
            assert "INJECTED" not in result.stderr
    finally:
        responder.stop()


def test_usage_errors_redact_values(iot: IoTWorld) -> None:
    for extra in (["--pin", "987654"], ["--pin=987654"], ["-p987654"], ["--slot-id", "987654x"], ["--timeout", "987654x"]):
        result = run([*cli_args(iot), *extra])
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and "987654" not in result.stderr
        assert result.stderr.startswith("iot_x509: IoTConfigError: bad arguments: ")
    assert "unrecognized arguments: --pin ***" in run([*cli_args(iot), "--pin", "987654"]).stderr


def test_errors_name_the_command_line_flags(iot: IoTWorld, tmp_path: Path) -> None:
    def error_of(*changes: str, drop: str | None = None) -> str:
        args = cli_args(iot)
        if drop:
            index = args.index(drop)
            del args[index:index + 2]
        result = run([*args, *changes])
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        return result.stderr

    cases = {
        "--ca": error_of("--ca", str(tmp_path / "missing-ca.pem")),
        "--thing-name": error_of("--thing-name", "bad name"),
        "--timeout": error_of("--timeout", "0"),
        "--endpoint": error_of("--endpoint", "https://host/path"),
        "--key": error_of(drop="--key"),
        "--pkcs11-lib": error_of("--pkcs11-lib", str(tmp_path / "missing.so"), drop="--key"),
    }
    for flag, stderr in cases.items():
        assert flag in stderr, stderr
        assert not re.search(r"(?<![-\w])(ca|cert|key|role_alias|thing_name|timeout|endpoint|pkcs11_lib|slot_id)[=:]", stderr), stderr
    untrusted = error_of("--ca", iot.files["ec.cert"])  # a certificate that did not issue the server's
    assert "IoTTLSError" in untrusted and "--ca" in untrusted and "ca=" not in untrusted


def test_provider_error_text_stays_one_line(iot: IoTWorld) -> None:
    iot.server.behaviour.mode = "status"
    iot.server.behaviour.message = "denied\niot_x509: forged line\r\u202eback"
    result = run(cli_args(iot))
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "\u202e" not in result.stderr and "forged line" in result.stderr


def test_a_closed_stdout_exits_quietly(iot: IoTWorld) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        result = subprocess.run(cli_args(iot), stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=30, env=env, check=False)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")
    assert iot.server.fetches == 1
