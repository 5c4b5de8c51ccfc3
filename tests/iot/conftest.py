"""Fixtures for the IoT tests: the mTLS stand-in, SoftHSM2 and mosquitto.

Every component is real and started here, on 127.0.0.1. SoftHSM2 and mosquitto
are system packages: without them the tests that need them are skipped, unless
``CI=true``, where a missing component is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from .iot_standin import REGION, ROLE_ALIAS, Device, IoTWorld, StandIn, TestPKI, issue_device

ROLE_ARN = "arn:aws:iam::123456789012:role/iot-device"
SOFTHSM_LIBS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)
TOKEN_LABEL = "iot-test-token"
USER_PIN = "1234"


def require(available: bool, what: str) -> None:
    """Skip with a reason on a laptop; fail in CI (CI=true)."""
    if available:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required in CI (CI=true)", pytrace=False)
    pytest.skip(f"{what} is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------
# PKI, devices and the credentials-provider stand-in
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def iot_world(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IoTWorld]:
    pki = TestPKI()
    devices = {
        "rsa": issue_device(pki.device_ca, "device-rsa", "rsa"),
        "ec": issue_device(pki.device_ca, "device-ec", "ec"),
        "rogue": issue_device(pki.rogue_ca, "device-rogue", "ec"),
    }
    folder = tmp_path_factory.mktemp("iot-pem")
    files = {"ca": str(folder / "ca.pem")}
    (folder / "ca.pem").write_bytes(pki.server_ca_pem)
    for name, device in devices.items():
        for part, data in (("cert", device.cert_pem), ("key", device.key_pem)):
            path = folder / f"{name}.{part}.pem"
            path.write_bytes(data)
            files[f"{name}.{part}"] = str(path)
    sts = boto3.client(
        "sts", endpoint_url=moto_endpoint, region_name=REGION,
        aws_access_key_id="AKIASTANDINEXAMPLE00", aws_secret_access_key="stand-in-secret",
    )

    def assume_role(lifetime: int, session_name: str) -> dict[str, str]:
        answer = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName=session_name, DurationSeconds=lifetime)
        return dict(answer["Credentials"])

    server = StandIn(pki, assume_role).start()
    server.role_aliases.add(ROLE_ALIAS)
    server.register("thing-rsa", devices["rsa"])
    server.register("thing-ec", devices["ec"])
    yield IoTWorld(server=server, pki=pki, devices=devices, files=files)
    server.stop()


@pytest.fixture
def iot(iot_world: IoTWorld, aws_env: str) -> IoTWorld:
    """The world with a fresh stand-in behaviour, moto reset and an isolated env.

    A test that makes an eager session must drop it and ``gc.collect()``: eager
    sessions refresh in the background until garbage-collected (boto3 sessions
    sit in reference cycles) and would fetch during a later test.
    """
    iot_world.server.reset()
    return iot_world


# --------------------------------------------------------------------------
# SoftHSM2
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SoftHSM:
    lib: str
    token_label: str
    user_pin: str
    conf: str

    def pkcs11(self, key_type: str) -> dict[str, Any]:
        """The boto3-refresh-session style mapping for the RSA or EC key."""
        return {
            "pkcs11_lib": self.lib,
            "user_pin": self.user_pin,
            "token_label": self.token_label,
            "private_key_label": f"{key_type}-key",
        }


def _softhsm_lib() -> str | None:
    candidates = (os.environ.get("SOFTHSM2_LIB", ""), *SOFTHSM_LIBS)
    return next((path for path in candidates if path and os.path.isfile(path)), None)


def _run(*args: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=30, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {result.stdout}{result.stderr}")


def _import_key(env: dict[str, str], folder: Path, device: Device, label: str, key_id: str) -> None:
    key_file = folder / f"{label}.pem"  # the test's own key, removed right away
    key_file.write_bytes(device.key_pem)
    try:
        _run("softhsm2-util", "--import", str(key_file), "--token", TOKEN_LABEL,
             "--label", label, "--id", key_id, "--pin", USER_PIN, env=env)
    finally:
        key_file.unlink()


@pytest.fixture(scope="session")
def softhsm(iot_world: IoTWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHSM]:
    """A SoftHSM2 token of this test session holding the RSA and EC device keys."""
    lib = _softhsm_lib()
    require(lib is not None and shutil.which("softhsm2-util") is not None, "SoftHSM2 (apt-get install softhsm2)")
    assert lib is not None
    folder = tmp_path_factory.mktemp("softhsm")
    (folder / "tokens").mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    _run("softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL,
         "--so-pin", "12345678", "--pin", USER_PIN, env=env)
    _import_key(env, folder, iot_world.devices["rsa"], "rsa-key", "01")
    _import_key(env, folder, iot_world.devices["ec"], "ec-key", "02")
    with pytest.MonkeyPatch.context() as patch:  # before libsofthsm2 loads in this process
        patch.setenv("SOFTHSM2_CONF", str(conf))
        yield SoftHSM(lib=lib, token_label=TOKEN_LABEL, user_pin=USER_PIN, conf=str(conf))


# --------------------------------------------------------------------------
# mosquitto
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def _mosquitto_config(folder: Path, pki: TestPKI, port: int) -> Path:
    leaf = pki.server_ca.issue_cert("localhost", "127.0.0.1")
    files = {"ca": pki.device_ca_pem, "cert": leaf.cert_chain_pems[0].bytes(), "key": leaf.private_key_pem.bytes()}
    for name, data in files.items():
        (folder / f"{name}.pem").write_bytes(data)
    lines = [
        "user root" if os.geteuid() == 0 else "",
        "allow_anonymous true",
        "persistence false",
        f"log_dest file {folder / 'mosquitto.log'}",
        "log_type all",
        f"listener {port} 127.0.0.1",
        f"cafile {folder / 'ca.pem'}",
        f"certfile {folder / 'cert.pem'}",
        f"keyfile {folder / 'key.pem'}",
        "require_certificate true",
    ]
    conf = folder / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


@pytest.fixture(scope="session")
def mosquitto(iot_world: IoTWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """mosquitto on 127.0.0.1 requiring client certificates of the device CA."""
    binary = _mosquitto_binary()
    require(binary is not None, "mosquitto (apt-get install mosquitto)")
    assert binary is not None
    folder = tmp_path_factory.mktemp("mosquitto")
    port = free_port()
    conf = _mosquitto_config(folder, iot_world.pki, port)
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    broker = Broker("localhost", port, folder / "mosquitto.log")
    try:
        if not _wait_for_port(port, process):
            pytest.fail(f"mosquitto did not start:\n{broker.log_text()}", pytrace=False)
        yield broker
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
