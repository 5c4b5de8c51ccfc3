"""The JSON file cache, and the credential cache used by assume_role."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

import assume_role_chain as arc
from tests.conftest import SentRequests, role_arn, user_session

ENTRY = {
    "AccessKeyId": "ASIAEXAMPLE",
    "SecretAccessKey": "secret",
    "SessionToken": "token",
    "Expiration": "2030-01-01T00:00:00Z",
}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_round_trip_and_mapping_protocol(tmp_path: Path) -> None:
    cache = arc.JSONFileCache(tmp_path / "c")
    cache["key-1"] = ENTRY
    assert cache["key-1"] == ENTRY
    assert "key-1" in cache and "other" not in cache
    assert list(cache) == ["key-1"] and len(cache) == 1
    del cache["key-1"]
    with pytest.raises(KeyError):
        cache["key-1"]


def test_folder_0700_and_files_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        cache = arc.JSONFileCache(tmp_path / "deep" / "cache")
        cache["k"] = ENTRY
    finally:
        os.umask(old)
    folder = tmp_path / "deep" / "cache"
    assert mode(folder) == 0o700
    [entry] = list(folder.glob("*.json"))
    assert mode(entry) == 0o600


def test_keys_are_hashed_so_no_path_traversal(tmp_path: Path) -> None:
    cache = arc.JSONFileCache(tmp_path / "c")
    cache["../../escape"] = ENTRY
    cache["/etc/passwd"] = ENTRY
    assert sorted(p.parent for p in tmp_path.rglob("*.json")) == [tmp_path / "c"] * 2
    assert all(len(p.stem) == 64 for p in (tmp_path / "c").glob("*.json"))


@pytest.mark.parametrize("content", [b"", b"{", b'{"Key": "k", "AccessKeyId": "A"', b"[]", b"\x00\xff\xfe", b"null", b"x" * 100_000])
def test_broken_files_are_misses_and_get_replaced(tmp_path: Path, content: bytes) -> None:
    cache = arc.JSONFileCache(tmp_path)
    cache["k"] = ENTRY
    [path] = list(tmp_path.glob("*.json"))
    path.write_bytes(content)
    with pytest.raises(KeyError):
        cache["k"]
    cache["k"] = ENTRY
    assert cache["k"] == ENTRY


def test_a_file_for_another_key_is_a_miss(tmp_path: Path) -> None:
    cache = arc.JSONFileCache(tmp_path)
    cache["a"] = ENTRY
    [path] = list(tmp_path.glob("*.json"))
    os.replace(path, tmp_path / (arc.JSONFileCache._file_stem("b") + ".json"))
    with pytest.raises(KeyError):
        cache["b"]


def test_failed_write_leaves_no_temporary_file_and_keeps_the_old_entry(tmp_path: Path) -> None:
    cache = arc.JSONFileCache(tmp_path)
    cache["k"] = ENTRY
    with pytest.raises(TypeError):
        cache["k"] = {**ENTRY, "bad": object()}
    assert cache["k"] == ENTRY
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".tmp-left-by-a-killed-writer"
    stale.write_text("{")
    old = dt.datetime.now().timestamp() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".tmp-being-written-now"
    fresh.write_text("{")
    arc.JSONFileCache(tmp_path)["k"] = ENTRY
    assert not stale.exists() and fresh.exists()


def test_entries_hold_only_credentials_and_iso_times(parent: boto3.Session, tmp_path: Path) -> None:
    cache = arc.JSONFileCache(tmp_path)
    arc.assume_role(parent, role_arn("A"), cache=cache).get_credentials().get_frozen_credentials()  # type: ignore[union-attr]
    [path] = list(tmp_path.glob("*.json"))
    entry = json.loads(path.read_text())
    assert set(entry) <= {"Key", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration", "Issued", "AccountId"}
    assert entry["Expiration"].endswith("Z") and dt.datetime.fromisoformat(entry["Expiration"].replace("Z", "+00:00"))


def test_warm_cache_makes_zero_sts_calls(parent: boto3.Session, tmp_path: Path, sts_calls: Callable[[], int]) -> None:
    roles = [role_arn("A"), role_arn("B"), role_arn("C")]
    first = arc.assume_role_chain(parent, roles, cache=arc.JSONFileCache(tmp_path))
    first_arn = arc.whoami(first)["Arn"]
    assert sts_calls() == 3
    second = arc.assume_role_chain(boto3.Session(), roles, cache=arc.JSONFileCache(tmp_path))
    assert arc.whoami(second)["Arn"] == first_arn
    assert sts_calls() == 3


def test_plain_dict_cache_works(parent: boto3.Session, sts_calls: Callable[[], int]) -> None:
    cache: dict[str, object] = {}
    arc.whoami(arc.assume_role(parent, role_arn("A"), cache=cache))
    arc.whoami(arc.assume_role(parent, role_arn("A"), cache=cache))
    assert sts_calls() == 1 and len(cache) == 1


def test_two_parents_never_share_an_entry(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sts_calls: Callable[[], int]) -> None:
    cache = arc.JSONFileCache(tmp_path)
    parent_a, parent_b = user_session("parent-a"), user_session("parent-b")  # two principals
    key_a = arc.assume_role(parent_a, role_arn("A"), cache=cache).get_credentials().get_frozen_credentials().access_key  # type: ignore[union-attr]
    key_b = arc.assume_role(parent_b, role_arn("A"), cache=cache).get_credentials().get_frozen_credentials().access_key  # type: ignore[union-attr]
    assert key_a != key_b and sts_calls() == 2 and len(cache) == 2


def test_every_argument_but_token_code_is_in_the_key(parent: boto3.Session, tmp_path: Path, sts_calls: Callable[[], int]) -> None:
    cache = arc.JSONFileCache(tmp_path)
    for kwargs in ({}, {"ExternalId": "one-id"}, {"ExternalId": "two-id"}, {"DurationSeconds": 1800}, {"Tags": {"a": "b"}}, {"RoleSessionName": "named"}):
        arc.whoami(arc.assume_role(parent, role_arn("A"), cache=cache, **kwargs))  # type: ignore[arg-type]
    assert sts_calls() == 6
    serial = "arn:aws:iam::123456789012:mfa/alice"
    arc.whoami(arc.assume_role(parent, role_arn("A"), cache=cache, SerialNumber=serial, TokenCode="111111"))
    arc.whoami(arc.assume_role(parent, role_arn("A"), cache=cache, SerialNumber=serial, TokenCode="222222"))
    assert sts_calls() == 7, "a new TokenCode alone does not make a new entry"


def test_entries_of_other_regions_and_endpoints_are_separate(parent: boto3.Session, tmp_path: Path, sts_calls: Callable[[], int], aws_env: str) -> None:
    cache = arc.JSONFileCache(tmp_path)
    arc.whoami(arc.assume_role(parent, role_arn("A"), cache=cache))
    arc.whoami(arc.assume_role(parent, role_arn("A"), cache=cache, sts_client_kwargs={"region_name": "eu-west-1"}))
    arc.whoami(arc.assume_role(parent, role_arn("A"), cache=cache, sts_client_kwargs={"endpoint_url": aws_env + "/"}))
    assert sts_calls() == 3


def test_cache_written_with_botocore_style_expiration_is_understood(parent: boto3.Session, sent_assume_role_requests: SentRequests) -> None:
    class Recording(dict[str, object]):
        pass

    cache = Recording()
    arc.whoami(arc.assume_role(parent, role_arn("A"), cache=cache))
    [key] = list(cache)
    entry = dict(cache[key])  # type: ignore[call-overload]
    expiry = dt.datetime.fromisoformat(str(entry["Expiration"]).replace("Z", "+00:00"))
    entry["Expiration"] = expiry.strftime("%Y-%m-%dT%H:%M:%SUTC")
    cache[key] = entry
    arc.whoami(arc.assume_role(parent, role_arn("A"), cache=cache))
    assert len(sent_assume_role_requests) == 1
