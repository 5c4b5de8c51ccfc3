"""Credentials as a local service: ``serve_credentials`` and ``assume-role-chain serve``.

Real clients only: the AWS CLI v1 (in its own environment, ``.venv-awscli``:
it pins its own botocore) and child Python processes with a plain
``boto3.Session()``, against the in-process moto server.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import http.client
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import botocore.credentials
import botocore.exceptions
import pytest
import time_machine

import assume_role_chain as arc
from tests.conftest import ACCOUNT, role_arn
from tests.hardening import Emissions, Secrets, assert_no_leaks, captured

SCRIPT = str(Path(sys.executable).parent / "assume-role-chain")
ROOT = Path(__file__).resolve().parent.parent
AWSCLI_VENV = ROOT / ".venv-awscli"
HAS_ACCOUNT_ID = len(botocore.credentials.ReadOnlyCredentials._fields) > 3


@pytest.fixture(scope="session")
def aws_cli() -> str:
    """The AWS CLI v1, installed in its own environment (it pins its own botocore)."""
    aws = AWSCLI_VENV / "bin" / "aws"
    with open(ROOT / ".venv-awscli.lock", "a") as lock:  # pytest-xdist workers: one of them installs it
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not aws.exists():
            subprocess.run([sys.executable, "-m", "venv", str(AWSCLI_VENV)], check=True, timeout=300)
            subprocess.run([str(AWSCLI_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "awscli"], check=True, timeout=900)
    return str(aws)


@pytest.fixture
def served(parent: boto3.Session) -> Iterator[arc.CredentialsServer]:
    with arc.serve_credentials(arc.assume_role(parent, role_arn("A"), RoleSessionName="served")) as endpoint:
        yield endpoint


def get(url: str, headers: dict[str, str | None], method: str = "GET") -> tuple[int, bytes]:
    """One raw HTTP request (``None`` drops a header http.client would add)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        skip_host = "Host" in headers
        connection.putrequest(method, parts.path, skip_host=skip_host)
        for name, value in headers.items():
            if value is not None:
                connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def fetch(endpoint: arc.CredentialsServer) -> dict[str, str]:
    status, body = get(endpoint.url, {"Authorization": endpoint.token})
    assert status == 200
    return dict(json.loads(body))


def run_serve(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, "serve", *args], capture_output=True, text=True, timeout=timeout)


CHILD_BOTO3 = textwrap.dedent("""
    import os, boto3
    assert "AWS_ACCESS_KEY_ID" not in os.environ and "AWS_PROFILE" not in os.environ
    print(boto3.Session().client("sts").get_caller_identity()["Arn"])
""")


# -- real clients ------------------------------------------------------------


def test_the_aws_cli_sees_the_role_through_exec(aws_env: str, aws_cli: str, sts_calls: Callable[[], int]) -> None:
    result = run_serve(
        role_arn("A"), role_arn("B"), "--RoleSessionName", "served",
        "--exec", "--", aws_cli, "sts", "get-caller-identity", "--endpoint-url", aws_env, "--output", "json",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/B/served"
    assert sts_calls() == 2  # one AssumeRole per hop, however often the CLI asked


def test_a_plain_boto3_child_sees_the_role_and_none_of_the_parent_keys(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "not-for-the-child")
    Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        "[not-for-the-child]\naws_access_key_id = AKIAPROFILEEXAMPLE00\naws_secret_access_key = profile-secret-never-printed\n"
    )
    result = run_serve(role_arn("A"), "--RoleSessionName", "served", "--exec", sys.executable, "-c", CHILD_BOTO3)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"arn:aws:sts::{ACCOUNT}:assumed-role/A/served"


def test_fifty_child_requests_cost_one_assume_role(served: arc.CredentialsServer, sts_calls: Callable[[], int]) -> None:
    child = textwrap.dedent("""
        import json, os, sys, urllib.request
        keys = set()
        for _ in range(50):
            request = urllib.request.Request(os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
                                             headers={"Authorization": os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]})
            keys.add(json.load(urllib.request.urlopen(request, timeout=10))["AccessKeyId"])
        import boto3
        print(len(keys), boto3.Session().client("sts").get_caller_identity()["Arn"])
    """)
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_ACCESS") and not name.startswith("AWS_SECRET")}
    result = subprocess.run([sys.executable, "-c", child], env={**env, **served.env}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", f"arn:aws:sts::{ACCOUNT}:assumed-role/A/served"]
    assert sts_calls() == 1


def test_requests_across_a_refresh_cost_one_assume_role_per_lifetime(
    parent: boto3.Session, clock: time_machine.Traveller, sts_calls: Callable[[], int]
) -> None:
    session = arc.assume_role(parent, role_arn("A"), DurationSeconds=900)
    with arc.serve_credentials(session) as endpoint:
        first = [fetch(endpoint) for _ in range(25)]
        clock.shift(dt.timedelta(seconds=800))  # inside the advisory window of 900 s credentials
        second = [fetch(endpoint) for _ in range(25)]
    assert sts_calls() == 2
    assert len({json.dumps(body, sort_keys=True) for body in first}) == 1  # one generation, never mixed
    assert len({json.dumps(body, sort_keys=True) for body in second}) == 1
    assert first[0]["AccessKeyId"] != second[0]["AccessKeyId"]
    assert second[0]["Expiration"] == "2026-11-21T12:28:20Z"


def test_the_answer_is_the_container_credentials_json(served: arc.CredentialsServer) -> None:
    body = fetch(served)
    expected = {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"} | ({"AccountId"} if HAS_ACCOUNT_ID else set())
    assert set(body) == expected
    assert dt.datetime.strptime(body["Expiration"], "%Y-%m-%dT%H:%M:%SZ")
    assert body.get("AccountId", ACCOUNT) == ACCOUNT
    assert served.env == {"AWS_CONTAINER_CREDENTIALS_FULL_URI": served.url, "AWS_CONTAINER_AUTHORIZATION_TOKEN": served.token}
    assert served.url.startswith("http://127.0.0.1:")
    assert served.token not in repr(served)


# -- refusals ------------------------------------------------------------------


def test_wrong_missing_and_replayed_tokens_get_403_and_no_body(parent: boto3.Session, sts_calls: Callable[[], int]) -> None:
    session = arc.assume_role(parent, role_arn("A"))
    with arc.serve_credentials(session) as earlier:
        earlier_token, earlier_url = earlier.token, earlier.url
    with arc.serve_credentials(session) as endpoint:
        assert endpoint.token != earlier_token
        for headers in ({"Authorization": "x" * 43}, {}, {"Authorization": earlier_token},
                        {"Authorization": endpoint.token[:-1]}, {"Authorization": f"Bearer {endpoint.token}"}):
            assert get(endpoint.url, headers) == (403, b"")
        old_path = urllib.parse.urlsplit(earlier_url).path
        assert get(endpoint.url.replace(urllib.parse.urlsplit(endpoint.url).path, old_path), {"Authorization": endpoint.token}) == (403, b"")
    assert sts_calls() == 0  # a refused request fetches nothing


def test_a_non_loopback_host_header_is_refused(served: arc.CredentialsServer) -> None:
    port = urllib.parse.urlsplit(served.url).port
    for host in ("attacker.example", f"attacker.example:{port}", f"127.0.0.1.attacker.example:{port}", f"10.0.0.1:{port}"):
        assert get(served.url, {"Authorization": served.token, "Host": host}) == (403, b"")
    assert get(served.url, {"Authorization": served.token, "Host": f"localhost:{port}"})[0] == 200


def test_only_get_on_the_one_path(served: arc.CredentialsServer) -> None:
    for method in ("POST", "PUT", "DELETE", "HEAD", "OPTIONS"):
        assert get(served.url, {"Authorization": served.token}, method)[0] == 403
    status, body = get(served.url, {"Authorization": served.token}, "BREW")
    assert status >= 400 and body == b""
    for path in ("/", "/credentials/", "/credentials", "/../etc/passwd"):
        assert get(served.url.rsplit("/credentials/", 1)[0] + path, {"Authorization": served.token}) == (403, b"")


def test_http_server_is_imported_only_when_serving(aws_env: str) -> None:
    """A Lambda's cold start does not pay for http.server: it comes with the first endpoint."""
    probe = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import sys, boto3
        import assume_role_chain as arc
        print(sorted(name for name in ("http.server", "socketserver") if name in sys.modules))
        session = arc.assume_role(boto3.Session(), {role_arn("A")!r})
        with arc.serve_credentials(session):
            print("http.server" in sys.modules)
    """)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split("\n")[:2] == ["[]", "True"]


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"host": "0.0.0.0"}, "host"),
    ({"host": "192.168.1.10"}, "host"),
    ({"host": "example.com"}, "host"),
    ({"port": 70000}, "port"),
    ({"port": "80"}, "port"),
    ({"token": "short"}, "token"),
    ({"token": "has a space in the middle"}, "token"),
])
def test_bad_arguments_are_refused_before_serving(parent: boto3.Session, kwargs: dict[str, object], param: str) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError, match=f"Invalid {param}"):
        arc.serve_credentials(parent, **kwargs)  # type: ignore[arg-type]


def test_a_given_token_and_ipv6_loopback(served: arc.CredentialsServer, parent: boto3.Session) -> None:
    session = arc.assume_role(parent, role_arn("A"))
    with arc.serve_credentials(session, token="a-token-of-my-own-choosing") as endpoint:
        assert endpoint.token == "a-token-of-my-own-choosing"
        assert fetch(endpoint)["AccessKeyId"]
    try:
        endpoint6 = arc.serve_credentials(session, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with endpoint6:
        assert endpoint6.url.startswith("http://[::1]:")
        assert fetch(endpoint6)["AccessKeyId"]


def test_requests_are_logged_at_debug_without_token_or_secrets(served: arc.CredentialsServer) -> None:
    secrets = Secrets()
    secrets.add(served.token, "credential")
    with captured(Emissions(), everything=False) as emissions:
        body = fetch(served)
        get(served.url, {"Authorization": "wrong-token-wrong-token"})
    secrets.add_credentials({"SecretAccessKey": body["SecretAccessKey"], "SessionToken": body["Token"]})
    lines = [text for _, source, text in emissions.items if "credentials endpoint" in text]
    assert any("GET -> 200" in line for line in lines) and any("GET -> 403" in line for line in lines)
    assert_no_leaks(emissions, secrets)


def test_closed_endpoint_releases_the_port(parent: boto3.Session) -> None:
    endpoint = arc.serve_credentials(arc.assume_role(parent, role_arn("A")))
    endpoint.close()
    endpoint.close()  # idempotent
    with pytest.raises(OSError):
        get(endpoint.url, {"Authorization": endpoint.token})


# -- the command line ----------------------------------------------------------


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_exports_and_stops_cleanly_on_a_signal(aws_env: str, stop: signal.Signals) -> None:
    server = subprocess.Popen([SCRIPT, "serve", role_arn("A"), "--RoleSessionName", "served"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline(), server.stdout.readline()]
        variables = dict(shlex.split(line)[1].split("=", 1) for line in lines)
        assert [shlex.split(line)[0] for line in lines] == ["export", "export"]
        assert set(variables) == {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN"}
        status, body = get(variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"], {"Authorization": variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"]})
        assert status == 200 and json.loads(body)["AccessKeyId"]
        server.send_signal(stop)
        _, stderr = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, stderr
    assert variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"] not in stderr
    with pytest.raises(OSError):
        get(variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"], {"Authorization": variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"]})


def test_sixty_four_clients_connecting_while_the_server_is_paused_are_all_answered(aws_env: str) -> None:
    """Many tools start together (a container's entrypoint, a test matrix): connections that
    arrive before the server accepts wait in the kernel's queue instead of being dropped."""
    server = subprocess.Popen([SCRIPT, "serve", role_arn("A")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    clients: list[http.client.HTTPConnection] = []
    try:
        assert server.stdout is not None
        variables = dict(shlex.split(server.stdout.readline())[1].split("=", 1) for _ in range(2))
        url = urllib.parse.urlsplit(variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"])
        server.send_signal(signal.SIGSTOP)  # nothing is accepted: every connection waits in the backlog
        for _ in range(64):
            clients.append(http.client.HTTPConnection(url.hostname or "", url.port, timeout=2))
            clients[-1].connect()  # a full backlog drops the handshake: this times out
        server.send_signal(signal.SIGCONT)
        answers = []
        for client in clients:
            client.request("GET", url.path, headers={"Authorization": variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"]})
            response = client.getresponse()
            answers.append((response.status, json.loads(response.read())["AccessKeyId"]))
    finally:
        for client in clients:
            client.close()
        server.send_signal(signal.SIGCONT)
        server.terminate()
        server.communicate(timeout=30)
    assert len({key for _, key in answers}) == 1 and [status for status, _ in answers] == [200] * 64


def test_exec_exits_with_the_child_status_and_stops_serving(aws_env: str) -> None:
    child = "import os, sys; print(os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI']); sys.exit(7)"
    result = run_serve(role_arn("A"), "--exec", "--", sys.executable, "-c", child)
    assert result.returncode == 7, result.stderr
    with pytest.raises(OSError):
        get(result.stdout.strip(), {})


def test_exec_forwards_sigterm_to_the_child(aws_env: str, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    child = f"import pathlib, time; pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    server = subprocess.Popen([SCRIPT, "serve", role_arn("A"), "--exec", "--", sys.executable, "-c", child])
    try:
        for _ in range(600):
            if ready.exists() or server.poll() is not None:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if server.poll() is None:
            server.kill()


def test_token_file(aws_env: str, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("a-token-from-a-file-0123\n")
    child = "import os; print(os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN'])"
    result = run_serve(role_arn("A"), "--token-file", str(token_file), "--exec", "--", sys.executable, "-c", child)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "a-token-from-a-file-0123"


@pytest.mark.parametrize(("args", "message"), [
    (["--exec"], "--exec needs a command"),
    (["--exec", "--"], "--exec needs a command"),
    (["--port", "70000", "--exec", "true"], "Invalid port"),
    (["--token-file", "/nonexistent/token", "--exec", "true"], "Invalid --token-file"),
    (["--json", "--exec", "true"], "unrecognized arguments"),
])
def test_serve_bad_arguments_exit_2(aws_env: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str, sts_calls: Callable[[], int]) -> None:
    assert arc.main(["serve", role_arn("A"), *args]) == 2
    assert message in capsys.readouterr().err
    assert sts_calls() == 0


def test_exec_of_a_missing_command_exits_127(aws_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert arc.main(["serve", role_arn("A"), "--exec", "--", "/nonexistent/command"]) == 127
    assert "cannot run" in capsys.readouterr().err


def test_the_credentials_command_is_unchanged(aws_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert arc.main([role_arn("A"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["Version"] == 1
