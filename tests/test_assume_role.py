"""assume_role and chains against a real moto server; typed configs and STS client options."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.credentials
import botocore.exceptions
import pytest

import assume_role_chain as arc
from tests.conftest import SentRequests, role_arn


def test_returns_plain_session_with_deferred_refreshable_credentials(parent: boto3.Session, sts_calls: Callable[[], int]) -> None:
    child = arc.assume_role(parent, role_arn("A"))
    assert type(child) is boto3.Session
    assert isinstance(child.get_credentials(), botocore.credentials.DeferredRefreshableCredentials)
    assert child.assume_role_parent_session is parent  # type: ignore[attr-defined]
    assert sts_calls() == 0, "nothing is fetched before the credentials are needed"
    assert arc.whoami(child)["Arn"].startswith("arn:aws:sts::123456789012:assumed-role/A/")
    assert sts_calls() == 1


def test_three_hop_chain_identities(parent: boto3.Session, sts_calls: Callable[[], int]) -> None:
    chain = arc.assume_role_chain(parent, [role_arn("A"), role_arn("B"), {"RoleArn": role_arn("C"), "RoleSessionName": "hop-c"}])
    hop_b = chain.assume_role_parent_session  # type: ignore[attr-defined]
    hop_a = hop_b.assume_role_parent_session
    assert hop_a.assume_role_parent_session is parent
    assert arc.whoami(chain)["Arn"] == "arn:aws:sts::123456789012:assumed-role/C/hop-c"
    assert "/B/" in arc.whoami(hop_b)["Arn"]
    assert "/A/" in arc.whoami(hop_a)["Arn"]
    assert sts_calls() == 3


def test_each_hop_signs_with_its_parents_credentials(parent: boto3.Session, sent_assume_role_requests: SentRequests) -> None:
    hop_a = arc.assume_role(parent, role_arn("A"))
    access_keys: list[str] = []
    hop_a._session.register("before-send.sts.AssumeRole", lambda request, **_: access_keys.append(request.headers["Authorization"].decode() if isinstance(request.headers["Authorization"], bytes) else request.headers["Authorization"]))
    hop_b = arc.assume_role(hop_a, role_arn("B"))
    hop_b.get_credentials().get_frozen_credentials()
    hop_a_key = hop_a.get_credentials().get_frozen_credentials().access_key
    assert len(access_keys) == 1 and f"Credential={hop_a_key}/" in access_keys[0]


def test_arguments_reach_sts_in_api_form(parent: boto3.Session, sent_assume_role_requests: SentRequests) -> None:
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    child = arc.assume_role(
        parent, role_arn("A"),
        RoleSessionName="my-session",
        Policy=policy,
        PolicyArns=["arn:aws:iam::aws:policy/ReadOnlyAccess", {"arn": "arn:aws:iam::123456789012:policy/Mine"}],
        DurationSeconds=dt.timedelta(minutes=20),
        Tags={"team": "blue", "env": "dev"},
        TransitiveTagKeys=["team"],
        ExternalId="external-123",
        SourceIdentity="alice",
        ProvidedContexts=[{"ProviderArn": "arn:aws:iam::aws:contextProvider/IdentityCenter", "ContextAssertion": "x" * 8}],
    )
    child.get_credentials().get_frozen_credentials()
    [sent] = sent_assume_role_requests
    assert sent["RoleSessionName"] == ["my-session"]
    assert json.loads(sent["Policy"][0]) == policy
    assert sent["PolicyArns.member.1.arn"] == ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    assert sent["PolicyArns.member.2.arn"] == ["arn:aws:iam::123456789012:policy/Mine"]
    assert sent["DurationSeconds"] == ["1200"]
    assert {sent["Tags.member.1.Key"][0]: sent["Tags.member.1.Value"][0], sent["Tags.member.2.Key"][0]: sent["Tags.member.2.Value"][0]} == {"team": "blue", "env": "dev"}
    assert sent["TransitiveTagKeys.member.1"] == ["team"]
    assert sent["ExternalId"] == ["external-123"]
    assert sent["SourceIdentity"] == ["alice"]
    assert sent["ProvidedContexts.member.1.ProviderArn"] == ["arn:aws:iam::aws:contextProvider/IdentityCenter"]


def test_role_session_name_defaults(parent: boto3.Session, sent_assume_role_requests: SentRequests) -> None:
    arc.assume_role(parent, role_arn("A"), SourceIdentity="bob").get_credentials().get_frozen_credentials()
    arc.assume_role(parent, role_arn("A"), SourceIdentity="bob", RoleSessionName=arc.AUTOMATIC_ROLE_SESSION_NAME).get_credentials().get_frozen_credentials()
    arc.assume_role(parent, role_arn("A")).get_credentials().get_frozen_credentials()
    names = [sent["RoleSessionName"][0] for sent in sent_assume_role_requests]
    assert names[0] == "bob"
    assert names[1].startswith("assume-role-chain-") and names[2].startswith("assume-role-chain-")


def test_additional_kwargs_are_passed(parent: boto3.Session, sent_assume_role_requests: SentRequests) -> None:
    arc.assume_role(parent, role_arn("A"), additional_kwargs={"DurationSeconds": 1000}).get_credentials().get_frozen_credentials()
    assert sent_assume_role_requests[0]["DurationSeconds"] == ["1000"]


def test_duration_is_clamped_for_chained_roles(parent: boto3.Session, sent_assume_role_requests: SentRequests) -> None:
    hop_a = arc.assume_role(parent, role_arn("A"), DurationSeconds=7200)  # parent is an IAM user: no clamp
    sent_assume_role_requests.watch(hop_a)
    with pytest.warns(arc.DurationClampedWarning, match="role chaining"):
        hop_b = arc.assume_role(hop_a, role_arn("B"), DurationSeconds=7200)
    hop_b.get_credentials().get_frozen_credentials()
    assert [sent["DurationSeconds"] for sent in sent_assume_role_requests] == [["7200"], ["3600"]]


def test_duration_is_clamped_when_parent_has_a_session_token(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-of-a-lambda-role")
    with pytest.warns(arc.DurationClampedWarning):
        arc.assume_role(boto3.Session(), role_arn("A"), DurationSeconds=43200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        arc.assume_role(boto3.Session(), role_arn("A"), DurationSeconds=3600)


def test_eager_fetches_at_construction(parent: boto3.Session, sts_calls: Callable[[], int]) -> None:
    arc.assume_role(parent, role_arn("A"), eager=True)
    assert sts_calls() == 1


def test_region_follows_parent_by_default(parent: boto3.Session) -> None:
    child = arc.assume_role(parent, role_arn("A"))
    assert child.region_name == "us-east-1"
    parent._session.set_config_variable("region", "eu-west-3")
    assert child.region_name == "eu-west-3"
    assert child.client("s3").meta.region_name == "eu-west-3"


def test_region_true_copies_false_is_implicit_string_sets(parent: boto3.Session, monkeypatch: pytest.MonkeyPatch) -> None:
    parent._session.set_config_variable("region", "ap-south-1")
    copied = arc.assume_role(parent, role_arn("A"), region_name=True)
    implicit = arc.assume_role(parent, role_arn("A"), region_name=False)
    fixed = arc.assume_role(parent, role_arn("A"), region_name="sa-east-1")
    parent._session.set_config_variable("region", "ca-central-1")
    assert copied.region_name == "ap-south-1"
    assert implicit.region_name == "us-east-1"  # from AWS_DEFAULT_REGION, not the parent
    assert fixed.region_name == "sa-east-1"


def test_child_inherits_profile_configuration(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca_bundle = tmp_path / "ca.pem"
    ca_bundle.write_text("")
    config = tmp_path / "aws-config"
    config.write_text(
        "[profile scanner]\n"
        "region = eu-north-1\n"
        "retry_mode = adaptive\n"
        "max_attempts = 7\n"
        f"ca_bundle = {ca_bundle}\n"
        "sts_regional_endpoints = regional\n"
        "aws_access_key_id = AKIAPROFILEEXAMPLE00\n"
        "aws_secret_access_key = profile-secret\n"
        "[default]\nregion = us-west-2\n"
    )
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    parent = boto3.Session(profile_name="scanner")
    child = arc.assume_role_chain(parent, [role_arn("A"), role_arn("B")])
    core = child._session
    assert child.region_name == "eu-north-1"
    assert core.get_config_variable("retry_mode") == "adaptive"
    assert core.get_config_variable("max_attempts") == 7
    assert core.get_config_variable("ca_bundle") == str(ca_bundle)
    assert core.get_config_variable("sts_regional_endpoints") == "regional"
    client = child.client("sqs", endpoint_url="http://127.0.0.1:9")
    assert client.meta.config.retries["mode"] == "adaptive"
    assert client.meta.config.retries["total_max_attempts"] == 7


def test_child_follows_service_endpoint_url_configuration(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:4599")
    child = arc.assume_role(boto3.Session(), role_arn("A"))
    assert child.client("sqs").meta.endpoint_url == "http://127.0.0.1:4599"
    assert child.client("sts").meta.endpoint_url == aws_env


def test_child_reuses_parent_loader_without_growing_search_paths(parent: boto3.Session) -> None:
    loader = parent._session.get_component("data_loader")
    before = list(loader.search_paths)
    children = [arc.assume_role(parent, role_arn(f"R{i}")) for i in range(20)]
    assert all(child._session.get_component("data_loader") is loader for child in children)
    assert loader.search_paths == before


def test_patch_boto3_adds_functions_and_methods(aws_env: str, sts_calls: Callable[[], int]) -> None:
    arc.patch_boto3()
    arc.patch_boto3()  # idempotent
    boto3.setup_default_session()
    chained = boto3.Session().assume_role(role_arn("A")).assume_role(role_arn("B"), RoleSessionName="patched")  # type: ignore[attr-defined]
    assert arc.whoami(chained)["Arn"].endswith(":assumed-role/B/patched")
    from_default = boto3.assume_role(role_arn("C"), RoleSessionName="default")  # type: ignore[attr-defined]
    assert from_default.assume_role_parent_session is boto3.DEFAULT_SESSION
    assert arc.whoami(from_default)["Arn"].endswith(":assumed-role/C/default")
    assert sts_calls() == 3


def test_drop_in_for_aws_assume_role_lib_callers(parent: boto3.Session) -> None:
    aws_assume_role_lib = arc  # `import assume_role_chain as aws_assume_role_lib`
    session = aws_assume_role_lib.assume_role(parent, role_arn("A"), RoleSessionName="x1", region_name=True, validate=True, cache={})
    assert aws_assume_role_lib.whoami(session)["Arn"].endswith("/A/x1")


def test_access_denied_is_a_client_error_on_first_use(parent: boto3.Session, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.exceptions

    child = arc.assume_role(parent, role_arn("A"))

    def refuse(**_: object) -> None:
        raise botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "AssumeRole")

    parent._session.register("before-call.sts.AssumeRole", refuse)
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        child.client("sts").get_caller_identity()


# -- typed configs (AssumeRoleConfig, STSClientConfig) ---------------------------------


def test_assume_role_config_reads_by_dot_and_key() -> None:
    config = arc.AssumeRoleConfig(RoleArn=role_arn("A"), DurationSeconds=900)
    assert config.RoleArn == config["RoleArn"] == role_arn("A")
    assert config.DurationSeconds == 900
    assert config.ExternalId is None and config["ExternalId"] is None
    assert dict(config) == {"RoleArn": role_arn("A"), "DurationSeconds": 900}
    assert "ExternalId" not in config and "DurationSeconds" in config
    assert config == {"RoleArn": role_arn("A"), "DurationSeconds": 900}
    with pytest.raises(AttributeError, match="Nope"):
        config.Nope  # noqa: B018
    with pytest.raises(AttributeError, match="immutable"):
        config.DurationSeconds = 1000  # type: ignore[misc]


def test_assume_role_config_repr_hides_the_token_code() -> None:
    config = arc.AssumeRoleConfig(RoleArn=role_arn("A"), SerialNumber="arn:aws:iam::123456789012:mfa/alice", TokenCode="246810")
    assert "246810" not in repr(config) and "TokenCode" in repr(config)


def test_config_and_dict_produce_the_same_request(parent: boto3.Session, sent_assume_role_requests: SentRequests) -> None:
    fields = {
        "RoleArn": role_arn("A"), "RoleSessionName": "same", "DurationSeconds": 1800, "ExternalId": "ext-7",
        "Tags": {"team": "blue"}, "Policy": {"Version": "2012-10-17", "Statement": []},
        "PolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"], "SourceIdentity": "dave",
    }
    arc.whoami(arc.assume_role(parent, arc.AssumeRoleConfig(**fields)))
    arc.whoami(arc.assume_role(parent, dict(fields)))
    arc.whoami(arc.assume_role(parent, fields.pop("RoleArn"), **fields))
    first, second, third = sent_assume_role_requests
    assert first == second == third


def test_keyword_arguments_override_the_config(parent: boto3.Session, sent_assume_role_requests: SentRequests) -> None:
    config = arc.AssumeRoleConfig(RoleArn=role_arn("A"), RoleSessionName="from-config", DurationSeconds=1800)
    arc.whoami(arc.assume_role(parent, config, RoleSessionName="from-keyword"))
    assert sent_assume_role_requests[0]["RoleSessionName"] == ["from-keyword"]
    assert sent_assume_role_requests[0]["DurationSeconds"] == ["1800"]


def test_configs_in_chains_and_patched_methods(parent: boto3.Session) -> None:
    chain = arc.assume_role_chain(parent, [arc.AssumeRoleConfig(RoleArn=role_arn("A")), arc.AssumeRoleConfig(RoleArn=role_arn("B"), RoleSessionName="cfg")])
    assert arc.whoami(chain)["Arn"].endswith(":assumed-role/B/cfg")
    arc.patch_boto3()
    patched = parent.assume_role(arc.AssumeRoleConfig(RoleArn=role_arn("C"), RoleSessionName="patched-cfg"))  # type: ignore[attr-defined]
    assert arc.whoami(patched)["Arn"].endswith(":assumed-role/C/patched-cfg")


def test_sts_client_config() -> None:
    config = arc.STSClientConfig(region_name="eu-west-1", endpoint_url="https://sts.eu-west-1.amazonaws.com")
    assert config.region_name == "eu-west-1" and config.verify is None
    for bad, param in (
        ({"service_name": "s3"}, "service_name"),
        ({"aws_secret_access_key": "x"}, "aws_secret_access_key"),
        ({"endpoint_url": "ftp://x"}, "endpoint_url"),
        ({"config": {"retries": 3}}, "config"),
        ({"region": "eu-west-1"}, "region"),
    ):
        with pytest.raises(botocore.exceptions.ParamValidationError, match=param):
            arc.STSClientConfig(bad)


# -- STS client options ------------------------------------------------------------------


def identity_at(endpoint: str, credentials: dict[str, Any]) -> str:
    client = boto3.client("sts", endpoint_url=endpoint, aws_access_key_id=credentials["access_key"],
                          aws_secret_access_key=credentials["secret_key"], aws_session_token=credentials["token"])
    return str(client.get_caller_identity()["Arn"])


@pytest.mark.parametrize("as_config", [False, True])
def test_sts_endpoint_url_is_where_assume_role_goes(parent: boto3.Session, second_moto: str, sts_calls: Callable[[], int], aws_env: str, as_config: bool) -> None:
    options: dict[str, Any] = {"endpoint_url": second_moto, "config": botocore.config.Config(retries={"total_max_attempts": 2})}
    session = arc.assume_role(parent, role_arn("A"), RoleSessionName="vpce", sts_client_kwargs=arc.STSClientConfig(options) if as_config else options)
    current = arc.get_credentials(session)
    assert sts_calls() == 0, "the first server saw no AssumeRole"
    assert identity_at(second_moto, current).endswith(":assumed-role/A/vpce"), "the second server issued them"


def test_sts_client_follows_the_parents_region_by_default(parent: boto3.Session, sent_assume_role_requests: SentRequests, monkeypatch: pytest.MonkeyPatch) -> None:
    scopes: list[str] = []

    def record(request: Any, **_: Any) -> None:
        authorization = request.headers["Authorization"]
        scopes.append((authorization.decode() if isinstance(authorization, bytes) else authorization).split("/")[2])

    parent._session.register("before-send.sts.AssumeRole", record)
    parent._session.set_config_variable("region", "ap-southeast-2")
    arc.whoami(arc.assume_role(parent, role_arn("A")))
    assert scopes == ["ap-southeast-2"], "signed for the parent's region"
