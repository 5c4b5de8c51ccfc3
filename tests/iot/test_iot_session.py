"""iot_session end to end with PEM keys: stand-in (mTLS) -> credentials -> moto STS."""

from __future__ import annotations

import datetime as dt
import gc
import logging
import threading
from pathlib import Path

import pytest
import time_machine

import assume_role_chain
import iot_x509
from tests.conftest import Clock
from tests.test_engine import fork_running, wait_for_child

from .iot_standin import IoTWorld

TRANSPORTS = ["ssl", "awscrt"]


def caller_arn(session: object) -> str:
    return str(session.client("sts").get_caller_identity()["Arn"])  # type: ignore[attr-defined]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("device", ["rsa", "ec"])
@pytest.mark.parametrize("source", ["path", "bytes", "str"])
def test_pem_key_end_to_end(iot: IoTWorld, device: str, source: str, transport: str) -> None:
    d = iot.devices[device]
    if source == "path":
        cert, key, ca = iot.files[f"{device}.cert"], Path(iot.files[f"{device}.key"]), iot.files["ca"]
        args: dict[str, object] = {"cert": cert, "key": key, "ca": ca}
    elif source == "bytes":
        args = {"cert": d.cert_pem, "key": d.key_pem, "ca": iot.pki.server_ca_pem}
    else:
        args = {"cert": d.cert_pem.decode(), "key": d.key_pem.decode(), "ca": iot.pki.server_ca_pem.decode()}
    session = iot.session(device, transport=transport, **args)
    assert caller_arn(session) == f"arn:aws:sts::123456789012:assumed-role/iot-device/thing-{device}"
    assert iot.server.fetches == 1
    assert iot.server.requests[0]["thing"] == f"thing-{device}"
    assert iot.server.requests[0]["path"] == "/role-aliases/device-role/credentials"


def test_auto_transport_prefers_ssl_for_pem(iot: IoTWorld) -> None:
    assert iot.provider("ec").transport == "ssl"
    assert iot.provider("ec", transport="awscrt").transport == "awscrt"


def test_without_thing_name_no_header_is_sent(iot: IoTWorld) -> None:
    session = iot.session("rsa", thing_name=None)
    assert caller_arn(session).endswith("/iot-device/device")
    assert iot.server.requests[0]["thing"] is None
    assert iot.server.requests[0]["host"] == iot.endpoint


def test_region_comes_from_the_endpoint_unless_given(iot: IoTWorld) -> None:
    provider_ep = iot_x509.parse_credentials_endpoint("c2abc123xyz.credentials.iot.eu-west-1.amazonaws.com")
    assert (provider_ep.host, provider_ep.port, provider_ep.region) == (
        "c2abc123xyz.credentials.iot.eu-west-1.amazonaws.com", 443, "eu-west-1")
    cn = iot_x509.parse_credentials_endpoint("https://abc.credentials.iot.cn-north-1.amazonaws.com.cn:8443/")
    assert (cn.port, cn.region) == (8443, "cn-north-1")
    assert iot_x509.parse_credentials_endpoint(iot.endpoint).region is None
    session = iot.session("ec", region_name="ap-southeast-2")
    assert session.region_name == "ap-southeast-2"


def test_the_session_is_a_plain_boto3_session_that_fetches_lazily(iot: IoTWorld) -> None:
    import boto3

    session = iot.session("ec")
    assert type(session) is boto3.Session
    assert iot.server.fetches == 0
    session.get_credentials().get_frozen_credentials()
    assert iot.server.fetches == 1
    eager = iot.session("ec", eager=True)  # fetches now, then refreshes in the background
    assert iot.server.fetches == 2
    del eager
    gc.collect()  # or the engine's background refresher keeps serving it in later tests


# --------------------------------------------------------------------------
# Refresh: one fetch per lifetime, single flight
# --------------------------------------------------------------------------


def test_200_calls_over_a_900_s_lifetime_fetch_once(iot: IoTWorld) -> None:
    iot.server.behaviour.lifetime = 900
    with time_machine.travel(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc), tick=False) as clock:
        session = iot.session("ec")
        sts = session.client("sts")
        for _ in range(200):  # 200 calls spread over the first 660 s of the lifetime
            sts.get_caller_identity()
            clock.shift(3.3)
        assert iot.server.fetches == 1
        clock.shift(900 - 660)  # expired now
        sts.get_caller_identity()
        assert iot.server.fetches == 2


def test_32_threads_at_refresh_time_fetch_once(iot: IoTWorld) -> None:
    iot.server.behaviour.lifetime = 900
    with time_machine.travel(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc), tick=False) as clock:
        session = iot.session("ec")
        credentials = session.get_credentials()
        first = credentials.get_frozen_credentials()
        assert iot.server.fetches == 1
        clock.shift(880)  # inside the safety margin: nobody may use the old ones
        iot.server.behaviour.delay = 0.3  # every thread arrives while the fetch runs
        barrier = threading.Barrier(32)
        seen: list[str] = []

        def worker() -> None:
            barrier.wait(5)
            seen.append(credentials.get_frozen_credentials().access_key)

        threads = [threading.Thread(target=worker) for _ in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert iot.server.fetches == 2
    assert len(seen) == 32 and len(set(seen)) == 1 and seen[0] != first.access_key


def test_static_stability_keeps_serving_until_expiry(iot: IoTWorld, clock: Clock) -> None:
    iot.server.behaviour.lifetime = 900
    session = iot.session("ec")
    sts = session.client("sts")
    sts.get_caller_identity()
    iot.server.behaviour.mode = "status"
    iot.server.behaviour.status = 500
    clock.shift(800)  # refresh due (mandatory window), provider failing
    sts.get_caller_identity()  # still served with the unexpired credentials
    clock.shift(60)  # within the safety margin: no usable credentials remain
    with pytest.raises(iot_x509.IoTHTTPError, match="HTTP 500"):
        sts.get_caller_identity()
    iot.server.behaviour.mode = "ok"
    clock.shift(60)  # after the backoff (timed on the monotonic clock) the next call fetches again
    sts.get_caller_identity()


def test_file_cache_is_shared_between_sessions(iot: IoTWorld, tmp_path: Path) -> None:
    cache = assume_role_chain.JSONFileCache(tmp_path / "cache")
    first = iot.session("ec", cache=cache)
    caller_arn(first)
    second = iot.session("ec", cache=cache)
    assert caller_arn(second) == caller_arn(first)
    assert iot.server.fetches == 1
    other_thing = iot.session("rsa", cache=cache)  # another certificate: another key
    caller_arn(other_thing)
    assert iot.server.fetches == 2
    for entry in (tmp_path / "cache").rglob("*"):  # entries, and the lock files in .locks
        assert entry.is_dir() or "PRIVATE KEY" not in entry.read_text()


# --------------------------------------------------------------------------
# Secrets stay secret
# --------------------------------------------------------------------------


def test_no_secret_in_reprs_or_logs(iot: IoTWorld, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="iot_x509")
    caplog.set_level(logging.DEBUG, logger="assume_role_chain")
    provider = iot.provider("ec")
    credentials = provider()
    session = iot.session("ec")
    frozen = session.get_credentials().get_frozen_credentials()
    config = iot_x509.Pkcs11Config(pkcs11_lib="/lib.so", user_pin="987654", token_label="t")
    key_body = iot.devices["ec"].key_pem.decode().splitlines()[1]
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name in ("iot_x509", "assume_role_chain"))
    texts = [repr(provider), repr(session.get_credentials()), repr(config), ours]
    secrets = [credentials["SecretAccessKey"], credentials["SessionToken"], frozen.secret_key,
               frozen.token, "987654", key_body]
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert "fetching IoT credentials" in ours


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads running
def test_a_child_forked_while_a_thread_sets_up_awscrt_fetches(iot: IoTWorld) -> None:
    """The once-per-process awscrt set-up is guarded by a lock; a child forked while another
    thread held it must not wait for a thread it does not have."""
    provider = iot.provider("ec", transport="awscrt", timeout=5.0)
    holding, release = threading.Event(), threading.Event()

    def set_up() -> None:  # a thread in the middle of the event-loop set-up
        with iot_x509._bootstrap_lock:
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=set_up)
    thread.start()
    assert holding.wait(10)
    fetches = iot.server.fetches
    pid = fork_running(lambda: provider()["AccessKeyId"])
    try:
        assert wait_for_child(pid, 20) == 0
    finally:
        release.set()
        thread.join(30)
    assert iot.server.fetches == fetches + 1
