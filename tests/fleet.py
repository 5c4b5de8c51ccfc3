"""Helpers for the fleet-cache tests: a real redis-server, a switchable TCP relay,
store specs that child processes turn into stores, and the worker they run.

Kept free of pytest and moto so that worker processes import it quickly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import assume_role_chain as arc

ROOT = Path(__file__).resolve().parent.parent
REDIS_SERVER = "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, up: bool, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.02)
    raise RuntimeError(f"port {port} did not go {'up' if up else 'down'} within {timeout} s")


class RedisServer:
    """A real ``redis-server`` on 127.0.0.1 and a free port, without persistence."""

    def __init__(self) -> None:
        executable = shutil.which("redis-server") or (REDIS_SERVER if os.path.exists(REDIS_SERVER) else None)
        if executable is None:
            raise RuntimeError("redis-server is not installed: install the Debian package redis-server (tests/run.sh does)")
        self.executable = executable
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it on its port; a free port taken meanwhile (another pytest-xdist worker's
        server) means another free port, so that no two test sessions share a server."""
        import redis

        for _ in range(5):
            self.process = subprocess.Popen(
                [self.executable, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            wait_for_port(self.port, up=True)
            with contextlib.suppress(redis.RedisError):
                if redis.Redis(port=self.port, socket_timeout=5).info("server")["process_id"] == self.process.pid:
                    return
            self.process.kill()
            self.process.wait(10)
            self.port = free_port()
        raise RuntimeError("redis-server did not start on a free port in 5 tries")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None
            wait_for_port(self.port, up=False)


class Relay:
    """A TCP relay on 127.0.0.1 in front of ``port`` that can be taken down (all its
    connections closed, new ones refused) and brought back on the same port."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._open.update((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


# -- stores, described so that a child process can make the same one -----------------


def make_store(spec: dict[str, Any]) -> Any:
    """A store from a JSON-able description: ``{"kind", "where", "key", "lock_timeout", "operation_timeout"}``."""
    key = bytes.fromhex(spec["key"]) if spec.get("key") else None
    lock_timeout = spec.get("lock_timeout", 30.0)
    timeouts = {"lock_timeout": lock_timeout, "operation_timeout": spec.get("operation_timeout", 1.0)}
    if spec["kind"] == "json":
        return arc.JSONFileCache(spec["where"], lock_timeout=lock_timeout)
    if spec["kind"] == "redis":
        return arc.RedisCache.from_url(spec["where"], prefix=spec["prefix"], encryption_key=key, **timeouts)
    return arc.DynamoDBCache(spec["where"], encryption_key=key, **timeouts)


WORKER = """
import json, sys, boto3
import assume_role_chain as arc
from tests.fleet import make_store
spec, role = json.loads(sys.argv[1]), sys.argv[2]
session = arc.assume_role(boto3.Session(), role, cache=make_store(spec))
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"
print(arc.whoami(session)["Arn"], flush=True)
"""


FAILING_WORKER = """
import json, sys, boto3
import assume_role_chain as arc
from tests.fleet import make_store
spec, role = json.loads(sys.argv[1]), sys.argv[2]
session = arc.assume_role(boto3.Session(), role, cache=make_store(spec))
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"
try:
    session.get_credentials().get_frozen_credentials()
except Exception as error:
    print(type(error).__name__, getattr(error, "response", {}).get("Error", {}).get("Code"), flush=True)
"""


def run_fleet(spec: dict[str, Any], role: str, hosts: int, per_host: int, home: Path, worker_script: str = WORKER) -> list[str]:
    """Start ``hosts x per_host`` worker processes (each host its own HOME, no shared
    file cache), wait until all are ready, let them go together; what each printed
    (its ARN, for the default worker)."""
    workers = []
    for host in range(hosts):
        env = {**os.environ, "HOME": str(home / f"host-{host}")}
        for _ in range(per_host):
            workers.append(subprocess.Popen(
                [sys.executable, "-c", worker_script, json.dumps(spec), role], cwd=ROOT, env=env, text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            ))
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready", worker.communicate()[1]
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [worker.communicate(timeout=120) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    failures = [err for worker, (_, err) in zip(workers, results, strict=True) if worker.returncode != 0]
    assert failures == [], failures[:1]
    return [out.strip() for out, _ in results]
