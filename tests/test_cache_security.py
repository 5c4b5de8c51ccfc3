"""An untrusted cache folder or file is never used: no symlink followed, a warning, a miss.

A folder that is a symlink, belongs to another user or is writable by group or
others is refused: reads miss, writes raise UnsafeCacheError, nothing is
created, changed or deleted through it, and the refresh engine fetches
without it. Such an entry file is a miss and is replaced on the next write.
The files "of another user" are really created by another uid (the tests run
as root in CI).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import assume_role_chain as arc
from tests.servers import OTHER_UID, as_other_user

KEY = "security-test-entry"
PLANTED = {"AccessKeyId": "ASIAPLANTEDBYATTACKER", "SecretAccessKey": "planted-secret-value",
           "SessionToken": "planted-token-value", "Expiration": "2099-01-01T00:00:00Z"}


def fresh_credentials() -> dict[str, Any]:
    expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    return {"AccessKeyId": "ASIAFETCHEDFRESHLY00", "SecretAccessKey": "fetched-secret-value",
            "SessionToken": "fetched-token-value", "Expiration": expiry}


def engine_access_key(cache: arc.JSONFileCache) -> str:
    """What the refresh engine serves from ``fetch`` with this cache (never raises)."""
    session = arc.refreshable_session(fresh_credentials, cache=cache, cache_key=KEY)
    return str(session.get_credentials().get_frozen_credentials().access_key)  # type: ignore[union-attr]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "assume_role_chain" and r.levelno == logging.WARNING]


# -- untrusted folders ----------------------------------------------------------------


def symlinked_folder(tmp_path: Path) -> tuple[Path, Path]:
    real = tmp_path / "real"
    arc.JSONFileCache(real)[KEY] = PLANTED
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    return link, real


def folder_of_another_user(tmp_path: Path) -> tuple[Path, Path]:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    folder = shared / "cache"

    def create() -> None:
        os.mkdir("cache", 0o700)
        Path("cache", arc.JSONFileCache._file_stem(KEY) + ".json").write_text(json.dumps({"Key": KEY, **PLANTED}))

    as_other_user(create, shared)
    assert folder.stat().st_uid == OTHER_UID
    return folder, folder


def writable_folder(mode: int) -> Callable[[Path], tuple[Path, Path]]:
    def make(tmp_path: Path) -> tuple[Path, Path]:
        folder = tmp_path / f"mode-{mode:o}"
        arc.JSONFileCache(folder)[KEY] = PLANTED
        folder.chmod(mode)
        return folder, folder
    return make


UNTRUSTED_FOLDERS = {
    "symlink": (symlinked_folder, "is a symbolic link"),
    "another-user": (folder_of_another_user, f"is owned by uid {OTHER_UID}"),
    "group-writable": (writable_folder(0o770), "is writable by group or others (mode 0770)"),
    "others-writable": (writable_folder(0o707), "is writable by group or others (mode 0707)"),
    "world-writable-sticky": (writable_folder(0o1777), "is writable by group or others"),
}


@pytest.mark.parametrize("case", list(UNTRUSTED_FOLDERS))
def test_an_untrusted_folder_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str) -> None:
    make, reason = UNTRUSTED_FOLDERS[case]
    folder, real = make(tmp_path)
    [planted] = list(real.glob("*.json"))
    before = {path.name: path.read_bytes() for path in real.iterdir()}
    cache = arc.JSONFileCache(folder)
    with caplog.at_level(logging.WARNING, logger="assume_role_chain"):
        with pytest.raises(KeyError):
            cache[KEY]
        assert KEY not in cache and list(cache) == [] and len(cache) == 0
        with pytest.raises(arc.UnsafeCacheError, match=reason.replace("(", r"\(").replace(")", r"\)")):
            cache[KEY] = PLANTED
        with cache.lock(KEY) as acquired:
            assert not acquired
        assert engine_access_key(cache) == "ASIAFETCHEDFRESHLY00"
    assert planted.exists()
    assert {path.name: path.read_bytes() for path in real.iterdir()} == before, "the untrusted folder was changed"
    refused = [m for m in warnings_of(caplog) if m.startswith(f"credential cache folder {folder} {reason}")]
    assert len(refused) == 1 and len(warnings_of(caplog)) == 1, f"expected one clear warning, got {warnings_of(caplog)}"


@pytest.mark.parametrize("case", list(UNTRUSTED_FOLDERS))
def test_nothing_is_deleted_through_an_untrusted_folder(tmp_path: Path, case: str) -> None:
    make, _ = UNTRUSTED_FOLDERS[case]
    folder, real = make(tmp_path)
    [planted] = list(real.glob("*.json"))
    with pytest.raises((KeyError, arc.UnsafeCacheError)):
        del arc.JSONFileCache(folder)[KEY]
    assert planted.exists(), "an entry was deleted through an untrusted folder"


def test_a_file_in_place_of_the_folder_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("{}")
    cache = arc.JSONFileCache(not_a_folder)
    with pytest.raises(KeyError):
        cache[KEY]
    with pytest.raises(arc.UnsafeCacheError, match="is not a folder"):
        cache[KEY] = PLANTED
    assert not_a_folder.read_text() == "{}"
    assert engine_access_key(cache) == "ASIAFETCHEDFRESHLY00"


# -- untrusted entry files ----------------------------------------------------------------


def _planted_entry(tmp_path: Path) -> tuple[arc.JSONFileCache, Path]:
    cache = arc.JSONFileCache(tmp_path / "cache")
    cache["warm-up"] = PLANTED  # the folder exists, trusted
    return cache, Path(cache._path(KEY))


def _symlink_entry(tmp_path: Path, path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"Key": KEY, **PLANTED}))
    outside.chmod(0o600)
    path.symlink_to(outside)


def _entry_of_another_user(tmp_path: Path, path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir(mode=0o777)
    staging.chmod(0o777)

    def create() -> None:
        Path("entry.json").write_text(json.dumps({"Key": KEY, **PLANTED}))

    as_other_user(create, staging)
    os.replace(staging / "entry.json", path)  # the owner stays the other uid
    assert path.stat().st_uid == OTHER_UID


def _writable_entry(mode: int) -> Callable[[Path, Path], None]:
    def make(tmp_path: Path, path: Path) -> None:
        path.write_text(json.dumps({"Key": KEY, **PLANTED}))
        path.chmod(mode)
    return make


UNTRUSTED_FILES = {
    "symlink": (_symlink_entry, "cannot be opened (Too many levels of symbolic links)"),
    "another-user": (_entry_of_another_user, f"is owned by uid {OTHER_UID}"),
    "group-writable": (_writable_entry(0o620), "is writable by group or others (mode 0620)"),
    "others-writable": (_writable_entry(0o602), "is writable by group or others (mode 0602)"),
}


@pytest.mark.parametrize("case", list(UNTRUSTED_FILES))
def test_an_untrusted_entry_is_a_miss_and_gets_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str) -> None:
    make, reason = UNTRUSTED_FILES[case]
    cache, path = _planted_entry(tmp_path)
    make(tmp_path, path)
    with caplog.at_level(logging.WARNING, logger="assume_role_chain"):
        with pytest.raises(KeyError):
            cache[KEY]
        assert KEY not in cache and KEY not in list(cache)
        assert engine_access_key(cache) == "ASIAFETCHEDFRESHLY00"  # fetched, and written back
    expected = f"credential cache file {path} {reason}"
    assert any(m.startswith(expected) and m.endswith("treated as a miss") for m in warnings_of(caplog)), warnings_of(caplog)
    info = path.lstat()
    assert stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o600
    assert cache[KEY]["AccessKeyId"] == "ASIAFETCHEDFRESHLY00"
    if case == "symlink":
        assert "ASIAPLANTEDBYATTACKER" in (tmp_path / "outside.json").read_text(), "the link's target was written"


def test_a_symlinked_lock_file_is_not_followed_and_does_not_block_credentials(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache, _ = _planted_entry(tmp_path)
    target = tmp_path / "elsewhere.lock"
    lock = Path(cache._lock_path(KEY))
    lock.parent.mkdir(mode=0o700)
    lock.symlink_to(target)
    with caplog.at_level(logging.WARNING, logger="assume_role_chain"):
        assert engine_access_key(cache) == "ASIAFETCHEDFRESHLY00"
    assert not target.exists(), "the lock's symlink was followed"
    assert any("lock" in m for m in warnings_of(caplog)), warnings_of(caplog)


def test_an_entry_that_is_a_folder_is_a_miss(tmp_path: Path) -> None:
    cache, path = _planted_entry(tmp_path)
    path.mkdir(mode=0o700)
    with pytest.raises(KeyError):
        cache[KEY]
    assert KEY not in cache
    assert engine_access_key(cache) == "ASIAFETCHEDFRESHLY00"


def test_an_entry_that_is_a_fifo_is_a_miss_without_blocking(tmp_path: Path) -> None:
    cache, path = _planted_entry(tmp_path)
    os.mkfifo(path, 0o600)
    script = ("import sys, assume_role_chain as arc\n"
              "try:\n    arc.JSONFileCache(sys.argv[1])[sys.argv[2]]\nexcept KeyError:\n    print('miss')\n")
    started = time.monotonic()
    try:  # in a child: a read that blocks must not hang the test session
        result = subprocess.run([sys.executable, "-c", script, cache.dir_path, KEY],
                                capture_output=True, text=True, timeout=5, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("reading an entry that is a FIFO blocked (no writer ever opens it)")
    assert result.stdout.strip() == "miss", result.stderr
    assert time.monotonic() - started < 5
