"""A no-op HTTP endpoint in its own process, for measuring client-side overhead.

It answers every request at once, on keep-alive connections, with a minimal
STS ``GetCallerIdentity`` response that botocore parses. The answer's
``UserId`` is the access key ID the request was signed with (taken from the
``Authorization`` header), so a worker can check which credentials signed each
call without any server-side work beyond splitting a header.

It is a hand-written asyncio protocol (no HTTP framework), so that a call
costs the server a few tens of microseconds and the measured client process,
not the server, is the bottleneck even with 64 threads.

    python -m bench.noop_server      # prints the port, serves until killed
"""

import asyncio
import contextlib

from bench.env import ACCOUNT_ID, ROLE_ARN, ROLE_SESSION_NAME

_ASSUMED_ARN = ROLE_ARN.replace(":iam::", ":sts::").replace(":role/", ":assumed-role/") + "/" + ROLE_SESSION_NAME
_BODY = (
    '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
    "<GetCallerIdentityResult><Arn>{arn}</Arn><UserId>{key}</UserId>"
    f"<Account>{ACCOUNT_ID}</Account></GetCallerIdentityResult>"
    "<ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ResponseMetadata>"
    "</GetCallerIdentityResponse>"
)
_HEAD = "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {length}\r\n\r\n"


def _signing_key_id(headers: bytes) -> str:
    """The access key ID of a SigV4 ``Authorization`` header ("" when absent)."""
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"authorization":
            credential = value.split(b"Credential=", 1)[-1]
            return credential.split(b"/", 1)[0].decode("ascii", "replace")
    return ""


def _content_length(headers: bytes) -> int:
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def answer(key_id: str) -> bytes:
    """The full HTTP response for a request signed with ``key_id``."""
    arn = _ASSUMED_ARN if key_id != "testing" else f"arn:aws:iam::{ACCOUNT_ID}:user/static"
    body = _BODY.format(arn=arn, key=key_id).encode()
    return _HEAD.format(length=len(body)).encode() + body


class _NoOpProtocol(asyncio.Protocol):
    """Reads requests (head + ``Content-Length`` body) and answers each at once."""

    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            headers = self._buffer[:end]
            total = end + 4 + _content_length(headers)
            if len(self._buffer) < total:
                return
            self._buffer = self._buffer[total:]
            assert self._transport is not None
            self._transport.write(answer(_signing_key_id(headers)))


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_NoOpProtocol, "127.0.0.1", 0, backlog=512)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def running_noop_server(env: dict[str, str]) -> contextlib.AbstractContextManager[str]:
    """Run ``python -m bench.noop_server`` as a child process; yield its URL."""
    from bench.server import running_child_server  # not imported by the server process itself

    return running_child_server("bench.noop_server", env)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve())
