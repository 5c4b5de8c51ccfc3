"""Bad input at every entry point: the documented exception naming the parameter, before any network call.

The table extends tests/test_validation.py (assume_role) to assume_role_chain,
refreshable_session, iot_session, mqtt_connection and both command lines:

* ``assume_role``, ``assume_role_chain``, ``refreshable_session``:
  ``botocore.exceptions.ParamValidationError``;
* ``iot_session``, ``mqtt_connection``: ``iot_x509.IoTConfigError``;
* ``assume-role-chain``: exit status 2 and one line on stderr;
* ``python -m iot_x509``: exit status 1 and one line on stderr (README).

The message must name the parameter (``param`` is a regular expression).
Plain validation of the documented parameters (their types, ranges and
patterns, the refresh windows, region names, trailing newlines) lives in
tests/test_validation.py; no case is in both files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

import assume_role_chain as arc
import iot_x509
from tests.conftest import role_arn
from tests.iot.iot_standin import issue_device

GOOD = role_arn("Reader")
SERIAL = "arn:aws:iam::123456789012:mfa/alice"
CREDENTIALS_ENDPOINT = "c2abc123example.credentials.iot.eu-west-1.amazonaws.com"
DATA_ENDPOINT = "a1b2c3example-ats.iot.eu-west-1.amazonaws.com"


@dataclass(frozen=True)
class Pem:
    """A device's PEM material, as content and as files."""

    cert: bytes
    key: bytes
    other_key: bytes
    encrypted_key: bytes
    files: dict[str, str]


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> Pem:
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    device, other = issue_device(ca, "device", "ec"), issue_device(ca, "other", "ec")
    private = serialization.load_pem_private_key(device.key_pem, None)
    encrypted = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"passphrase"))
    folder = tmp_path_factory.mktemp("pem")
    files = {}
    for name, data in (("cert", device.cert_pem), ("key", device.key_pem), ("hello", b"hello")):
        (folder / f"{name}.pem").write_bytes(data)
        files[name] = str(folder / f"{name}.pem")
    files["missing"] = str(folder / "missing.pem")
    return Pem(device.cert_pem, device.key_pem, other.key_pem, encrypted, files)


def good_fetch() -> dict[str, Any]:
    return {"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "s", "SessionToken": "t",
            "Expiration": dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)}


# Placeholders in the table for the ``pem`` fixture's material.
CERT, KEY, OTHER_KEY, ENCRYPTED_KEY = "<cert>", "<key>", "<other key>", "<encrypted key>"
CERT_FILE, HELLO_FILE, MISSING_FILE = "<cert file>", "<hello file>", "<missing file>"


def resolve(value: Any, pem: Pem) -> Any:
    """The table's value with placeholders replaced by the ``pem`` fixture's material."""
    table = {CERT: pem.cert, KEY: pem.key, OTHER_KEY: pem.other_key, ENCRYPTED_KEY: pem.encrypted_key,
             CERT_FILE: pem.files["cert"], HELLO_FILE: pem.files["hello"], MISSING_FILE: pem.files["missing"]}
    if isinstance(value, str) and value in table:
        return table[value]
    if isinstance(value, list):
        return [resolve(item, pem) for item in value]
    if isinstance(value, dict):
        return {key: resolve(item, pem) for key, item in value.items()}
    return value


# (case id, entry point, arguments, parameter named in the message)
Case = tuple[str, str, Any, str]
CASES: list[Case] = [
    # -- assume_role (cases tests/test_validation.py does not have) --
    ("ar-session-none", "assume_role", {"session": None}, "session"),
    ("ar-session-botocore", "assume_role", {"session": "botocore"}, "session"),
    ("ar-arn-bytes", "assume_role", {"RoleArn": GOOD.encode()}, "RoleArn"),
    ("ar-arn-mapping-unknown-key", "assume_role", {"RoleArn": {"RoleArn": GOOD, "Bogus": 1}}, "Bogus"),
    ("ar-arn-mapping-without-arn", "assume_role", {"RoleArn": {"DurationSeconds": 900}}, "RoleArn"),
    ("ar-duration-negative", "assume_role", {"DurationSeconds": -5}, "DurationSeconds"),
    ("ar-duration-huge", "assume_role", {"DurationSeconds": 10**30}, "DurationSeconds"),
    ("ar-duration-timedelta-day", "assume_role", {"DurationSeconds": dt.timedelta(days=1)}, "DurationSeconds"),
    ("ar-session-name-empty", "assume_role", {"RoleSessionName": ""}, "RoleSessionName"),
    ("ar-external-id-int", "assume_role", {"ExternalId": 5}, "ExternalId"),
    ("ar-source-identity-long", "assume_role", {"SourceIdentity": "s" * 65}, "SourceIdentity"),
    ("ar-provided-contexts-string", "assume_role", {"ProvidedContexts": "x"}, "ProvidedContexts"),
    ("ar-policy-unserialisable", "assume_role", {"Policy": {"Statement": {1, 2}}}, "Policy"),
    ("ar-policy-empty-string", "assume_role", {"Policy": ""}, "Policy"),
    ("ar-policy-arns-arn-int", "assume_role", {"PolicyArns": [{"arn": 5}]}, r"PolicyArns\[0\]"),
    ("ar-tags-empty-key", "assume_role", {"Tags": {"": "v"}}, "Tags"),
    ("ar-tag-value-long", "assume_role", {"Tags": {"k": "v" * 257}}, "Tags"),
    ("ar-transitive-keys-too-many", "assume_role", {"TransitiveTagKeys": ["k"] * 51}, "TransitiveTagKeys"),
    ("ar-serial-int", "assume_role", {"SerialNumber": 5, "TokenCode": "123456"}, "SerialNumber"),
    ("ar-mfa-command-empty", "assume_role", {"SerialNumber": SERIAL, "mfa_token_provider": ""}, "mfa_token_provider"),
    ("ar-mfa-command-unterminated", "assume_role", {"SerialNumber": SERIAL, "mfa_token_provider": "ykman 'oath"}, "mfa_token_provider"),
    ("ar-mfa-command-non-strings", "assume_role", {"SerialNumber": SERIAL, "mfa_token_provider": ["echo", 5]}, "mfa_token_provider"),
    ("ar-mfa-kwargs-list", "assume_role", {"SerialNumber": SERIAL, "mfa_token_provider": "x", "mfa_token_provider_kwargs": [1]}, "mfa_token_provider_kwargs"),
    ("ar-mfa-kwargs-stdout", "assume_role", {"SerialNumber": SERIAL, "mfa_token_provider": ["x"], "mfa_token_provider_kwargs": {"stdout": None}}, "stdout"),
    ("ar-advisory-string", "assume_role", {"advisory_timeout": "60"}, "advisory_timeout"),
    ("ar-advisory-nan", "assume_role", {"advisory_timeout": float("nan")}, "advisory_timeout"),
    ("ar-window-not-shorter-than-duration", "assume_role", {"advisory_timeout": 3600, "DurationSeconds": 3600}, "advisory_timeout"),
    ("ar-sts-config-int", "assume_role", {"sts_client_kwargs": {"config": 5}}, "config"),
    ("ar-sts-verify-int", "assume_role", {"sts_client_kwargs": {"verify": 5}}, "verify"),
    ("ar-sts-endpoint-not-url", "assume_role", {"sts_client_kwargs": {"endpoint_url": "sts.example.com"}}, "endpoint_url"),
    ("ar-sts-region-bad", "assume_role", {"sts_client_kwargs": {"region_name": "EU West"}}, "region_name"),
    ("ar-sts-use-ssl-string", "assume_role", {"sts_client_kwargs": {"use_ssl": "yes"}}, "use_ssl"),
    ("ar-sts-kwargs-string", "assume_role", {"sts_client_kwargs": "region_name=x"}, "sts_client_kwargs"),
    ("ar-sts-session-token", "assume_role", {"sts_client_kwargs": {"aws_session_token": "x"}}, "aws_session_token"),
    ("ar-additional-bad-type", "assume_role", {"additional_kwargs": {"DurationSeconds": "900"}}, "DurationSeconds"),
    ("ar-cache-string", "assume_role", {"cache": "~/.aws/cache"}, "cache"),
    ("ar-clock-not-callable", "assume_role", {"clock": 5}, "clock"),
    # -- assume_role_chain --
    ("chain-empty", "assume_role_chain", {"roles": []}, "roles"),
    ("chain-none", "assume_role_chain", {"roles": None}, "roles"),
    ("chain-mapping", "assume_role_chain", {"roles": {"RoleArn": GOOD}}, "roles"),
    ("chain-hop-bytes", "assume_role_chain", {"roles": [GOOD, b"x"]}, r"roles\[1\]"),
    ("chain-hop-without-arn", "assume_role_chain", {"roles": [GOOD, {"ExternalId": "partner"}]}, r"roles\[1\]"),
    ("chain-hop-arn-int", "assume_role_chain", {"roles": [{"RoleArn": 5}]}, "RoleArn"),
    ("chain-hop-unknown-key", "assume_role_chain", {"roles": [GOOD, {"RoleArn": GOOD, "Lifetime": 900}]}, "Lifetime"),
    ("chain-hop-bad-token", "assume_role_chain", {"roles": [{"RoleArn": GOOD, "SerialNumber": SERIAL, "TokenCode": "12"}]}, "TokenCode"),
    ("chain-common-external-id", "assume_role_chain", {"roles": [GOOD, GOOD], "ExternalId": "x"}, "ExternalId"),
    ("chain-common-cache-int", "assume_role_chain", {"roles": [GOOD], "cache": 5}, "cache"),
    ("chain-common-duration", "assume_role_chain", {"roles": [GOOD, GOOD], "DurationSeconds": 10}, "DurationSeconds"),
    ("chain-common-eager-and-defer", "assume_role_chain", {"roles": [GOOD], "eager": True, "defer_refresh": True}, "defer_refresh"),
    # -- refreshable_session --
    ("rs-fetch-none", "refreshable_session", {"fetch": None}, "fetch"),
    ("rs-fetch-mapping", "refreshable_session", {"fetch": {"AccessKeyId": "A"}}, "fetch"),
    ("rs-cache-key-empty", "refreshable_session", {"cache": {}, "cache_key": ""}, "cache_key"),
    ("rs-cache-key-int", "refreshable_session", {"cache": {}, "cache_key": 5}, "cache_key"),
    ("rs-cache-int", "refreshable_session", {"cache": 5, "cache_key": "k"}, "cache"),
    ("rs-region-int", "refreshable_session", {"region_name": 5}, "region_name"),
    ("rs-region-bad", "refreshable_session", {"region_name": "not a region!"}, "region_name"),
    ("rs-advisory-negative", "refreshable_session", {"advisory_timeout": -1}, "advisory_timeout"),
    ("rs-mandatory-over-advisory", "refreshable_session", {"advisory_timeout": 1, "mandatory_timeout": 5}, "mandatory_timeout"),
    ("rs-eager-and-defer", "refreshable_session", {"eager": True, "defer_refresh": True}, "defer_refresh"),
    ("rs-clock-not-callable", "refreshable_session", {"clock": "2030-01-01"}, "clock"),
    # -- iot_session --
    ("iot-role-alias-slash", "iot_session", {"role_alias": "a/b"}, "role_alias"),
    ("iot-role-alias-none", "iot_session", {"role_alias": None}, "role_alias"),
    ("iot-thing-name-space", "iot_session", {"thing_name": "my thing"}, "thing_name"),
    ("iot-thing-name-int", "iot_session", {"thing_name": 7}, "thing_name"),
    ("iot-endpoint-data-ats", "iot_session", {"endpoint": DATA_ENDPOINT}, "endpoint"),
    ("iot-endpoint-path", "iot_session", {"endpoint": CREDENTIALS_ENDPOINT + "/role-aliases"}, "endpoint"),
    ("iot-endpoint-port", "iot_session", {"endpoint": "localhost:70000"}, "endpoint"),
    ("iot-endpoint-empty", "iot_session", {"endpoint": " "}, "endpoint"),
    ("iot-endpoint-int", "iot_session", {"endpoint": 443}, "endpoint"),
    ("iot-endpoint-bad-ipv6", "iot_session", {"endpoint": "[::1"}, "endpoint"),
    ("iot-endpoint-space", "iot_session", {"endpoint": "iot endpoint.example.com"}, "endpoint"),
    ("iot-timeout-zero", "iot_session", {"timeout": 0}, "timeout"),
    ("iot-timeout-nan", "iot_session", {"timeout": float("nan")}, "timeout"),
    ("iot-timeout-bool", "iot_session", {"timeout": True}, "timeout"),
    ("iot-timeout-too-long", "iot_session", {"timeout": 601}, "timeout"),
    ("iot-transport-unknown", "iot_session", {"transport": "requests"}, "transport"),
    ("iot-cert-missing-file", "iot_session", {"cert": MISSING_FILE}, "cert"),
    ("iot-cert-int", "iot_session", {"cert": 42}, "cert"),
    ("iot-cert-file-not-pem", "iot_session", {"cert": HELLO_FILE}, "cert"),
    ("iot-cert-is-a-key", "iot_session", {"cert": KEY}, "cert"),
    ("iot-key-and-pkcs11-missing", "iot_session", {"key": None}, "key"),
    ("iot-key-and-pkcs11-both", "iot_session", {"pkcs11": {"pkcs11_lib": CERT_FILE}}, "pkcs11"),
    ("iot-key-encrypted", "iot_session", {"key": ENCRYPTED_KEY}, "key"),
    ("iot-key-is-a-cert", "iot_session", {"key": CERT}, "key"),
    ("iot-key-of-another-cert", "iot_session", {"key": OTHER_KEY}, "key"),
    ("iot-ca-is-a-key", "iot_session", {"ca": KEY}, "ca"),
    ("iot-pkcs11-unknown-key", "iot_session", {"key": None, "pkcs11": {"pkcs11_lib": CERT_FILE, "pin": "1"}}, "pin"),
    ("iot-pkcs11-string", "iot_session", {"key": None, "pkcs11": "libsofthsm2.so"}, "pkcs11"),
    ("iot-pkcs11-lib-missing", "iot_session", {"key": None, "pkcs11": {"pkcs11_lib": MISSING_FILE}}, "pkcs11"),
    ("iot-pkcs11-slot-negative", "iot_session", {"key": None, "pkcs11": {"pkcs11_lib": CERT_FILE, "slot_id": -1}}, "slot_id"),
    ("iot-pkcs11-pin-int", "iot_session", {"key": None, "pkcs11": {"pkcs11_lib": CERT_FILE, "user_pin": 1234}}, "user_pin"),
    ("iot-pkcs11-with-ssl", "iot_session", {"key": None, "pkcs11": {"pkcs11_lib": CERT_FILE}, "transport": "ssl"}, "PKCS#11|transport"),
    ("iot-region-int", "iot_session", {"region_name": 5}, "region_name"),
    ("iot-cache-key-int", "iot_session", {"cache": {}, "cache_key": 5}, "cache_key"),
    # -- mqtt_connection --
    ("mqtt-endpoint-credentials", "mqtt_connection", {"endpoint": CREDENTIALS_ENDPOINT}, "endpoint"),
    ("mqtt-endpoint-empty", "mqtt_connection", {"endpoint": ""}, "endpoint"),
    ("mqtt-endpoint-url", "mqtt_connection", {"endpoint": "mqtts://" + DATA_ENDPOINT}, "endpoint"),
    ("mqtt-port-twice", "mqtt_connection", {"endpoint": DATA_ENDPOINT + ":8883", "port": 443}, "port"),
    ("mqtt-port-out-of-range", "mqtt_connection", {"port": 70000}, "port"),
    ("mqtt-port-string", "mqtt_connection", {"port": "8883"}, "port"),
    ("mqtt-client-id-empty", "mqtt_connection", {"client_id": ""}, "client_id"),
    ("mqtt-client-id-long", "mqtt_connection", {"client_id": "c" * 129}, "client_id"),
    ("mqtt-client-id-int", "mqtt_connection", {"client_id": 7}, "client_id"),
    ("mqtt-cert-missing-file", "mqtt_connection", {"cert": MISSING_FILE}, "cert"),
    ("mqtt-no-key", "mqtt_connection", {"key": None}, "key"),
    ("mqtt-key-encrypted", "mqtt_connection", {"key": ENCRYPTED_KEY}, "key"),
    ("mqtt-key-of-another-cert", "mqtt_connection", {"key": OTHER_KEY}, "key"),
    ("mqtt-ca-is-a-key", "mqtt_connection", {"ca": KEY}, "ca"),
    # -- assume-role-chain command line --
    ("cli-no-arn", "cli", [], "RoleArn"),
    ("cli-bad-arn", "cli", ["role/Reader"], "RoleArn"),
    ("cli-duration-not-int", "cli", [GOOD, "--DurationSeconds", "1h"], "DurationSeconds"),
    ("cli-duration-short", "cli", [GOOD, "--DurationSeconds", "10"], "DurationSeconds"),
    ("cli-tags-no-value", "cli", [GOOD, "--Tags", "team"], "Tags"),
    ("cli-tags-json-int", "cli", [GOOD, "--Tags", '{"team": 1}'], "Tags"),
    ("cli-policy-list", "cli", [GOOD, "--Policy", "[1]"], "Policy"),
    ("cli-policy-arns-ints", "cli", [GOOD, "--PolicyArns", "[1]"], "PolicyArns"),
    ("cli-policy-arns-bad-json", "cli", [GOOD, "--PolicyArns", "[oops"], "PolicyArns"),
    ("cli-session-name-space", "cli", [GOOD, "--RoleSessionName", "a b"], "RoleSessionName"),
    ("cli-external-id-short", "cli", [GOOD, "--ExternalId", "x"], "ExternalId"),
    ("cli-token-code-short", "cli", [GOOD, "--SerialNumber", SERIAL, "--TokenCode", "12345"], "TokenCode"),
    ("cli-transitive-keys-object", "cli", [GOOD, "--TransitiveTagKeys", '{"a": "b"}'], "TransitiveTagKeys"),
    ("cli-additional-not-json", "cli", [GOOD, "--additional-kwargs", "ExternalId=x"], "additional-kwargs"),
    ("cli-sts-service-name", "cli", [GOOD, "--sts-client-kwargs", '{"service_name": "s3"}'], "service_name"),
    ("cli-sts-verify-int", "cli", [GOOD, "--sts-client-kwargs", '{"verify": 5}'], "verify"),
    ("cli-json-and-env", "cli", [GOOD, "--json", "--env"], "--env|--json"),
    ("cli-unknown-option", "cli", [GOOD, "--Lifetime", "900"], "--Lifetime"),
    ("cli-mfa-command-unterminated", "cli", [GOOD, "--SerialNumber", SERIAL, "--mfa-command", "ykman 'oath"], "mfa-command|mfa_token_provider"),
    ("cli-transitive-keys-ints", "cli", [GOOD, "--TransitiveTagKeys", "[1]"], "TransitiveTagKeys"),
    ("cli-source-identity-short", "cli", [GOOD, "--SourceIdentity", "a"], "SourceIdentity"),
    ("cli-region-bad", "cli", [GOOD, "--region", "EU West"], "region"),
    # -- python -m iot_x509 --
    ("iot-cli-role-alias", "iot_cli", {"--role-alias": "bad alias"}, "role_alias|role-alias"),
    ("iot-cli-endpoint-url", "iot_cli", {"--endpoint": "https://host/role-aliases"}, "endpoint"),
    ("iot-cli-thing-name", "iot_cli", {"--thing-name": "my thing"}, "thing_name|thing-name"),
    ("iot-cli-timeout-zero", "iot_cli", {"--timeout": "0"}, "timeout"),
    ("iot-cli-timeout-not-number", "iot_cli", {"--timeout": "ten"}, "timeout"),
    ("iot-cli-cert-missing", "iot_cli", {"--cert": MISSING_FILE}, "cert"),
    ("iot-cli-cert-not-given", "iot_cli", {"--cert": None}, "cert"),
    ("iot-cli-key-missing", "iot_cli", {"--key": MISSING_FILE}, "key"),
    ("iot-cli-no-key", "iot_cli", {"--key": None}, "key"),
    ("iot-cli-pkcs11-lib-missing", "iot_cli", {"--key": None, "--pkcs11-lib": MISSING_FILE}, "pkcs11"),
    ("iot-cli-slot-not-int", "iot_cli", {"--key": None, "--pkcs11-lib": CERT_FILE, "--slot-id": "first"}, "slot"),
]


def call_assume_role(parent: boto3.Session, args: dict[str, Any]) -> Any:
    session = args.pop("session", parent)
    if session == "botocore":
        session = parent._session
    return arc.assume_role(session, args.pop("RoleArn", GOOD), **args)


def run_main(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of an in-process command line (SystemExit included)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as leaving:
            status = leaving.code if isinstance(leaving.code, int) else 1
    return status, out.getvalue(), err.getvalue()


def iot_cli_argv(options: dict[str, Any], pem: Pem) -> list[str]:
    merged = {"--cert": pem.files["cert"], "--key": pem.files["key"], "--role-alias": "device-role",
              "--endpoint": CREDENTIALS_ENDPOINT, **resolve(options, pem)}
    return [item for name, value in merged.items() if value is not None for item in (name, str(value))]


def check_exception(call: Callable[[], Any], expected: type[BaseException], param: str) -> None:
    with pytest.raises(expected) as raised:
        call()
    assert re.search(param, str(raised.value)), f"{param!r} not named in: {raised.value}"


def check_case(target: str, args: Any, param: str, parent: boto3.Session, pem: Pem) -> None:
    args = resolve(args, pem)
    if target == "assume_role":
        check_exception(lambda: call_assume_role(parent, dict(args)), botocore.exceptions.ParamValidationError, param)
    elif target == "assume_role_chain":
        check_exception(lambda: arc.assume_role_chain(parent, **args), botocore.exceptions.ParamValidationError, param)
    elif target == "refreshable_session":
        check_exception(lambda: arc.refreshable_session(args.pop("fetch", good_fetch), **args),
                        botocore.exceptions.ParamValidationError, param)
    elif target == "iot_session":
        merged = {"cert": pem.cert, "key": pem.key, "role_alias": "device-role", "endpoint": CREDENTIALS_ENDPOINT, **args}
        check_exception(lambda: iot_x509.iot_session(merged.pop("cert"), merged.pop("key"), merged.pop("role_alias"), **merged),
                        iot_x509.IoTConfigError, param)
    elif target == "mqtt_connection":
        merged = {"endpoint": DATA_ENDPOINT, "client_id": "thing", "cert": pem.cert, "key": pem.key, **args}
        check_exception(lambda: iot_x509.mqtt_connection(**merged), iot_x509.IoTConfigError, param)
    elif target == "cli":
        status, out, err = run_main(arc.main, args)
        assert (status, out) == (arc.EXIT_BAD_ARGUMENTS, ""), f"exit status {status}, stderr {err!r}"
        assert err.count("\n") == 1 and err.startswith("assume-role-chain: bad arguments: "), f"stderr {err!r}"
        assert re.search(param, err), f"stderr {err!r}"
    else:
        status, out, err = run_main(iot_x509.main, iot_cli_argv(args, pem))
        assert (status, out) == (1, ""), f"exit status {status}, stderr {err!r}"
        assert err.count("\n") == 1 and err.startswith("iot_x509: IoTConfigError: "), f"stderr {err!r}"
        assert re.search(param, err), f"stderr {err!r}"


TARGETS = list(dict.fromkeys(case[1] for case in CASES))


@pytest.mark.parametrize("target", TARGETS)
def test_bad_input_is_refused_naming_the_parameter_before_any_network_call(
    parent: boto3.Session, pem: Pem, connections: list[Any], target: str
) -> None:
    """Every case of ``target`` in the table (one test per entry point: each test costs ~0.3 s of gc)."""
    problems = []
    for case_id, case_target, args, param in CASES:
        if case_target != target:
            continue
        connections.clear()
        try:
            check_case(target, args, param, parent, pem)
        except (Exception, pytest.fail.Exception) as error:
            problems.append(f"{case_id}: {type(error).__name__}: {' '.join(str(error).split())[:300]}")
        if connections:
            problems.append(f"{case_id}: network connection attempted: {connections}")
    assert not problems, f"{len(problems)} case(s) of {target} failed:\n" + "\n".join(problems)


def test_the_table_covers_every_entry_point_with_at_least_60_cases() -> None:
    targets = {case[1] for case in CASES}
    assert targets == {"assume_role", "assume_role_chain", "refreshable_session", "iot_session", "mqtt_connection", "cli", "iot_cli"}
    assert len(CASES) >= 60 and len({case[0] for case in CASES}) == len(CASES)


def test_valid_defaults_of_the_table_are_accepted(parent: boto3.Session, pem: Pem, connections: list[Any]) -> None:
    """The table's failures come from the one bad value, not from its defaults."""
    assert isinstance(call_assume_role(parent, {}), boto3.Session)
    assert isinstance(arc.assume_role_chain(parent, [GOOD, GOOD]), boto3.Session)
    assert isinstance(arc.refreshable_session(good_fetch), boto3.Session)
    assert isinstance(iot_x509.iot_session(pem.cert, pem.key, "device-role", endpoint=CREDENTIALS_ENDPOINT), boto3.Session)
    assert iot_x509.mqtt_connection(DATA_ENDPOINT, "thing", pem.cert, pem.key) is not None
    assert connections == []
