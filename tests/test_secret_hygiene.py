"""No secret access key, session token, MFA code, PKCS#11 PIN or private key in anything we emit.

Each test drives error paths with every logger at DEBUG and records what was
emitted: log records (botocore's, boto3's and urllib3's wire logs included:
the library redacts them; the test servers' DEBUG/INFO records excepted, see
docs/RELIABILITY.md), warnings, str/repr/notes of exceptions and of the
exceptions they chain, reprs of sessions, credentials objects, configs,
caches, events and providers, and the stderr of both command lines run as
real processes. Then no secret the test handled may appear in any of it.

The last tests check the session-wide plugin (``tests/hygiene_plugin.py``) that
applies the same check to the whole suite.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest

import assume_role_chain as arc
import iot_x509
from tests.conftest import role_arn
from tests.hygiene_plugin import Emissions, Secrets, assert_no_leaks, captured
from tests.iot import iot_standin
from tests.servers import RawResponder, RefusingSTS, closed_port, http_answer, require

ROOT = Path(__file__).resolve().parents[1]
GOOD = role_arn("Hygiene")
SERIAL = "arn:aws:iam::123456789012:mfa/hygiene"
PARENT_SECRET = "parent-secret-never-printed"
PARENT_TOKEN = "FwoGZXIvYXdzEParentSessionTokenForHygieneTests0123456789"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYHYGIENE01"
TOKEN = "IQoJb3JpZ2luX2VjEHygieneSessionTokenNeverToBePrinted0123456789abcdef"
CREDENTIALS_ENDPOINT = "c2abc123example.credentials.iot.eu-west-1.amazonaws.com"


@dataclass
class Hygiene:
    emissions: Emissions
    secrets: Secrets
    events: list[arc.RefreshEvent]

    def exception(self, raised: pytest.ExceptionInfo[BaseException]) -> None:
        self.emissions.add_exception(raised.value)

    def check(self) -> None:
        self.emissions.add_repr(*self.events)
        assert_no_leaks(self.emissions, self.secrets)


@pytest.fixture
def hygiene() -> Iterator[Hygiene]:
    """Everything emitted while the test runs, every logger at DEBUG, refresh events; secrets to look for."""
    secrets = Secrets()
    for value in (PARENT_SECRET, PARENT_TOKEN, SECRET, TOKEN):
        secrets.add(value, "credential")
    events: list[arc.RefreshEvent] = []
    arc.add_refresh_listener(events.append)
    try:
        with captured(Emissions()) as emissions:
            yield Hygiene(emissions, secrets, events)
    finally:
        arc.remove_refresh_listener(events.append)


def frozen(session: boto3.Session) -> Any:
    return session.get_credentials().get_frozen_credentials()  # type: ignore[union-attr]


# -- refresh failures -----------------------------------------------------------------------


def test_assume_role_refused_with_a_session_token_and_an_mfa_code(hygiene: Hygiene, aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", PARENT_TOKEN)
    hygiene.secrets.add("482901", "MFA code")
    refusing = RefusingSTS()
    try:
        session = arc.assume_role(boto3.Session(), GOOD, SerialNumber=SERIAL, TokenCode="482901",
                                  sts_client_kwargs={"endpoint_url": refusing.url})
        with pytest.raises(botocore.exceptions.ClientError) as raised:
            frozen(session)
        hygiene.exception(raised)
        hygiene.emissions.add_repr(session, session.get_credentials(), session.assume_role_parent_session)  # type: ignore[attr-defined]
    finally:
        refusing.stop()
    hygiene.check()


def test_static_stability_then_failure_with_moto_issued_credentials(hygiene: Hygiene, aws_env: str) -> None:
    sts = boto3.client("sts")
    refusing = RefusingSTS()
    refused = boto3.client("sts", endpoint_url=refusing.url)
    failing = [False]

    def fetch() -> dict[str, Any]:
        client = refused if failing[0] else sts
        credentials = dict(client.assume_role(RoleArn=GOOD, RoleSessionName="hygiene", DurationSeconds=900)["Credentials"])
        hygiene.secrets.add_credentials(credentials)
        return credentials

    now = [dt.datetime.now(dt.timezone.utc)]
    try:
        session = arc.refreshable_session(fetch, clock=lambda: now[0])
        first = frozen(session)
        failing[0] = True
        now[0] += dt.timedelta(seconds=700)  # advisory window: warning, still served
        assert frozen(session).secret_key == first.secret_key
        now[0] += dt.timedelta(seconds=190)  # inside the safety margin: the error
        with pytest.raises(botocore.exceptions.ClientError) as raised:
            frozen(session)
        hygiene.exception(raised)
        hygiene.emissions.add_repr(session, session.get_credentials())
    finally:
        refusing.stop()
    assert any("still serving" in text for _, _, text in hygiene.emissions.items)
    hygiene.check()


# -- MFA command failures ---------------------------------------------------------------------


def mfa_script(body: str) -> list[str]:
    """A command whose code (built at run time: not in its argv) is ``482000 + n``."""
    return [sys.executable, "-c", "import sys, time\n" + textwrap.dedent(body)]


MFA_FAILURES: dict[str, tuple[Any, dict[str, Any], str, str]] = {
    "exit-status": (mfa_script("print(482000 + 911, file=sys.stderr); sys.exit(3)"), {}, "482911", "exited with status 3"),
    "timeout": (mfa_script("print(482000 + 912, flush=True); time.sleep(5)"), {"timeout": 0.5}, "482912", "timed out"),
    "no-code-on-stdout": (mfa_script("print('no code'); print(482000 + 913, file=sys.stderr)"), {}, "482913", "printed no six-digit code"),
    "function-wrong-code": (lambda: "4829140", {}, "4829140", "six digits"),
}


@pytest.mark.parametrize("case", list(MFA_FAILURES))
def test_mfa_provider_failures(hygiene: Hygiene, parent: boto3.Session, case: str) -> None:
    provider, kwargs, code, message = MFA_FAILURES[case]
    hygiene.secrets.add(code, "MFA code")
    session = arc.assume_role(parent, GOOD, SerialNumber=SERIAL, mfa_token_provider=provider, mfa_token_provider_kwargs=kwargs)
    with pytest.raises(arc.MFATokenError, match=message) as raised:
        frozen(session)
    hygiene.exception(raised)
    hygiene.check()


def test_a_used_static_code_is_never_echoed_when_a_new_one_is_needed(hygiene: Hygiene, parent: boto3.Session) -> None:
    hygiene.secrets.add("482915", "MFA code")
    now = [dt.datetime.now(dt.timezone.utc)]
    session = arc.assume_role(parent, GOOD, SerialNumber=SERIAL, TokenCode="482915", DurationSeconds=900, clock=lambda: now[0])
    frozen(session)
    now[0] += dt.timedelta(seconds=890)
    with pytest.raises(arc.MFATokenError, match="stdin is not a terminal") as raised:
        frozen(session)
    hygiene.exception(raised)
    hygiene.check()


# -- credentials of a bad shape ------------------------------------------------------------------

EXPIRY = dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)
BAD_SHAPES: dict[str, Any] = {
    "secret-in-expiration": {"AccessKeyId": "ASIAHYGIENE", "SecretAccessKey": SECRET, "SessionToken": TOKEN, "Expiration": SECRET},
    "token-in-expiry-time": {"access_key": "ASIAHYGIENE", "secret_key": SECRET, "token": TOKEN, "expiry_time": TOKEN},
    "missing-token": {"AccessKeyId": "ASIAHYGIENE", "SecretAccessKey": SECRET, "Expiration": EXPIRY},
    "secret-not-a-string": {"AccessKeyId": "ASIAHYGIENE", "SecretAccessKey": [SECRET], "SessionToken": TOKEN, "Expiration": EXPIRY},
    "not-a-mapping": [SECRET, TOKEN],
    "expired": {"AccessKeyId": "ASIAHYGIENE", "SecretAccessKey": SECRET, "SessionToken": TOKEN, "Expiration": "2001-01-01T00:00:00Z"},
}


@pytest.mark.parametrize("shape", list(BAD_SHAPES))
def test_credentials_of_a_bad_shape(hygiene: Hygiene, shape: str) -> None:
    session = arc.refreshable_session(lambda: BAD_SHAPES[shape], source_name="broker")
    with pytest.raises(arc.InvalidCredentialsError) as raised:
        frozen(session)
    hygiene.exception(raised)
    hygiene.emissions.add_repr(session.get_credentials())
    hygiene.check()


def test_a_cache_entry_of_a_bad_shape(hygiene: Hygiene, tmp_path: Path) -> None:
    cache = arc.JSONFileCache(tmp_path)
    cache["broker"] = {"AccessKeyId": "ASIAHYGIENE", "SecretAccessKey": SECRET, "SessionToken": TOKEN, "Expiration": TOKEN}

    def fetch() -> dict[str, Any]:
        return {"AccessKeyId": "ASIAFRESH", "SecretAccessKey": SECRET[::-1], "SessionToken": TOKEN[::-1], "Expiration": EXPIRY}

    hygiene.secrets.add(SECRET[::-1], "credential")
    session = arc.refreshable_session(fetch, cache=cache, cache_key="broker")
    assert frozen(session).access_key == "ASIAFRESH"
    hygiene.emissions.add_repr(cache, session.get_credentials())
    hygiene.check()


# -- command lines, as real processes --------------------------------------------------------


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_assume_role_chain_command_line_errors(hygiene: Hygiene, aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", PARENT_TOKEN)
    for code in ("482921", "482922", "48292x"):
        hygiene.secrets.add(code, "MFA code")
    refusing = RefusingSTS()
    cli = [sys.executable, "-m", "assume_role_chain", GOOD, "--SerialNumber", SERIAL]
    try:
        refused = run([*cli, "--TokenCode", "482921", "--sts-client-kwargs", json.dumps({"endpoint_url": refusing.url})])
    finally:
        refusing.stop()
    command = run([*cli, "--mfa-command", f"{sys.executable} -c 'import sys; print(482000 + 922, file=sys.stderr); sys.exit(1)'"])
    invalid = run([*cli, "--TokenCode", "48292x"])
    assert (refused.returncode, command.returncode, invalid.returncode) == (4, 4, 2), (refused.stderr, command.stderr, invalid.stderr)
    for result in (refused, command, invalid):
        hygiene.emissions.add("command-line stderr", result.stderr)
    hygiene.check()


# -- IoT errors -----------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class IoTWorld:
    pki: iot_standin.TestPKI
    device: iot_standin.Device
    other: iot_standin.Device
    server: RawResponder


@pytest.fixture(scope="module")
def iot() -> Iterator[IoTWorld]:
    pki = iot_standin.TestPKI()
    world = IoTWorld(pki, iot_standin.issue_device(pki.device_ca, "hygiene", "ec"),
                     iot_standin.issue_device(pki.device_ca, "other", "ec"), RawResponder(pki.server_context()))
    yield world
    world.server.stop()


def credentials_answer(cut: int = 0, **fields: Any) -> bytes:
    """A credentials answer; ``cut`` bytes short of its Content-Length."""
    credentials = {"accessKeyId": "ASIAHYGIENEEXAMPLE00", "secretAccessKey": SECRET, "sessionToken": TOKEN,
                   "expiration": "2099-01-01T00:00:00Z", **fields}
    body = json.dumps({"credentials": credentials}).encode()
    return http_answer(200, [(b"Content-Length", str(len(body)).encode())], body[:len(body) - cut])


IOT_FAILURES: dict[str, tuple[bytes, type[iot_x509.IoTError]]] = {
    "http-403": (http_answer(403, [], b'{"message": "Certificate is not active"}'), iot_x509.IoTHTTPError),
    "bad-expiration": (credentials_answer(expiration=SECRET), iot_x509.IoTResponseError),
    "bad-access-key": (credentials_answer(accessKeyId=SECRET), iot_x509.IoTResponseError),
    "missing-token": (credentials_answer(sessionToken=None), iot_x509.IoTResponseError),
    "cut-short": (credentials_answer(cut=40), iot_x509.IoTResponseError),
    "oversized": (credentials_answer(sessionToken=TOKEN * 1200), iot_x509.IoTResponseError),
}


@pytest.mark.parametrize("transport", ["ssl", "awscrt"])
def test_iot_errors(hygiene: Hygiene, iot: IoTWorld, tmp_path: Path, transport: iot_x509.Transport) -> None:
    hygiene.secrets.add_pem_key(iot.device.key_pem)

    def provider(**kwargs: Any) -> iot_x509.IoTCredentialsProvider:
        settings = {"endpoint": iot.server.endpoint, "ca": iot.pki.server_ca_pem, "timeout": 2.0, "transport": transport, **kwargs}
        return iot_x509.IoTCredentialsProvider(iot.device.cert_pem, iot.device.key_pem, "device-role", thing_name="hygiene", **settings)

    iot.server.stall = False
    for answer, error in IOT_FAILURES.values():
        iot.server.answer = answer
        with pytest.raises(error) as raised:
            provider()()
        hygiene.exception(raised)
    failures: list[tuple[Callable[[], Any], type[iot_x509.IoTError]]] = [
        (provider(ca=iot.pki.rogue_ca.cert_pem.bytes(), timeout=4.0), iot_x509.IoTTLSError),
        (provider(endpoint=f"localhost:{closed_port()}"), iot_x509.IoTConnectionError),
    ]
    for call, error in failures:
        with pytest.raises(error) as raised:
            call()
        hygiene.exception(raised)
    iot.server.stall = True
    try:
        with pytest.raises(iot_x509.IoTTimeoutError) as raised:
            provider(timeout=0.5)()
        hygiene.exception(raised)
    finally:
        iot.server.stall = False
    iot.server.answer = credentials_answer()
    session = iot_x509.iot_session(iot.device.cert_pem, iot.device.key_pem, "device-role", endpoint=iot.server.endpoint,
                                   ca=iot.pki.server_ca_pem, transport=transport, region_name="eu-west-1",
                                   cache=arc.JSONFileCache(tmp_path))
    assert frozen(session).secret_key == SECRET
    hygiene.emissions.add_repr(session, session.get_credentials(), provider(), provider().endpoint)
    hygiene.check()


def test_iot_key_errors_never_echo_the_key(hygiene: Hygiene, iot: IoTWorld, tmp_path: Path) -> None:
    key, cert = iot.device.key_pem, iot.device.cert_pem
    hygiene.secrets.add_pem_key(key)
    base64_only = "".join(key.decode().splitlines()[1:-1])
    key_file = tmp_path / "key.txt"
    key_file.write_text(base64_only)
    attempts: list[dict[str, Any]] = [
        {"cert": key, "key": key},  # swapped or repeated
        {"cert": base64_only, "key": key},
        {"key": base64_only},
        {"key": str(key_file)},
        {"key": iot.other.key_pem},
        {"key": key.replace(b"PRIVATE KEY", b"ENCRYPTED PRIVATE KEY")},
    ]
    for attempt in attempts:
        pair = {"cert": cert, "key": key, **attempt}
        with pytest.raises(iot_x509.IoTConfigError) as raised:
            iot_x509.iot_session(pair["cert"], pair["key"], "device-role", endpoint=CREDENTIALS_ENDPOINT)
        hygiene.exception(raised)
        with pytest.raises(iot_x509.IoTConfigError) as raised:
            iot_x509.mqtt_connection("a1-ats.iot.eu-west-1.amazonaws.com", "thing", pair["cert"], pair["key"])
        hygiene.exception(raised)
    hygiene.check()


def test_iot_command_line_errors(hygiene: Hygiene, iot: IoTWorld, tmp_path: Path) -> None:
    hygiene.secrets.add_pem_key(iot.device.key_pem)
    files = {name: tmp_path / f"{name}.pem" for name in ("cert", "key", "ca")}
    for name, data in (("cert", iot.device.cert_pem), ("key", iot.device.key_pem), ("ca", iot.pki.server_ca_pem)):
        files[name].write_bytes(data)
    cli = [sys.executable, "-m", "iot_x509", "--cert", str(files["cert"]), "--role-alias", "device-role",
           "--endpoint", iot.server.endpoint, "--ca", str(files["ca"]), "--timeout", "3"]
    iot.server.answer = credentials_answer(expiration=TOKEN)
    results = [
        run([*cli, "--key", str(files["key"])]),
        run([*cli, "--key", "".join(iot.device.key_pem.decode().splitlines()[1:-1])]),
        run([*cli, "--key", str(files["cert"])]),
    ]
    assert [result.returncode for result in results] == [1, 1, 1], [result.stderr for result in results]
    for result in results:
        hygiene.emissions.add("command-line stderr", result.stderr)
    hygiene.check()


# -- PKCS#11 PIN -----------------------------------------------------------------------------------

PKCS11_SCRIPT = '''
import logging, os, sys
import iot_x509
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
cert, lib, pin = open(sys.argv[1], "rb").read(), sys.argv[2], sys.argv[3]
config = iot_x509.Pkcs11Config(pkcs11_lib=lib, user_pin=pin, token_label="hygiene", private_key_label="key")
print(repr(config), config)
for call in (lambda: iot_x509.iot_session(cert, None, "device-role", endpoint=sys.argv[4], pkcs11=config),
             lambda: iot_x509.IoTCredentialsProvider(cert, None, "device-role", endpoint=sys.argv[4], pkcs11=config),
             lambda: iot_x509.mqtt_connection("a1-ats.iot.eu-west-1.amazonaws.com", "thing", cert, pkcs11=config)):
    try:
        print("ok", repr(call()))
    except iot_x509.IoTError as error:
        print("error", type(error).__name__, error, repr(error), error.__notes__ if hasattr(error, "__notes__") else "")
'''


def softhsm_library() -> str | None:
    candidates = (os.environ.get("SOFTHSM2_LIB", ""), "/usr/lib/softhsm/libsofthsm2.so",
                  "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so", "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so")
    return next((path for path in candidates if path and os.path.isfile(path)), None)


def test_a_wrong_pkcs11_pin_is_never_echoed(hygiene: Hygiene, iot: IoTWorld, tmp_path: Path) -> None:
    lib = softhsm_library()
    require(lib is not None and shutil.which("softhsm2-util") is not None, "SoftHSM2 (apt-get install softhsm2)")
    assert lib is not None
    right, wrong = "pin-Rq7vX2k9", "pin-Wm4zT8c1"
    hygiene.secrets.add(right, "PKCS#11 PIN")
    hygiene.secrets.add(wrong, "PKCS#11 PIN")
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {"SOFTHSM2_CONF": str(conf)}
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    key.write_bytes(iot.device.key_pem)
    cert.write_bytes(iot.device.cert_pem)
    for args in (["--init-token", "--free", "--label", "hygiene", "--so-pin", "so-pin-1234", "--pin", right],
                 ["--import", str(key), "--token", "hygiene", "--label", "key", "--id", "01", "--pin", right]):
        setup = run(["softhsm2-util", *args], env)
        assert setup.returncode == 0, setup.stdout + setup.stderr
    key.unlink()
    script = [sys.executable, "-c", PKCS11_SCRIPT, str(cert), lib]
    good, bad = run([*script, right, iot.server.endpoint], env), run([*script, wrong, iot.server.endpoint], env)
    assert good.stdout.count("ok ") == 3 and "PIN_INCORRECT" not in good.stdout, good.stdout + good.stderr
    assert bad.stdout.count("error IoTConfigError pkcs11: AWS_ERROR_PKCS11_CKR_PIN_INCORRECT") == 3, bad.stdout + bad.stderr
    iot.server.answer = http_answer(403, [], b'{"message": "denied"}')
    cli = run([sys.executable, "-m", "iot_x509", "--cert", str(cert), "--role-alias", "device-role", "--endpoint",
               iot.server.endpoint, "--pkcs11-lib", lib, "--token-label", "hygiene", "--private-key-label", "key"],
              {**env, iot_x509.PIN_ENV: wrong})
    assert cli.returncode == 1 and "PIN_INCORRECT" in cli.stderr, cli.stderr
    for result in (good, bad, cli):
        hygiene.emissions.add("process stdout (reprs, errors)", result.stdout)
        hygiene.emissions.add("process stderr (DEBUG logs)", result.stderr)
    hygiene.check()


# -- botocore's DEBUG log ----------------------------------------------------------------------

DEBUG_LOGGING = textwrap.dedent(
    """
    import json, logging, sys, boto3
    if sys.argv[1] == "before":
        boto3.set_stream_logger("botocore", logging.DEBUG)
    import assume_role_chain as arc
    if sys.argv[1] == "after":
        boto3.set_stream_logger("botocore", logging.DEBUG)
    first = arc.assume_role(boto3.Session(), sys.argv[2], SerialNumber=sys.argv[3], TokenCode="482951")
    second = arc.assume_role(first, sys.argv[2])  # signed with the first session's token
    second.client("sts").get_caller_identity()
    print(json.dumps([arc.get_credentials(first), arc.get_credentials(second)]))
    """
)


@pytest.mark.parametrize("set_up", ["before", "after"], ids=["logging-set-up-before-import", "after-import"])
def test_botocore_debug_log_shows_no_secret(aws_env: str, set_up: str) -> None:
    env = {**os.environ, "AWS_SESSION_TOKEN": PARENT_TOKEN}
    result = subprocess.run([sys.executable, "-c", DEBUG_LOGGING, set_up, GOOD, SERIAL],
                            capture_output=True, text=True, timeout=120, check=False, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    secrets = Secrets()
    secrets.add("482951", "MFA code")
    for value in (PARENT_SECRET, PARENT_TOKEN):
        secrets.add(value, "credential")
    for credentials in json.loads(result.stdout):
        secrets.add(credentials["secret_key"], "credential")
        secrets.add(credentials["token"], "credential")
    log = result.stderr
    assert "Response body" in log and "<SecretAccessKey>***</SecretAccessKey>" in log  # the log was written, redacted
    assert "'X-Amz-Security-Token': b'***'" in log and "'TokenCode': '***'" in log
    emissions = Emissions()
    emissions.add("botocore DEBUG log on stderr", log)
    assert_no_leaks(emissions, secrets)


def test_botocore_debug_records_reach_no_handler_with_a_secret(hygiene: Hygiene, aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same in-process, every logger at DEBUG: what every handler receives."""
    monkeypatch.setenv("AWS_SESSION_TOKEN", PARENT_TOKEN)
    hygiene.secrets.add("482952", "MFA code")
    first = arc.assume_role(boto3.Session(), GOOD, SerialNumber=SERIAL, TokenCode="482952")
    second = arc.assume_role(first, GOOD)
    second.client("sts").get_caller_identity()
    for session in (first, second):
        credentials = arc.get_credentials(session)
        hygiene.secrets.add_credentials({"secret_key": credentials["secret_key"], "token": credentials["token"]})
    assert any(source == "log botocore.parsers DEBUG" and "<SecretAccessKey>***" in text
               for _, source, text in hygiene.emissions.items), "botocore's DEBUG records were recorded"
    hygiene.check()


# -- reprs of what the API returns --------------------------------------------------------------


def test_reprs_of_configs_caches_events_and_sessions(hygiene: Hygiene, parent: boto3.Session, tmp_path: Path) -> None:
    hygiene.secrets.add("482931", "MFA code")
    hygiene.secrets.add("pin-Repr5150", "PKCS#11 PIN")
    config = arc.AssumeRoleConfig(RoleArn=GOOD, SerialNumber=SERIAL, TokenCode="482931")
    session = arc.assume_role(parent, config, cache=arc.JSONFileCache(tmp_path))
    credentials = frozen(session)
    hygiene.secrets.add_credentials({"SecretAccessKey": credentials.secret_key, "SessionToken": credentials.token})
    error = RuntimeError("refresh failed")
    hygiene.emissions.add_repr(
        config, arc.STSClientConfig(region_name="eu-west-1"), arc.JSONFileCache(tmp_path), session, session.get_credentials(),
        arc.assume_role_chain(parent, [config, GOOD]), arc.RefreshEvent("source", "failed", None, 0.1, error),
        iot_x509.Pkcs11Config(pkcs11_lib=__file__, user_pin="pin-Repr5150", token_label="t"),
    )
    hygiene.check()


# -- the session-wide plugin --------------------------------------------------------------------

LEAKY_SUITE = '''
import logging, warnings
import pytest
import assume_role_chain as arc

CREDENTIALS = {"AccessKeyId": "ASIAPLUGINTEST", "SecretAccessKey": "plugin-test-secret-0001",
               "SessionToken": "plugin-test-token-0001", "Expiration": 4000000000}

def test_logs_a_secret():
    arc.refreshable_session(lambda: CREDENTIALS).get_credentials().get_frozen_credentials()
    logging.getLogger("assume_role_chain").debug("oops %s", CREDENTIALS["SecretAccessKey"])

def test_warns_a_token():
    warnings.warn("token is " + CREDENTIALS["SessionToken"])

def test_raises_with_a_code():
    arc.assume_role  # the code below reaches the plugin through the MFA code provider
    codes = arc._MFACodes("arn:aws:iam::123456789012:mfa/x", None, lambda: "551177", None)
    assert codes.code() == "551177"
    with pytest.raises(ValueError):
        raise ValueError("code 551177 rejected")

def test_botocore_wire_logs_are_redacted():
    logging.getLogger("botocore").setLevel(logging.DEBUG)
    logging.getLogger("botocore.parsers").debug("Response body: %s", b"<SecretAccessKey>plugin-test-secret-0001</SecretAccessKey>")

def test_botocore_wire_logs_are_checked():
    logging.getLogger("botocore").setLevel(logging.DEBUG)
    logging.getLogger("botocore.endpoint").debug("body: " + CREDENTIALS["SecretAccessKey"])

def test_server_logs_are_excluded():
    logging.getLogger("werkzeug").setLevel(logging.DEBUG)
    logging.getLogger("werkzeug").debug("body: " + CREDENTIALS["SecretAccessKey"])

def test_clean():
    logging.getLogger("assume_role_chain").warning("nothing secret 5511770")
'''


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist-workers"])
def test_the_plugin_fails_a_test_session_that_leaks(tmp_path: Path, workers: list[str]) -> None:
    """Run alone, and under pytest-xdist (tests/run.sh's default run), where each worker checks
    its own tests and the controller reports the leaks of all of them."""
    (tmp_path / "test_leaky.py").write_text(LEAKY_SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.hygiene_plugin", "-p", "no:cacheprovider", *workers, str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "7 passed" in output, output
    assert "secret hygiene: LEAKS" in output
    assert "test_logs_a_secret: credential in log assume_role_chain DEBUG: oops <credential>" in output
    assert "test_warns_a_token: credential in warning UserWarning: token is <credential>" in output
    assert "test_raises_with_a_code: MFA code in exception ValueError: code <MFA code> rejected" in output
    assert "test_botocore_wire_logs_are_checked: credential in log botocore.endpoint DEBUG: body: <credential>" in output
    assert "test_botocore_wire_logs_are_redacted" not in output and "test_server_logs_are_excluded" not in output
    assert "test_clean" not in output
    assert "plugin-test-secret-0001" not in output and "551177 rejected" not in output
