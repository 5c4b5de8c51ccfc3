"""STS without a region: refused at construction where botocore could not sign, unchanged where it can."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest

import assume_role_chain as arc
from tests.conftest import role_arn

GOOD = role_arn("Reader")


def use_aws_endpoint_url(endpoint: str, monkeypatch: pytest.MonkeyPatch, config: Path) -> dict[str, Any]:
    return {}  # aws_env sets AWS_ENDPOINT_URL


def use_sts_endpoint_url(endpoint: str, monkeypatch: pytest.MonkeyPatch, config: Path) -> dict[str, Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", endpoint)
    return {}


def use_profile_endpoint_url(endpoint: str, monkeypatch: pytest.MonkeyPatch, config: Path) -> dict[str, Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    config.write_text(f"[default]\nendpoint_url = {endpoint}\n")
    return {}


def use_services_section(endpoint: str, monkeypatch: pytest.MonkeyPatch, config: Path) -> dict[str, Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    config.write_text(f"[default]\nservices = local\n[services local]\nsts =\n  endpoint_url = {endpoint}\n")
    return {}


def use_sts_client_kwargs(endpoint: str, monkeypatch: pytest.MonkeyPatch, config: Path) -> dict[str, Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    return {"sts_client_kwargs": {"endpoint_url": endpoint}}


SETUPS: dict[str, Callable[[str, pytest.MonkeyPatch, Path], dict[str, Any]]] = {
    "AWS_ENDPOINT_URL": use_aws_endpoint_url,
    "AWS_ENDPOINT_URL_STS": use_sts_endpoint_url,
    "profile-endpoint_url": use_profile_endpoint_url,
    "services-section": use_services_section,
    "sts_client_kwargs": use_sts_client_kwargs,
}


@pytest.fixture(params=list(SETUPS))
def endpoint_without_region(request: pytest.FixtureRequest, aws_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """A parent with no region whose STS endpoint URL is configured one way or another."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    return SETUPS[request.param](aws_env, monkeypatch, tmp_path / "aws-config")


def clients_created(session: boto3.Session) -> list[str]:
    created: list[str] = []
    session._session.register("creating-client-class", lambda class_attributes, **_: created.append("client"))
    return created


def test_no_region_with_an_endpoint_url_is_refused_at_construction(endpoint_without_region: dict[str, Any], connections: list[Any]) -> None:
    parent = boto3.Session()
    assert parent.region_name is None
    created = clients_created(parent)
    for build in (
        lambda: arc.assume_role(parent, GOOD, **endpoint_without_region),
        lambda: arc.assume_role_chain(parent, [GOOD, role_arn("B")], **endpoint_without_region),
    ):
        with pytest.raises(botocore.exceptions.ParamValidationError) as raised:
            build()
        message = str(raised.value)
        assert "region_name" in message and "AWS_DEFAULT_REGION" in message and "profile" in message
        assert "127.0.0.1" in message  # which STS endpoint needs it
    assert connections == [] and created == [], "decided without a network call and without building a client"


def identity(session: boto3.Session, endpoint: str) -> str:
    client = session.client("sts", endpoint_url=endpoint, region_name=session.region_name or "us-east-1")
    return str(client.get_caller_identity()["Arn"])


def test_a_region_from_any_source_makes_it_work(endpoint_without_region: dict[str, Any], aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    child = arc.assume_role(boto3.Session(), GOOD, RoleSessionName="r1", region_name="eu-west-1", **endpoint_without_region)
    assert child.region_name == "eu-west-1"
    assert identity(child, aws_env).endswith(":assumed-role/Reader/r1")  # STS signed for the child's region
    sts_options = {**endpoint_without_region.get("sts_client_kwargs", {}), "region_name": "eu-west-2"}
    only_sts = arc.assume_role(boto3.Session(), GOOD, sts_client_kwargs=sts_options)
    assert arc.get_credentials(only_sts)["token"]  # AssumeRole worked; the child itself still has no region
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    chain = arc.assume_role_chain(boto3.Session(), [GOOD, role_arn("B")], RoleSessionName="r2", **endpoint_without_region)
    assert identity(chain, aws_env).endswith(":assumed-role/B/r2")


def test_cli_names_region(endpoint_without_region: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    options = ["--sts-client-kwargs", json.dumps(endpoint_without_region["sts_client_kwargs"])] if endpoint_without_region else []
    assert arc.main([GOOD, *options]) == arc.EXIT_BAD_ARGUMENTS
    err = capsys.readouterr().err
    assert "--region" in err and "region_name" not in err and len(err.strip().splitlines()) == 1
    assert arc.main([GOOD, "--region", "us-east-1", *options]) == 0


class Intercepted(Exception):
    """Raised in place of sending a request (the test machine cannot reach AWS)."""


def test_without_an_endpoint_url_sts_is_reached_globally_as_before(aws_env: str, monkeypatch: pytest.MonkeyPatch, connections: list[Any]) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    parent = boto3.Session()
    sent: list[tuple[str, str]] = []

    def intercept(request: Any, **_: Any) -> None:
        authorization = request.headers["Authorization"]
        sent.append((request.url, authorization.decode() if isinstance(authorization, bytes) else authorization))
        raise Intercepted

    parent._session.register("before-send.sts", intercept)
    for child in (arc.assume_role(parent, GOOD), arc.assume_role_chain(parent, [GOOD, role_arn("B")]).assume_role_parent_session):  # type: ignore[attr-defined]
        assert child.region_name is None  # like its parent
        with pytest.raises(Intercepted):
            child.get_credentials().get_frozen_credentials()  # type: ignore[union-attr]
    assert [url for url, _ in sent] == ["https://sts.amazonaws.com/"] * 2
    assert all("/us-east-1/sts/aws4_request" in authorization for _, authorization in sent)
    assert connections == []


def test_validate_false_leaves_it_to_botocore(endpoint_without_region: dict[str, Any]) -> None:
    child = arc.assume_role(boto3.Session(), GOOD, validate=False, **endpoint_without_region)
    with pytest.raises(botocore.exceptions.NoRegionError):
        arc.whoami(child)
