"""Bad input: a ParamValidationError naming the parameter, before any network call."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import boto3
import botocore.exceptions
import pytest
import trustme

import assume_role_chain as arc
import iot_x509
from tests.conftest import SentRequests, role_arn
from tests.iot.iot_standin import issue_device

GOOD = role_arn("Reader")

# (case id, RoleArn, keyword arguments, parameter the message must name)
BAD_INPUTS: list[tuple[str, Any, dict[str, Any], str]] = [
    ("arn-not-string", 123, {}, "RoleArn"),
    ("arn-not-iam-role", "arn:aws:s3:::bucket-name-here", {}, "RoleArn"),
    ("arn-user-not-role", "arn:aws:iam::123456789012:user/alice", {}, "RoleArn"),
    ("arn-short-account", "arn:aws:iam::1234:role/Reader", {}, "RoleArn"),
    ("arn-empty", "", {}, "RoleArn"),
    ("arn-name-too-long", "arn:aws:iam::123456789012:role/" + "r" * 65, {}, "RoleArn"),
    ("duration-too-short", GOOD, {"DurationSeconds": 899}, "DurationSeconds"),
    ("duration-too-long", GOOD, {"DurationSeconds": 43201}, "DurationSeconds"),
    ("duration-string", GOOD, {"DurationSeconds": "3600"}, "DurationSeconds"),
    ("duration-float", GOOD, {"DurationSeconds": 3600.0}, "DurationSeconds"),
    ("duration-bool", GOOD, {"DurationSeconds": True}, "DurationSeconds"),
    ("duration-timedelta-short", GOOD, {"DurationSeconds": dt.timedelta(minutes=5)}, "DurationSeconds"),
    ("session-name-short", GOOD, {"RoleSessionName": "a"}, "RoleSessionName"),
    ("session-name-long", GOOD, {"RoleSessionName": "a" * 65}, "RoleSessionName"),
    ("session-name-space", GOOD, {"RoleSessionName": "has space"}, "RoleSessionName"),
    ("session-name-slash", GOOD, {"RoleSessionName": "a/b"}, "RoleSessionName"),
    ("session-name-int", GOOD, {"RoleSessionName": 12}, "RoleSessionName"),
    ("source-identity-bad-char", GOOD, {"SourceIdentity": "alice!"}, "SourceIdentity"),
    ("source-identity-short", GOOD, {"SourceIdentity": "a"}, "SourceIdentity"),
    ("external-id-short", GOOD, {"ExternalId": "x"}, "ExternalId"),
    ("external-id-long", GOOD, {"ExternalId": "x" * 1225}, "ExternalId"),
    ("external-id-space", GOOD, {"ExternalId": "not allowed here"}, "ExternalId"),
    ("token-code-five-digits", GOOD, {"SerialNumber": "arn:aws:iam::123456789012:mfa/alice", "TokenCode": "12345"}, "TokenCode"),
    ("token-code-letters", GOOD, {"SerialNumber": "arn:aws:iam::123456789012:mfa/alice", "TokenCode": "12345a"}, "TokenCode"),
    ("token-code-int", GOOD, {"SerialNumber": "arn:aws:iam::123456789012:mfa/alice", "TokenCode": 123456}, "TokenCode"),
    ("serial-short", GOOD, {"SerialNumber": "abc", "TokenCode": "123456"}, "SerialNumber"),
    ("serial-bad-char", GOOD, {"SerialNumber": "arn:aws:iam::123456789012:mfa/al ice", "TokenCode": "123456"}, "SerialNumber"),
    ("serial-without-code", GOOD, {"SerialNumber": "arn:aws:iam::123456789012:mfa/alice"}, "SerialNumber"),
    ("tags-too-many", GOOD, {"Tags": {f"k{i}": "v" for i in range(51)}}, "Tags"),
    ("tags-wrong-shape", GOOD, {"Tags": [{"Name": "a", "Value": "b"}]}, "Tags[0]"),
    ("tags-not-collection", GOOD, {"Tags": "team=blue"}, "Tags"),
    ("tag-key-too-long", GOOD, {"Tags": {"k" * 129: "v"}}, "Tags"),
    ("tag-value-not-string", GOOD, {"Tags": {"team": 5}}, "Tags"),
    ("policy-arns-too-many", GOOD, {"PolicyArns": [f"arn:aws:iam::aws:policy/P{i}" for i in range(11)]}, "PolicyArns"),
    ("policy-arns-not-arn", GOOD, {"PolicyArns": ["ReadOnlyAccess"]}, "PolicyArns[0]"),
    ("policy-arns-string", GOOD, {"PolicyArns": "arn:aws:iam::aws:policy/ReadOnlyAccess"}, "PolicyArns"),
    ("policy-too-long", GOOD, {"Policy": {"Version": "2012-10-17", "Statement": [{"Sid": "x" * 2100}]}}, "Policy"),
    ("policy-not-json", GOOD, {"Policy": "{not json"}, "Policy"),
    ("policy-json-list", GOOD, {"Policy": "[1, 2]"}, "Policy"),
    ("policy-int", GOOD, {"Policy": 7}, "Policy"),
    ("transitive-keys-string", GOOD, {"TransitiveTagKeys": "team"}, "TransitiveTagKeys"),
    ("transitive-keys-ints", GOOD, {"TransitiveTagKeys": [1, 2]}, "TransitiveTagKeys"),
    ("provided-contexts-shape", GOOD, {"ProvidedContexts": [{"Arn": "x"}]}, "ProvidedContexts[0]"),
    ("region-bad", GOOD, {"region_name": "US EAST"}, "region_name"),
    ("region-int", GOOD, {"region_name": 5}, "region_name"),
    ("cache-not-dict-like", GOOD, {"cache": 42}, "cache"),
    ("additional-kwargs-list", GOOD, {"additional_kwargs": ["x"]}, "additional_kwargs"),
    ("additional-kwargs-unknown", GOOD, {"additional_kwargs": {"NotAnApiParameter": 1}}, "NotAnApiParameter"),
    ("mfa-provider-without-serial", GOOD, {"mfa_token_provider": lambda: "123456"}, "mfa_token_provider"),
    ("mfa-provider-wrong-type", GOOD, {"SerialNumber": "arn:aws:iam::123456789012:mfa/alice", "mfa_token_provider": 42}, "mfa_token_provider"),
    ("mfa-command-shell", GOOD, {"SerialNumber": "arn:aws:iam::123456789012:mfa/alice", "mfa_token_provider": ["echo", "123456"], "mfa_token_provider_kwargs": {"shell": True}}, "shell"),
    ("sts-client-credentials", GOOD, {"sts_client_kwargs": {"aws_access_key_id": "AKIA"}}, "aws_access_key_id"),
    ("sts-client-service-name", GOOD, {"sts_client_kwargs": {"service_name": "s3"}}, "service_name"),
]


@pytest.mark.parametrize(("role", "kwargs", "param"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_names_the_parameter_before_any_network_call(
    parent: boto3.Session, connections: list[Any], role: Any, kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError) as raised:
        arc.assume_role(parent, role, **kwargs)
    assert param in str(raised.value)
    assert connections == []


def test_the_table_is_large_enough() -> None:
    assert len(BAD_INPUTS) >= 30


def test_session_must_be_a_boto3_session(aws_env: str, connections: list[Any]) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError, match="session"):
        arc.assume_role("not a session", GOOD)  # type: ignore[arg-type]
    assert connections == []


def test_every_problem_is_reported_at_once(parent: boto3.Session) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError) as raised:
        arc.assume_role(parent, GOOD, DurationSeconds=10, RoleSessionName="x", ExternalId="y")
    message = str(raised.value)
    assert all(name in message for name in ("DurationSeconds", "RoleSessionName", "ExternalId"))


def test_token_code_is_never_echoed(parent: boto3.Session) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError) as raised:
        arc.assume_role(parent, GOOD, SerialNumber="arn:aws:iam::123456789012:mfa/alice", TokenCode="98765x")
    assert "98765" not in str(raised.value)


def test_no_parent_credentials_is_no_credentials_error(aws_env: str, monkeypatch: pytest.MonkeyPatch, connections: list[Any]) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(botocore.exceptions.NoCredentialsError):
        arc.assume_role(boto3.Session(), GOOD)
    assert connections == []


def test_chain_with_bad_hop_names_the_hop(parent: boto3.Session, connections: list[Any]) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError, match=r"roles\[1\]"):
        arc.assume_role_chain(parent, [GOOD, 42])  # type: ignore[list-item]
    with pytest.raises(botocore.exceptions.ParamValidationError, match="roles"):
        arc.assume_role_chain(parent, GOOD)
    with pytest.raises(botocore.exceptions.ParamValidationError, match="DurationSeconds"):
        arc.assume_role_chain(parent, [GOOD, {"RoleArn": GOOD, "DurationSeconds": 5}])
    assert connections == []


def test_validate_false_defers_to_botocore_at_first_use(parent: boto3.Session, connections: list[Any]) -> None:
    child = arc.assume_role(parent, GOOD, RoleSessionName="x", validate=False)
    assert connections == []
    with pytest.raises(botocore.exceptions.ParamValidationError, match="RoleSessionName"):
        child.get_credentials().get_frozen_credentials()  # type: ignore[union-attr]


def test_refreshable_session_validates_its_arguments(aws_env: str) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError, match="fetch"):
        arc.refreshable_session("not callable")  # type: ignore[arg-type]
    with pytest.raises(botocore.exceptions.ParamValidationError, match="cache_key"):
        arc.refreshable_session(dict, cache={})


# -- names and ARNs: full matches of STS's ASCII classes (issue 12) ---------------------

SERIAL = "arn:aws:iam::123456789012:mfa/alice"
# (parameter, a valid value, keyword arguments that make the value complete)
NAME_FIELDS: list[tuple[str, str, dict[str, Any]]] = [
    ("RoleSessionName", "nightly-scan", {}),
    ("SourceIdentity", "alice", {}),
    ("ExternalId", "partner-42", {}),
    ("SerialNumber", SERIAL, {"TokenCode": "123456"}),
    ("TokenCode", "123456", {"SerialNumber": SERIAL}),
]
NOT_ASCII = {"TokenCode": "١٢٣٤٥٦"}  # Arabic-Indic digits: Python's \d matches them


@pytest.mark.parametrize(("param", "valid", "context"), NAME_FIELDS, ids=[case[0] for case in NAME_FIELDS])
def test_names_refuse_a_trailing_newline_and_non_ascii_letters(
    parent: boto3.Session, connections: list[Any], param: str, valid: str, context: dict[str, Any]
) -> None:
    arc.assume_role(parent, GOOD, **{param: valid, **context})  # the valid value is accepted
    for bad in (valid + "\n", NOT_ASCII.get(param, valid[:-1] + "é")):
        with pytest.raises(botocore.exceptions.ParamValidationError, match=param):
            arc.assume_role(parent, GOOD, **{param: bad, **context})
        with pytest.raises(botocore.exceptions.ParamValidationError, match=param):
            arc.AssumeRoleConfig(RoleArn=GOOD, **{param: bad, **context})
    assert connections == []


@pytest.mark.parametrize(
    ("param", "bad"),
    [
        ("RoleArn", GOOD + "\n"),
        ("RoleArn", role_arn("Readé")),
        ("RoleArn", "arn:aws:iam::١٢٣٤٥٦٧٨٩٠١٢:role/Reader"),
        ("RoleArn", "arn:awś:iam::123456789012:role/Reader"),
        ("PolicyArns", "arn:aws:iam::aws:policy/ReadOnlyAccess\n"),
        ("PolicyArns", "arn:aws:iam::١٢٣٤٥٦٧٨٩٠١٢:policy/Reader"),
    ],
)
def test_arns_refuse_a_trailing_newline_and_non_ascii(parent: boto3.Session, connections: list[Any], param: str, bad: str) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError, match=param):
        if param == "RoleArn":
            arc.assume_role(parent, bad)
        else:
            arc.assume_role(parent, GOOD, PolicyArns=[bad])
    assert connections == []


# -- region names: botocore's partition patterns ------------------------------------------

BAD_REGIONS = ["eu-west1", "EU-WEST-1", "us east 1", "eu-WEST-1", "eu-west-1\n", "eu-wést-1", "xx-west-1", ""]


@pytest.mark.parametrize("region", BAD_REGIONS)
def test_malformed_regions_are_refused_everywhere(parent: boto3.Session, connections: list[Any], region: str, capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: arc.assume_role(parent, GOOD, region_name=region),
        lambda: arc.assume_role(parent, GOOD, sts_client_kwargs={"region_name": region}),
        lambda: arc.STSClientConfig(region_name=region),
        lambda: arc.assume_role_chain(parent, [GOOD, GOOD], region_name=region),
        lambda: arc.refreshable_session(dict, region_name=region),
    ]
    for call in calls:
        with pytest.raises(botocore.exceptions.ParamValidationError, match="region_name"):
            call()
    with pytest.raises(iot_x509.IoTConfigError, match="region_name"):
        iot_x509.iot_session(DEVICE.cert_pem, DEVICE.key_pem, "alias", endpoint=IOT_ENDPOINT, region_name=region)
    assert arc.main([GOOD, "--region", region]) == arc.EXIT_BAD_ARGUMENTS
    assert "--region" in capsys.readouterr().err
    assert connections == []


@pytest.mark.parametrize("region", ["eu-south-9", "il-central-1", "us-gov-west-1", "cn-north-1", "us-isob-east-7", "aws-global"])
def test_well_formed_regions_are_accepted_even_if_botocore_does_not_list_them(parent: boto3.Session, region: str) -> None:
    assert arc.assume_role(parent, GOOD, region_name=region).region_name == region
    assert arc.STSClientConfig(region_name=region).region_name == region
    assert arc.refreshable_session(dict, region_name=region).region_name == region
    iot = iot_x509.iot_session(DEVICE.cert_pem, DEVICE.key_pem, "alias", endpoint=IOT_ENDPOINT, region_name=region)
    assert iot.region_name == region


DEVICE = issue_device(trustme.CA(), "device", "ec")
IOT_ENDPOINT = "c2abc123example.credentials.iot.eu-west-1.amazonaws.com"


# -- Tags: a mapping, the API's list, or any iterable of (key, value) pairs ---------------

def sent_tags(fields: dict[str, list[str]]) -> dict[str, str]:
    count = len([name for name in fields if name.startswith("Tags.member.") and name.endswith(".Key")])
    return {fields[f"Tags.member.{n}.Key"][0]: fields[f"Tags.member.{n}.Value"][0] for n in range(1, count + 1)}


TAG_SHAPES: dict[str, Callable[[], Any]] = {
    "mapping": lambda: {"team": "blue", "env": "dev"},
    "api-list": lambda: [{"Key": "team", "Value": "blue"}, {"Key": "env", "Value": "dev"}],
    "list-of-tuples": lambda: [("team", "blue"), ("env", "dev")],
    "list-of-lists": lambda: [["team", "blue"], ["env", "dev"]],
    "generator": lambda: ((key, value) for key, value in (("team", "blue"), ("env", "dev"))),
    "items-view": lambda: {"team": "blue", "env": "dev"}.items(),
    "set-of-pairs": lambda: {("team", "blue"), ("env", "dev")},
}


@pytest.mark.parametrize("shape", list(TAG_SHAPES))
def test_tags_in_every_shape_reach_sts(parent: boto3.Session, sent_assume_role_requests: SentRequests, shape: str) -> None:
    expected = {"team": "blue", "env": "dev"}
    arc.whoami(arc.assume_role(parent, GOOD, Tags=TAG_SHAPES[shape]()))
    arc.whoami(arc.assume_role(parent, arc.AssumeRoleConfig(RoleArn=GOOD, Tags=TAG_SHAPES[shape]())))
    chain = arc.assume_role_chain(parent, [GOOD, role_arn("Second")], Tags=TAG_SHAPES[shape]())  # one iterable, two hops
    sent_assume_role_requests.watch(chain.assume_role_parent_session)  # type: ignore[attr-defined]
    arc.whoami(chain)
    assert [sent_tags(fields) for fields in sent_assume_role_requests] == [expected] * 4


@pytest.mark.parametrize(
    "tags",
    [[("team",)], [("team", "blue", "extra")], ["team=blue"], [{"Key": "team"}], iter([5])],
    ids=["one-item", "three-items", "string", "dict-without-value", "iterator-of-ints"],
)
def test_tags_of_the_wrong_shape_name_the_tag(parent: boto3.Session, connections: list[Any], tags: Any) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError, match=r"Tags\[0\]"):
        arc.assume_role(parent, GOOD, Tags=tags)
    assert connections == []


# -- typed configs and refresh windows -------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"RoleArn": role_arn("A"), "Unknown": 1}, "Unknown"),
        ({"RoleArn": role_arn("A"), "TokenCode": "12345"}, "TokenCode"),
        ({"RoleArn": role_arn("A"), "DurationSeconds": 100}, "DurationSeconds"),
        ({"RoleArn": "arn:aws:s3:::bucket"}, "RoleArn"),
        ({"DurationSeconds": 900}, "RoleArn"),
        ({"RoleArn": role_arn("A"), "Tags": "x"}, "Tags"),
    ],
)
def test_assume_role_config_validates_at_construction(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError, match=param):
        arc.AssumeRoleConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"advisory_timeout": -1}, "advisory_timeout"),
        ({"mandatory_timeout": "60"}, "mandatory_timeout"),
        ({"advisory_timeout": 60, "mandatory_timeout": 120}, "mandatory_timeout"),
        ({"advisory_timeout": 4000, "DurationSeconds": 3600}, "advisory_timeout"),
        ({"defer_refresh": True, "eager": True}, "defer_refresh"),
    ],
)
def test_nonsensical_windows_are_rejected(parent: boto3.Session, kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(botocore.exceptions.ParamValidationError, match=param):
        arc.assume_role(parent, role_arn("A"), **kwargs)
