"""``python -m iot_x509`` as a credential_process, run in real subprocesses."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

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
