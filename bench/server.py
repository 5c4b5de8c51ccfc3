"""A moto server in its own process that counts STS actions server-side.

The server is moto's own WSGI application wrapped in a small middleware that
counts requests by ``Action`` (every request the server receives, successful or
not) and offers three control endpoints:

* ``GET  /_bench/count``            -> ``{"AssumeRole": n, ...}``
* ``POST /_bench/reset``            -> zero the counters
* ``POST /_bench/clock?offset=S``   -> move the server clock ``S`` seconds ahead
  (``time_machine``; ``0`` returns to real time), so credentials issued while a
  client's clock is moved are fresh in the client's moved clock too.

Running the server in a separate process keeps it from competing with the
measured client threads for the GIL.
"""

import contextlib
import io
import json
import logging
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

CONTROL_PREFIX = "/_bench/"


def _request_action(environ: dict[str, Any]) -> str | None:
    """The query-protocol ``Action`` of a request; the body is buffered for moto."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    params = parse_qs(environ.get("QUERY_STRING", "")) | parse_qs(body.decode("utf-8", "replace"))
    actions = params.get("Action")
    return actions[0] if actions else None


class ServerClock:
    """Moves this process's clock (and so moto's ``Expiration``) ahead on request."""

    def __init__(self) -> None:
        self._traveller: Any = None

    def set_offset(self, seconds: float) -> None:
        if self._traveller is not None:
            self._traveller.stop()
            self._traveller = None
        if seconds:
            import time_machine

            self._traveller = time_machine.travel(time.time() + seconds, tick=True)
            self._traveller.start()


class CountingApp:
    """WSGI middleware: counts actions, answers ``/_bench/*``, forwards the rest."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._clock = ServerClock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            return self._control(path.removeprefix(CONTROL_PREFIX), environ, start_response)
        action = _request_action(environ)
        if action:
            with self._lock:
                self._counts[action] += 1
        return self._app(environ, start_response)

    def _control(self, command: str, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        with self._lock:
            if command == "reset":
                self._counts.clear()
            elif command == "clock":
                offset = parse_qs(environ.get("QUERY_STRING", "")).get("offset", ["0"])[0]
                self._clock.set_offset(float(offset))
            body = json.dumps(dict(self._counts)).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]


def serve() -> None:
    """Start the server on a free port of 127.0.0.1, print the port, serve forever."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = CountingApp(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


class ServerControl:
    """Client side of the control endpoints."""

    def __init__(self, endpoint_url: str) -> None:
        self._base = endpoint_url.rstrip("/") + CONTROL_PREFIX

    def _call(self, command: str, method: str = "GET") -> dict[str, int]:
        request = urllib.request.Request(self._base + command, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, int] = json.load(response)
            return result

    def assume_role_count(self) -> int:
        return self._call("count").get("AssumeRole", 0)

    def reset(self) -> None:
        self._call("reset", method="POST")

    def set_clock_offset(self, seconds: float) -> None:
        self._call(f"clock?offset={seconds}", method="POST")


def running_server(env: dict[str, str]) -> contextlib.AbstractContextManager[str]:
    """Run ``python -m bench.server`` as a child process; yield its endpoint URL."""
    return running_child_server("bench.server", env)


@contextlib.contextmanager
def running_child_server(module: str, env: dict[str, str]) -> Iterator[str]:
    """Run ``python -m module`` (which prints its port on a line) as a child process; yield its URL."""
    process = subprocess.Popen([sys.executable, "-m", module], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    serve()
