"""Property-based tests (hypothesis): random input gives success or a documented exception, nothing else.

* Random argument values for every public entry point and both command lines.
* Random bytes and random JSON in cache files: reads never raise, and the
  refresh engine still serves credentials.
* Random credential shapes returned by a custom fetch: InvalidCredentialsError.
* Random HTTP status lines, headers and bodies from a hostile IoT
  credentials provider (mutual TLS, both transports): only IoTError.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awscrt.mqtt
import boto3
import botocore.exceptions
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import assume_role_chain as arc
import iot_x509
from tests.conftest import role_arn
from tests.iot import iot_standin
from tests.servers import RawResponder, closed_port, http_answer

GOOD = role_arn("Reader")
SERIAL = "arn:aws:iam::123456789012:mfa/alice"
PVE = botocore.exceptions.ParamValidationError
FIXTURES_REUSED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]


def examples(n: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``n`` examples, no deadline (two busy cores), fixtures shared by the examples."""
    return settings(max_examples=n, deadline=None, suppress_health_check=FIXTURES_REUSED)


# -- strategies ---------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), st.binary(max_size=12), st.timedeltas(),
)
ANYTHING = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
                        max_leaves=6)
JSON = st.recursive(st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats() | st.text(max_size=40),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=16), inner, max_size=4),
                    max_leaves=10)
NAMES = st.from_regex(r"[\w+=,.@-]{2,64}", fullmatch=True)
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "RoleSessionName": NAMES, "SourceIdentity": NAMES,
    "DurationSeconds": st.integers(800, 44000) | st.timedeltas(dt.timedelta(seconds=800), dt.timedelta(seconds=44000)),
    "ExternalId": st.from_regex(r"[\w+=,.@:/-]{2,80}", fullmatch=True),
    "Tags": st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=20), max_size=3)
    | st.lists(st.fixed_dictionaries({"Key": st.text(min_size=1, max_size=9), "Value": st.text(max_size=9)}), max_size=2),
    "TransitiveTagKeys": st.lists(st.text(min_size=1, max_size=10), max_size=3),
    "Policy": st.sampled_from([{"Version": "2012-10-17", "Statement": []}, '{"Version": "2012-10-17", "Statement": []}']),
    "PolicyArns": st.lists(st.sampled_from(["arn:aws:iam::aws:policy/ReadOnlyAccess", {"arn": "arn:aws:iam::aws:policy/A"}]), max_size=2),
    "SerialNumber": st.just(SERIAL), "TokenCode": st.from_regex(r"[0-9]{5,7}", fullmatch=True),
    "ProvidedContexts": st.just([{"ProviderArn": "arn:aws:iam::aws:contextProvider/IdentityCenter", "ContextAssertion": "x" * 8}]),
    "region_name": st.sampled_from([None, True, False, "eu-west-1"]), "cache": st.sampled_from([None, {}]),
    "advisory_timeout": st.floats(0, 1000), "mandatory_timeout": st.floats(0, 700),
    "sts_client_kwargs": st.sampled_from([None, {"region_name": "eu-west-1"}, arc.STSClientConfig(endpoint_url="https://sts.example")]),
    "additional_kwargs": st.sampled_from([None, {}, {"DurationSeconds": 900}]),
    "mfa_token_provider": st.sampled_from([None, "ykman oath accounts code", ["echo", "123456"], lambda: "123456"]),
    "mfa_token_provider_kwargs": st.sampled_from([None, {"timeout": 5}]),
}
ASSUME_ROLE_KWARGS = st.fixed_dictionaries({}, optional={name: value | ANYTHING for name, value in PLAUSIBLE.items()})
ROLE = st.just(GOOD) | ANYTHING | st.fixed_dictionaries({"RoleArn": st.just(GOOD)}, optional={"DurationSeconds": ANYTHING, "Bogus": ANYTHING})


@pytest.fixture
def no_network(connections: list[Any]) -> Callable[[], None]:
    def check() -> None:
        assert connections == [], f"network connection attempted: {connections}"
    return check


def assert_names_a_parameter(error: Exception, names: Any) -> None:
    """The documented error names one of the parameters the caller passed."""
    message = str(error)
    assert any(str(name) in message for name in names if name != ""), f"{message!r} names none of {sorted(map(str, names))}"


def parameter_names(kwargs: dict[str, Any], role_or_roles: Any) -> set[Any]:
    """The parameter names a caller used: keyword arguments, the keys of a role's (or each hop's)
    mapping, and the keys of ``sts_client_kwargs`` and ``additional_kwargs`` (whose problems are
    reported by key, ``sts_client_kwargs``'s for ``STSClientConfig``).
    """
    hops = role_or_roles if isinstance(role_or_roles, list) else [role_or_roles]
    nested = [kwargs.get("sts_client_kwargs"), kwargs.get("additional_kwargs"), *hops]
    return {"STSClientConfig", *kwargs, *(key for mapping in nested if isinstance(mapping, dict) for key in mapping)}


def assert_ours(session: Any) -> Any:
    """A plain boto3 Session whose credentials are this library's (nothing fetched yet)."""
    assert isinstance(session, boto3.Session)
    credentials = session.get_credentials()
    assert credentials is not None and credentials.method == "assume-role-chain"
    return credentials


class Stopped(Exception):
    """Raised by the ``before-send`` hook: the request was recorded and never sent."""


def first_assume_role_request(parent: boto3.Session, credentials: Any) -> dict[str, str]:
    """The form of the AssumeRole request ``credentials`` would send with ``parent``'s credentials (never sent)."""
    sent: list[dict[str, str]] = []

    def record_and_stop(request: Any, **_: Any) -> None:
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        sent.append({name: values[0] for name, values in urllib.parse.parse_qs(body, keep_blank_values=True).items()})
        raise Stopped

    parent.events.register("before-send.sts", record_and_stop)
    with contextlib.suppress(Exception):  # Stopped, as the library reports it: only the recorded request matters here
        credentials.get_frozen_credentials()
    sent = [form for form in sent if form["Action"] != "GetCallerIdentity"]  # with a cache: the parent's principal, asked first
    assert len(sent) == 1 and sent[0]["Action"] == "AssumeRole", sent
    return sent[0]


def assert_request_carries(form: dict[str, str], role_arn: str, kwargs: dict[str, Any], overridden: Any = ()) -> None:
    """The request carries the role and every plain value the caller gave (unless a hop's mapping overrides it)."""
    assert form["RoleArn"] == role_arn
    for name in ("RoleSessionName", "ExternalId", "SourceIdentity"):
        if isinstance(kwargs.get(name), str) and name not in overridden:
            assert form[name] == kwargs[name], name
    duration = kwargs.get("DurationSeconds")
    if "DurationSeconds" not in overridden and "DurationSeconds" not in (kwargs.get("additional_kwargs") or {}):
        if isinstance(duration, dt.timedelta):
            assert form["DurationSeconds"] == str(int(duration.total_seconds()))
        elif isinstance(duration, int) and not isinstance(duration, bool):
            assert form["DurationSeconds"] == str(duration)


# -- arguments of the Python API --------------------------------------------------------------


@examples(120)
@given(role=ROLE, kwargs=ASSUME_ROLE_KWARGS)
@example(role=GOOD, kwargs={"RoleSessionName": "property", "ExternalId": "partner-42", "DurationSeconds": dt.timedelta(hours=1)})
def test_assume_role_with_random_arguments(aws_env: str, no_network: Callable[[], None], role: Any, kwargs: dict[str, Any]) -> None:
    parent = boto3.Session()
    try:
        session = arc.assume_role(parent, role, **kwargs)
    except PVE as error:
        no_network()
        assert_names_a_parameter(error, {"RoleArn", *parameter_names(kwargs, role)})
        return
    credentials = assert_ours(session)
    no_network()
    if "SerialNumber" not in kwargs:  # an MFA code would be asked for
        overridden = set(role) if isinstance(role, dict) else set()
        assert_request_carries(first_assume_role_request(parent, credentials), GOOD, kwargs, overridden)


HOPS = st.lists(st.one_of(st.just(GOOD), ANYTHING, st.fixed_dictionaries({"RoleArn": st.just(GOOD)},
                          optional={"ExternalId": PLAUSIBLE["ExternalId"] | ANYTHING, "Bogus": ANYTHING})), max_size=3)


@examples(100)
@given(roles=HOPS | ANYTHING, kwargs=ASSUME_ROLE_KWARGS)
@example(roles=[{"RoleArn": GOOD, "Bogus": 1}], kwargs={})
@example(roles=[GOOD], kwargs={"RoleSessionName": "chain-hop", "SourceIdentity": "alice", "DurationSeconds": 1800})
def test_assume_role_chain_with_random_arguments(aws_env: str, no_network: Callable[[], None], roles: Any, kwargs: dict[str, Any]) -> None:
    parent = boto3.Session()
    try:
        session = arc.assume_role_chain(parent, roles, **kwargs)
    except PVE as error:
        no_network()
        assert_names_a_parameter(error, {"roles", "RoleArn", *parameter_names(kwargs, roles)})
        return
    credentials = assert_ours(session)
    no_network()
    if "SerialNumber" not in kwargs and len(roles) == 1:  # later hops fetch the first one first: only one request to stop
        hop = roles[0]
        assert_request_carries(first_assume_role_request(parent, credentials), GOOD, kwargs, set(hop) if isinstance(hop, dict) else set())


def fetch() -> dict[str, Any]:
    return {"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": 4_000_000_000}


@examples(120)
@given(fetcher=st.just(fetch) | ANYTHING, kwargs=st.fixed_dictionaries({}, optional={
    "region_name": st.just("eu-west-1") | ANYTHING, "cache": st.sampled_from([{}, None]) | ANYTHING,
    "cache_key": st.just("key") | ANYTHING, "source_name": st.just("broker") | ANYTHING,
    "advisory_timeout": st.floats(0, 1000) | ANYTHING, "mandatory_timeout": st.floats(0, 700) | ANYTHING,
}))
def test_refreshable_session_with_random_arguments(aws_env: str, no_network: Callable[[], None], fetcher: Any, kwargs: dict[str, Any]) -> None:
    try:
        session = arc.refreshable_session(fetcher, **kwargs)
    except PVE as error:
        no_network()
        assert_names_a_parameter(error, {"fetch", *kwargs})
        return
    credentials = assert_ours(session)
    no_network()
    assert fetcher is fetch  # nothing else is callable
    assert credentials.get_frozen_credentials().access_key == "ASIAEXAMPLE"
    if isinstance(kwargs.get("region_name"), str):
        assert session.region_name == kwargs["region_name"]


@examples(120)
@given(values=st.dictionaries(st.sampled_from(["RoleArn", *PLAUSIBLE, "Bogus"]) | st.text(max_size=8), ANYTHING, max_size=4) | ANYTHING,
       sts=st.dictionaries(st.sampled_from(["region_name", "endpoint_url", "verify", "use_ssl", "config", "api_version",
                                            "service_name", "aws_access_key_id"]), ANYTHING, max_size=3) | ANYTHING)
def test_typed_configs_with_random_values(values: Any, sts: Any) -> None:
    for make, value in ((arc.AssumeRoleConfig, values), (arc.STSClientConfig, sts)):
        try:
            config = make(value)
        except PVE as error:
            required = ["RoleArn"] if make is arc.AssumeRoleConfig else []  # a missing RoleArn is named too
            names = [make.__name__, *required, *(value if isinstance(value, dict) else ())]
            assert_names_a_parameter(error, names)
            continue
        assert dict(config) == ({k: v for k, v in value.items() if v is not None} if value else {})


# -- IoT arguments ----------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Device:
    pki: iot_standin.TestPKI
    cert: bytes
    key: bytes

    def __repr__(self) -> str:
        return "Device(...)"


@pytest.fixture(scope="module")
def device() -> Device:
    pki = iot_standin.TestPKI()
    issued = iot_standin.issue_device(pki.device_ca, "property-device", "ec")
    return Device(pki, issued.cert_pem, issued.key_pem)


TEXTISH = st.text(max_size=40) | ANYTHING
ENDPOINTS = st.sampled_from(["c2abc.credentials.iot.eu-west-1.amazonaws.com", "localhost:8443", "a1-ats.iot.eu-west-1.amazonaws.com"]) | TEXTISH


@examples(100)
@given(kwargs=st.fixed_dictionaries({}, optional={
    "role_alias": st.from_regex(r"[\w=,@-]{1,128}", fullmatch=True) | TEXTISH,
    "thing_name": st.from_regex(r"[a-zA-Z0-9:_-]{1,128}", fullmatch=True) | TEXTISH,
    "endpoint": ENDPOINTS, "timeout": st.floats(0.001, 600) | ANYTHING,
    "transport": st.sampled_from(["auto", "ssl", "awscrt"]) | ANYTHING,
    "region_name": st.just("eu-west-1") | ANYTHING,
}))
def test_iot_session_with_random_arguments(device: Device, no_network: Callable[[], None], kwargs: dict[str, Any]) -> None:
    kwargs.setdefault("role_alias", "device-role")
    kwargs.setdefault("endpoint", "c2abc.credentials.iot.eu-west-1.amazonaws.com")
    try:
        session = iot_x509.iot_session(device.cert, device.key, **kwargs)
    except iot_x509.IoTConfigError as error:
        no_network()
        assert_names_a_parameter(error, kwargs)
        return
    assert_ours(session)
    no_network()
    if isinstance(kwargs.get("region_name"), str):
        assert session.region_name == kwargs["region_name"]


@examples(80)
@given(endpoint=st.just("a1-ats.iot.eu-west-1.amazonaws.com") | ENDPOINTS, client_id=st.just("thing") | TEXTISH,
       port=st.sampled_from([8883, 443]) | st.integers(-5, 70000) | ANYTHING)
def test_mqtt_connection_with_random_arguments(device: Device, no_network: Callable[[], None], endpoint: Any, client_id: Any, port: Any) -> None:
    try:
        connection = iot_x509.mqtt_connection(endpoint, client_id, device.cert, device.key, port=port)
    except iot_x509.IoTConfigError as error:
        no_network()
        assert_names_a_parameter(error, {"endpoint", "client_id", "port"})
        return
    no_network()
    assert isinstance(connection, awscrt.mqtt.Connection)
    assert connection.client_id == client_id and endpoint.startswith(connection.host_name)
    if ":" not in endpoint:
        assert connection.port == port


# -- command lines ----------------------------------------------------------------------------


def run_main(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    # An empty stdin: --SerialNumber alone reads the MFA code from it (never a terminal here, even with -s).
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err), pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdin", io.StringIO())
        try:
            return main(argv), err.getvalue()
        except SystemExit as leaving:
            return (leaving.code if isinstance(leaving.code, int) else -1), err.getvalue()


OPTION_VALUES = st.one_of(st.text(max_size=20), st.sampled_from([
    "900", "3600", "10", "x", "team=blue", '{"a": "b"}', '{"a": 1}', "[1]", '["k"]', "{", "eu-west-1", SERIAL, "123456",
]))
CLI_OPTIONS = ["--profile", "--region", "--RoleSessionName", "--PolicyArns", "--Policy", "--DurationSeconds", "--Tags",
               "--TransitiveTagKeys", "--ExternalId", "--SourceIdentity", "--SerialNumber", "--TokenCode",
               "--additional-kwargs", "--sts-client-kwargs"]
CLI_ARGV = st.lists(st.one_of(
    st.sampled_from([GOOD, "--json", "--env", "--whoami", "notarn"]),
    st.tuples(st.sampled_from(CLI_OPTIONS), OPTION_VALUES).map(list),
    st.text(max_size=12),
), max_size=6).map(lambda parts: [item for part in parts for item in (part if isinstance(part, list) else [part])])


@examples(60)
@given(argv=CLI_ARGV)
def test_assume_role_chain_command_line_with_random_arguments(aws_env: str, argv: list[str]) -> None:
    if any(arg.startswith("-h") or (arg.startswith("--h") and "--help".startswith(arg)) for arg in argv):
        return  # help: prints usage and exits 0
    status, err = run_main(arc.main, argv)
    assert status in (0, arc.EXIT_BAD_ARGUMENTS, arc.EXIT_NO_CREDENTIALS, arc.EXIT_ASSUME_ROLE_FAILED), (status, err)
    if status:
        assert err.count("\n") == 1, err


@examples(80)
@given(argv=st.lists(st.one_of(
    st.tuples(st.sampled_from(["--cert", "--key", "--ca"]), st.sampled_from(["<cert>", "<key>", "/nonexistent.pem"]) | st.text(max_size=8)).map(list),
    st.tuples(st.sampled_from(["--role-alias", "--thing-name", "--timeout", "--token-label", "--slot-id", "--private-key-label"]),
              st.text(max_size=12) | st.sampled_from(["device-role", "5", "0", "-1"])).map(list),
    st.tuples(st.just("--endpoint"), st.sampled_from(["<closed>", "a1-ats.iot.eu-west-1.amazonaws.com", "http://x/y", "", "[::1"])).map(list),
    st.sampled_from([["--pkcs11-lib", "/nonexistent.so"], ["--unknown"]]),
), max_size=6))
def test_iot_command_line_with_random_arguments(device: Device, tmp_path_factory: pytest.TempPathFactory, argv: list[list[str]]) -> None:
    folder = tmp_path_factory.getbasetemp()
    files = {"<cert>": folder / "property-cert.pem", "<key>": folder / "property-key.pem"}
    files["<cert>"].write_bytes(device.cert)
    files["<key>"].write_bytes(device.key)
    values = {**{name: str(path) for name, path in files.items()}, "<closed>": f"localhost:{closed_port()}"}
    flat = [values.get(item, item) for pair in argv for item in pair]
    if any(arg.startswith("-h") or (arg.startswith("--h") and "--help".startswith(arg)) for arg in flat):
        return
    status, err = run_main(iot_x509.main, flat)
    assert status in (0, 1) and err.count("\n") <= 1, (status, err)


# -- cache files with random content -----------------------------------------------------------

KEY = "property-entry"
TIME_TEXTS = ["2030-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
FRESH = {"AccessKeyId": "ASIAFROMFETCH0000000", "SecretAccessKey": "fetched", "SessionToken": "fetched"}
CACHE_DOCS = st.one_of(
    st.binary(max_size=3000),
    JSON.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries({"Key": st.just(KEY)}, optional={
        # The secrets never take a time value: a secret equal to the expiry would be a false leak in the DEBUG log.
        name: JSON | st.sampled_from(["ASIAEXAMPLE", *([] if "Secret" in name or "Token" in name else TIME_TEXTS)])
        for name in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration", "Issued", "AccountId")
    }).map(lambda value: json.dumps(value).encode()),
)


@examples(120)
@given(content=CACHE_DOCS)
@example(content=b"[" * 60_000)
@example(content=b'{"Key": "property-entry", "Expiration": 1e400}')
def test_random_bytes_in_a_cache_file_never_raise(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    folder = tmp_path_factory.mktemp("cache")
    cache = arc.JSONFileCache(folder)
    cache["other"] = {"AccessKeyId": "A"}
    path = Path(cache._path(KEY))
    path.write_bytes(content)
    os.chmod(path, 0o600)
    try:
        value: dict[str, Any] | None = cache[KEY]
        assert isinstance(value, dict)
    except KeyError:
        value = None
    assert (KEY in cache) is (value is not None)
    assert cache.get(KEY) == value
    assert "other" in list(cache) and len(cache) == len(list(cache)) and cache["other"] == {"AccessKeyId": "A"}

    def fresh() -> dict[str, Any]:
        return {**FRESH, "Expiration": dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)}

    session = arc.refreshable_session(fresh, cache=cache, cache_key=KEY)
    served = session.get_credentials().get_frozen_credentials().access_key  # type: ignore[union-attr]
    assert served in (FRESH["AccessKeyId"], (value or {}).get("AccessKeyId")), served


OFFSETS: st.SearchStrategy[Any] = st.none() | st.builds(dt.timezone, st.timedeltas(-dt.timedelta(hours=23), dt.timedelta(hours=23)))
DATES = st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31), timezones=OFFSETS)
EXPIRIES = st.one_of(DATES, DATES.map(dt.datetime.isoformat), st.integers(-(10**20), 10**20), st.floats(allow_nan=True),
                     st.text(max_size=30), ANYTHING)


@examples(120)
@given(shape=st.sampled_from(["sts", "botocore"]), expiry=EXPIRIES,
       extra=st.dictionaries(st.sampled_from(["Issued", "AccountId", "SecretAccessKey", "token"]), ANYTHING, max_size=2))
@example(shape="sts", expiry="0001-01-01T00:00:00+01:00", extra={})
@example(shape="sts", expiry=1e20, extra={})
def test_random_credentials_from_a_fetch_give_credentials_or_invalid_credentials_error(shape: str, expiry: Any, extra: dict[str, Any]) -> None:
    names = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration") if shape == "sts" else ("access_key", "secret_key", "token", "expiry_time")
    data = {**dict(zip(names, ("ASIAEXAMPLE", "secret-value", "token-value", expiry), strict=True)), **extra}
    session = arc.refreshable_session(lambda: data)
    try:
        frozen = session.get_credentials().get_frozen_credentials()  # type: ignore[union-attr]
    except arc.InvalidCredentialsError as error:
        assert_names_a_parameter(error, {*names, *extra, "Expiration"})  # both shapes' expiry is reported as Expiration
        return
    assert frozen.access_key == "ASIAEXAMPLE"
    assert frozen.secret_key == data[names[1]] and frozen.token == data[names[2]]


# -- a hostile IoT credentials provider ----------------------------------------------------


@pytest.fixture(scope="module")
def hostile(device: Device) -> Iterator[RawResponder]:
    responder = RawResponder(device.pki.server_context())
    yield responder
    responder.stop()


def chunked(body: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7)) + b"0\r\n\r\n"


CREDENTIALS_DOCS = st.fixed_dictionaries({}, optional={
    "accessKeyId": st.sampled_from(["ASIAEXAMPLEEXAMPLE00", "asia-lower"]) | JSON,
    "secretAccessKey": st.just("hostile-secret") | JSON, "sessionToken": st.just("hostile-token") | JSON,
    "expiration": DATES.map(dt.datetime.isoformat) | JSON,
}).map(lambda credentials: {"credentials": credentials}) | JSON
HEADER_NAMES = st.sampled_from([b"Content-Length", b"Transfer-Encoding", b"Content-Type", b"Connection", b"X-Amzn-Id"]) | st.binary(max_size=12)
HEADER_VALUES = st.sampled_from([b"chunked", b"gzip", b"close", b"0", b"-1", b"99999999", b"application/json"]) | st.binary(max_size=16) \
    | st.integers(0, 10**6).map(lambda n: str(n).encode())


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    """A random HTTP answer: status line, headers, body (JSON or bytes, plain or chunked, maybe huge)."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    status = draw(st.just(200) | st.integers(0, 1100) | st.binary(max_size=30).map(lambda b: b"HTTP/1.1 " + b))
    body = draw(st.one_of(CREDENTIALS_DOCS.map(lambda doc: json.dumps(doc).encode()), st.binary(max_size=500),
                          st.integers(60_000, 70_000).map(lambda n: b"A" * n)))
    headers = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4))
    framing = draw(st.sampled_from(["length", "chunked", "none", "as drawn"]))
    if framing == "length":
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = chunked(body)
    return http_answer(status, headers, body)


@pytest.fixture(scope="module")
def providers(hostile: RawResponder, device: Device) -> dict[str, iot_x509.IoTCredentialsProvider]:
    return {transport: iot_x509.IoTCredentialsProvider(device.cert, device.key, "device-role", endpoint=hostile.endpoint,
                                                       ca=device.pki.server_ca_pem, timeout=3, transport=transport)
            for transport in ("ssl", "awscrt")}


def fetch_from(hostile: RawResponder, provider: iot_x509.IoTCredentialsProvider, answer: bytes) -> None:
    hostile.answer = answer
    try:
        credentials = provider()
    except iot_x509.IoTError as error:  # any other exception fails the test
        assert str(error)
        return
    assert set(credentials) == {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert all(isinstance(credentials[name], str) and credentials[name] for name in ("AccessKeyId", "SecretAccessKey", "SessionToken"))
    assert isinstance(credentials["Expiration"], dt.datetime) and credentials["Expiration"].tzinfo is not None


GOOD_ANSWER = http_answer(200, [(b"Content-Length", b"%d" % len(body := json.dumps({"credentials": {
    "accessKeyId": "ASIAEXAMPLEEXAMPLE00", "secretAccessKey": "s", "sessionToken": "t", "expiration": "2099-01-01T00:00:00Z"}}).encode()))], body)


@examples(80)
@given(answer=answers())
@example(answer=GOOD_ANSWER)
@example(answer=http_answer(200, [], json.dumps({"credentials": {"accessKeyId": "ASIAEXAMPLEEXAMPLE00", "secretAccessKey": "s",
                                                                  "sessionToken": "t", "expiration": "0001-01-01T00:00:00+01:00"}}).encode()))
def test_hostile_iot_answers_give_only_iot_errors_over_ssl(
    hostile: RawResponder, providers: dict[str, iot_x509.IoTCredentialsProvider], answer: bytes
) -> None:
    fetch_from(hostile, providers["ssl"], answer)


@examples(40)
@given(answer=answers())
@example(answer=GOOD_ANSWER)
def test_hostile_iot_answers_give_only_iot_errors_over_awscrt(
    hostile: RawResponder, providers: dict[str, iot_x509.IoTCredentialsProvider], answer: bytes
) -> None:
    fetch_from(hostile, providers["awscrt"], answer)


@examples(30)
@given(answer=answers())
@example(answer=http_answer(200, [], json.dumps({"credentials": {"accessKeyId": "ASIAEXAMPLEEXAMPLE00", "secretAccessKey": "s",
                                                                  "sessionToken": "t", "expiration": "2001-01-01T00:00:00Z"}}).encode()))
def test_hostile_iot_answers_through_a_session_give_only_iot_errors(hostile: RawResponder, device: Device, answer: bytes) -> None:
    hostile.answer = answer
    session = iot_x509.iot_session(device.cert, device.key, "device-role", endpoint=hostile.endpoint,
                                   ca=device.pki.server_ca_pem, timeout=3, region_name="eu-west-1")
    try:
        frozen = session.get_credentials().get_frozen_credentials()  # type: ignore[union-attr]
    except iot_x509.IoTError as error:  # any other exception fails the test
        assert str(error)
        return
    assert all(isinstance(value, str) and value for value in (frozen.access_key, frozen.secret_key, frozen.token))
