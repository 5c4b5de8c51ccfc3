"""Connection + request time of iot_x509's two transports for PEM keys.

Runs the tests' mutual-TLS credentials-provider stand-in on 127.0.0.1 and
fetches credentials N times per transport and key type, each fetch on a new
connection (as iot_session does, once per credential lifetime). The stand-in
runs in a forked child so that it does not share the client's GIL.

    python bench/iot_transport.py [N]
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import iot_x509
from tests.iot.iot_standin import ROLE_ALIAS, StandIn, TestPKI, issue_device

FAKE = {"AccessKeyId": "ASIABENCHEXAMPLE0000", "SecretAccessKey": "bench-secret", "SessionToken": "bench-token"}


def measure(provider: iot_x509.IoTCredentialsProvider, n: int) -> list[float]:
    provider()  # warm up (imports, event loop, first handshake)
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        provider()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main(n: int = 50) -> None:
    pki = TestPKI()
    server = StandIn(pki, lambda lifetime, name: dict(FAKE))
    server.role_aliases.add(ROLE_ALIAS)
    devices = {kt: issue_device(pki.device_ca, f"bench-{kt}", kt) for kt in ("rsa", "ec")}
    for key_type, device in devices.items():
        server.register(f"bench-{key_type}", device)
    child = multiprocessing.get_context("fork").Process(target=server.serve_forever, daemon=True)
    child.start()
    print(f"{'key':<4} {'transport':<8} {'median ms':>10} {'p90 ms':>8} {'min ms':>8}  (n={n})")
    try:
        for key_type, device in devices.items():
            for transport in ("ssl", "awscrt"):
                provider = iot_x509.IoTCredentialsProvider(
                    device.cert_pem,
                    device.key_pem,
                    ROLE_ALIAS,
                    endpoint=server.endpoint,
                    ca=pki.server_ca_pem,
                    transport=transport,  # type: ignore[arg-type]
                )
                samples = sorted(measure(provider, n))
                p90 = samples[int(len(samples) * 0.9) - 1]
                print(
                    f"{key_type:<4} {transport:<8} {statistics.median(samples):>10.1f} {p90:>8.1f} {samples[0]:>8.1f}"
                )
    finally:
        child.terminate()
        child.join(5)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
