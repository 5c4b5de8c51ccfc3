"""``python -m iot_x509 serve``: a device identity on a local container-credentials endpoint."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

from .iot_standin import IoTWorld
from .test_iot_cli import cli_args

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import os, boto3
    assert "AWS_ACCESS_KEY_ID" not in os.environ
    for _ in range(5):
        arn = boto3.Session().client("sts").get_caller_identity()["Arn"]
    print(arn)
""")


def serve_args(iot: IoTWorld, *extra: str) -> list[str]:
    return [sys.executable, "-m", "iot_x509", "serve", *cli_args(iot)[3:], *extra]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_a_boto3_child_sees_the_device_role_through_exec(iot: IoTWorld) -> None:
    result = subprocess.run(serve_args(iot, "--exec", "--", sys.executable, "-c", CHILD),
                            capture_output=True, text=True, timeout=60, env=env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "arn:aws:sts::123456789012:assumed-role/iot-device/thing-ec"
    assert iot.server.fetches == 1  # five calls, one fetch from the credentials provider


def test_serve_prints_exports_and_stops_on_sigterm(iot: IoTWorld) -> None:
    server = subprocess.Popen(serve_args(iot), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        assert server.stdout is not None
        variables = dict(shlex.split(server.stdout.readline())[1].split("=", 1) for _ in range(2))
        request = urllib.request.Request(variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
                                         headers={"Authorization": variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"]})
        body = json.load(urllib.request.urlopen(request, timeout=10))
        assert {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"} <= set(body)
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, stderr


def test_serve_errors_are_one_line_with_exit_status_1(iot: IoTWorld) -> None:
    iot.server.behaviour.mode = "status"
    iot.server.behaviour.message = "Certificate is not active"
    failed = subprocess.run(serve_args(iot, "--exec", "true"), capture_output=True, text=True, timeout=60, env=env())
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.startswith("iot_x509: IoTHTTPError: HTTP 403") and failed.stderr.count("\n") == 1
    usage = subprocess.run(serve_args(iot, "--exec"), capture_output=True, text=True, timeout=60, env=env())
    assert usage.returncode == 1 and "--exec needs a command" in usage.stderr
