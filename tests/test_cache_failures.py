"""A cache must never cost the user their credentials (and cache trust, checked on every write).

A cache folder that cannot be created or written (read-only file system,
a missing parent that cannot be created, a file where a folder should be, no
permission, no space left) gives one warning naming the folder and the
reason, and the session works uncached. The same for a dict-like cache whose
methods raise: one warning per cache and error type, never a secret. The
read-only and full file systems are real tmpfs mounts (root, as in CI);
"no permission" is a child process running as another uid (root ignores
permission bits).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import boto3
import pytest

import assume_role_chain as arc
from tests.conftest import role_arn
from tests.servers import OTHER_UID, as_other_user, require

SCRIPT = str(Path(sys.executable).parent / "assume-role-chain")
KEY = "failure-test-entry"
ENTRY = {"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "secret-of-the-entry",
         "SessionToken": "token-of-the-entry", "Expiration": "2099-01-01T00:00:00Z"}


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "assume_role_chain" and r.levelno >= logging.WARNING]


def access_key(session: boto3.Session) -> str:
    return str(session.get_credentials().get_frozen_credentials().access_key)  # type: ignore[union-attr]


# -- real unusable folders -------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(mount_point: Path, size: str = "1m") -> Iterator[Path]:
    """A fresh tmpfs at ``mount_point`` (needs root and mount), unmounted afterwards."""
    require(hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None, "root and mount (for a tmpfs)")
    mount_point.mkdir(mode=0o700)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount_point)],
                            capture_output=True, text=True, check=False)
    require(result.returncode == 0, f"mounting a tmpfs ({result.stderr.strip()})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def remount_read_only(mount_point: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
    with pytest.raises(OSError) as refused:
        (mount_point / "probe").write_text("x")
    assert refused.value.errno == errno.EROFS  # read-only even for root


@contextlib.contextmanager
def read_only_fs_new_folder(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "ro") as mount_point:
        remount_read_only(mount_point)
        yield mount_point / "cache"


@contextlib.contextmanager
def read_only_fs_existing_folder(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "ro") as mount_point:
        (mount_point / "cache").mkdir(mode=0o700)
        remount_read_only(mount_point)
        yield mount_point / "cache"


@contextlib.contextmanager
def read_only_fs_missing_parent(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "ro") as mount_point:
        remount_read_only(mount_point)
        yield mount_point / "missing" / "cache"


@contextlib.contextmanager
def uncreatable_parent(tmp_path: Path) -> Iterator[Path]:
    folder = Path("/proc") / f"nope-{uuid.uuid4().hex}" / "cache"  # /proc takes no new folders, not even from root
    yield folder
    assert not folder.parent.exists()


@contextlib.contextmanager
def file_in_place_of_a_parent(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "a-file").write_text("not a folder")
    yield tmp_path / "a-file" / "cache"
    assert (tmp_path / "a-file").read_text() == "not a folder"


@contextlib.contextmanager
def full_file_system(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "full", size="8k") as mount_point:
        (mount_point / "cache").mkdir(mode=0o700)
        with pytest.raises(OSError) as full, open(mount_point / "filler", "wb") as filler:
            filler.write(b"x" * 65536)
            filler.flush()
            os.fsync(filler.fileno())
        assert full.value.errno == errno.ENOSPC
        yield mount_point / "cache"
        assert [p.name for p in (mount_point / "cache").iterdir() if not p.name.startswith(".locks")] == [], "a temporary file was left"


UNUSABLE_FOLDERS: dict[str, tuple[Callable[[Path], contextlib.AbstractContextManager[Path]], str]] = {
    "read-only-fs-new-folder": (read_only_fs_new_folder, "cannot be created (Read-only file system)"),
    "read-only-fs-existing-folder": (read_only_fs_existing_folder, "cannot be written (Read-only file system)"),
    "read-only-fs-missing-parent": (read_only_fs_missing_parent, "cannot be created (Read-only file system)"),
    "missing-parent-uncreatable": (uncreatable_parent, "cannot be created (No such file or directory)"),
    "file-in-place-of-a-parent": (file_in_place_of_a_parent, "cannot be created (Not a directory)"),
    "no-space-left": (full_file_system, "cannot be written (No space left on device)"),
}


@pytest.mark.parametrize("case", list(UNUSABLE_FOLDERS))
def test_an_unusable_folder_warns_once_and_the_session_works_uncached(
    case: str, tmp_path: Path, parent: boto3.Session, sts_calls: Callable[[], int], caplog: pytest.LogCaptureFixture,
) -> None:
    make, reason = UNUSABLE_FOLDERS[case]
    with make(tmp_path) as folder, caplog.at_level(logging.DEBUG, logger="assume_role_chain"):
        cache = arc.JSONFileCache(folder)
        first = arc.assume_role(parent, role_arn("A"), cache=cache)
        assert ":assumed-role/A/" in arc.whoami(first)["Arn"]
        second = arc.assume_role(parent, role_arn("A"), cache=cache)
        assert access_key(second) != access_key(first)
        assert sts_calls() == 2, "each session fetched for itself: nothing was cached, nothing failed"
    assert warnings_of(caplog) == [f"credential cache folder {folder} {reason}: not used"]


def test_direct_writes_to_an_unusable_folder_raise_the_os_error(tmp_path: Path) -> None:
    with uncreatable_parent(tmp_path) as folder:
        cache = arc.JSONFileCache(folder)
        with pytest.raises(FileNotFoundError):
            cache[KEY] = ENTRY
        with pytest.raises(KeyError):
            cache[KEY]
        assert KEY not in cache and list(cache) == []
        with cache.lock(KEY) as acquired:
            assert not acquired


# -- no permission (another uid: root ignores permission bits) --------------------------------


def run_as_other_user(folder: Path, cwd: Path) -> dict[str, Any]:
    """Two sessions of a custom fetch with one cache, as uid OTHER_UID; what they saw."""
    read_end, write_end = os.pipe()

    def action() -> None:
        os.close(read_end)
        seen: list[str] = []
        handler = logging.Handler(logging.WARNING)
        handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
        logging.getLogger("assume_role_chain").addHandler(handler)
        fetches: list[int] = []

        def fetch() -> dict[str, Any]:
            fetches.append(1)
            return {"AccessKeyId": f"ASIAFETCHED{len(fetches):09d}", "SecretAccessKey": "s" * 20, "SessionToken": "t" * 20,
                    "Expiration": dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)}

        cache = arc.JSONFileCache(folder)
        keys = [access_key(arc.refreshable_session(fetch, cache=cache, cache_key=KEY)) for _ in range(2)]
        os.write(write_end, json.dumps({"keys": keys, "fetches": len(fetches), "warnings": seen}).encode())
        os.close(write_end)

    try:
        as_other_user(action, cwd)
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        return dict(json.loads(pipe.read()))


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A folder that another uid can search (pytest's tmp_path is 0700 root)."""
    folder = Path(tempfile.mkdtemp(prefix="arc-eacces-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_parent_the_user_cannot_write_warns_once_and_works_uncached(shared_root: Path) -> None:
    folder = shared_root / "cache"  # the parent belongs to root, 0755
    seen = run_as_other_user(folder, shared_root)
    assert seen["keys"] == ["ASIAFETCHED000000001", "ASIAFETCHED000000002"] and seen["fetches"] == 2
    assert seen["warnings"] == [f"credential cache folder {folder} cannot be created (Permission denied): not used"]
    assert not folder.exists()


def test_an_own_folder_without_write_permission_warns_once_and_works_uncached(shared_root: Path) -> None:
    folder = shared_root / "cache"
    folder.mkdir(mode=0o500)
    os.chown(folder, OTHER_UID, OTHER_UID)
    seen = run_as_other_user(folder, shared_root)
    assert seen["keys"] == ["ASIAFETCHED000000001", "ASIAFETCHED000000002"] and seen["fetches"] == 2
    assert seen["warnings"] == [f"credential cache folder {folder} cannot be written (Permission denied): not used"]
    assert list(folder.iterdir()) == []


# -- dict-like caches that fail -------------------------------------------------------------


class FailingCache(MutableMapping[str, Any]):
    """A user's dict-like cache (a network store, say) whose methods raise; errors quote the value."""

    def __init__(self, get: type[Exception] | None = None, set_: type[Exception] | None = None,
                 delete: type[Exception] | None = None, lock: type[Exception] | None = None) -> None:
        self.data: dict[str, Any] = {}
        self.get_error, self.set_error, self.delete_error, self.lock_error = get, set_, delete, lock
        if lock is not None:
            self.lock = self._failing_lock

    def _failing_lock(self, key: str) -> contextlib.AbstractContextManager[Any]:
        assert self.lock_error is not None
        raise self.lock_error(f"lock server down for {key}")

    def __getitem__(self, key: str) -> Any:
        if self.get_error is not None:
            raise self.get_error(f"store unreachable for {key}")
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if self.set_error is not None:
            raise self.set_error(f"cannot store {value!r}")  # the value holds the secret
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        if self.delete_error is not None:
            raise self.delete_error(f"cannot delete {key}")
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


FAILING_CACHES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "get-raises": ({"get": ConnectionError}, ["read ConnectionError"]),
    "set-raises": ({"set_": OSError}, ["write OSError"]),
    "set-raises-a-non-os-error": ({"set_": ValueError}, ["write ValueError"]),
    "both-raise-the-same-type": ({"get": RuntimeError, "set_": RuntimeError}, ["read RuntimeError"]),
    "both-raise-different-types": ({"get": TimeoutError, "set_": TypeError}, ["read TimeoutError"]),  # after a failure, no more operations in that refresh
    "lock-raises": ({"lock": RuntimeError}, ["lock RuntimeError"]),
    "delete-raises": ({"delete": PermissionError}, []),  # the engine never deletes
}


@pytest.mark.parametrize("case", list(FAILING_CACHES))
def test_a_failing_dict_like_cache_warns_once_per_error_type_and_works_uncached(
    case: str, parent: boto3.Session, sts_calls: Callable[[], int], caplog: pytest.LogCaptureFixture,
) -> None:
    failures, expected = FAILING_CACHES[case]
    cache = FailingCache(**failures)
    secrets = []
    with caplog.at_level(logging.DEBUG, logger="assume_role_chain"):
        for _ in range(3):
            session = arc.assume_role(parent, role_arn("A"), cache=cache)
            frozen = session.get_credentials().get_frozen_credentials()  # type: ignore[union-attr]
            secrets += [frozen.secret_key, frozen.token]
    works_as_a_cache = not failures.keys() & {"get", "set_", "lock"}  # after a failure the refresh goes on without the store
    assert sts_calls() == (1 if works_as_a_cache else 3)
    messages = warnings_of(caplog)
    assert [m for m in messages if "FailingCache" in m] == [
        f"credential cache FailingCache failed to {action} ({kind}); going on without it"
        for action, kind in (item.split() for item in expected)
    ]
    assert len(messages) == len(expected), messages
    assert not any(secret in record.getMessage() for record in caplog.records for secret in secrets)


def test_a_broken_entry_in_a_working_cache_is_a_quiet_miss(parent: boto3.Session, sts_calls: Callable[[], int], caplog: pytest.LogCaptureFixture) -> None:
    cache: dict[str, Any] = {}
    arc.whoami(arc.assume_role(parent, role_arn("A"), cache=cache))
    [key] = list(cache)
    cache[key] = {"AccessKeyId": "half an entry"}
    with caplog.at_level(logging.WARNING, logger="assume_role_chain"):
        arc.whoami(arc.assume_role(parent, role_arn("A"), cache=cache))
    assert sts_calls() == 2 and warnings_of(caplog) == []
    assert cache[key]["AccessKeyId"] != "half an entry", "the broken entry was replaced"


# -- the folder holds only entries ----------------------------------------------------------------


def test_the_folder_holds_only_entries_and_locks_are_in_a_hidden_subfolder(parent: boto3.Session, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    arc.whoami(arc.assume_role_chain(parent, [role_arn("A"), role_arn("B")], cache=arc.JSONFileCache(folder)))
    visible = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert len(visible) == 2 and all(name.endswith(".json") for name in visible)
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [".locks"]
    locks = folder / ".locks"
    assert locks.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in locks.iterdir()) == sorted(name.replace(".json", ".lock") for name in visible)


def test_an_untrusted_lock_subfolder_is_not_used_and_costs_no_credentials(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "cache"
    cache = arc.JSONFileCache(folder)
    cache["warm-up"] = ENTRY
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (folder / ".locks").symlink_to(elsewhere, target_is_directory=True)
    with caplog.at_level(logging.WARNING, logger="assume_role_chain"):
        with cache.lock(KEY) as acquired:
            assert not acquired
        fresh = {**ENTRY, "Expiration": dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)}
        session = arc.refreshable_session(lambda: fresh, cache=cache, cache_key=KEY)
        assert access_key(session) == "ASIAEXAMPLE"
    assert list(elsewhere.iterdir()) == [], "the lock folder's symlink was followed"
    assert warnings_of(caplog) == [f"credential cache lock folder {folder / '.locks'} is a symbolic link: going on without locks"]


# -- issue 12: trust is checked on every write; `in` agrees with [] ---------------------------------


def folder_made_world_writable(folder: Path, tmp_path: Path) -> Path:
    folder.chmod(0o777)
    return folder


def folder_swapped_for_a_symlink(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "attacker"
    target.mkdir(mode=0o700)
    folder.rename(tmp_path / "moved-away")
    folder.symlink_to(target, target_is_directory=True)
    return target


@pytest.mark.parametrize("change", [folder_made_world_writable, folder_swapped_for_a_symlink])
def test_trust_is_checked_on_every_write_not_only_the_first(change: Callable[[Path, Path], Path], tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    cache = arc.JSONFileCache(folder)
    cache["first"] = ENTRY  # the folder is created and trusted
    real = change(folder, tmp_path)
    before = sorted(p.name for p in real.iterdir())
    with pytest.raises(arc.UnsafeCacheError):
        cache[KEY] = ENTRY
    fresh = {**ENTRY, "Expiration": dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)}
    assert access_key(arc.refreshable_session(lambda: fresh, cache=cache, cache_key="through-the-engine")) == "ASIAEXAMPLE"
    assert sorted(p.name for p in real.iterdir()) == before, "a write went through an untrusted folder"


@pytest.mark.parametrize("content", [
    "for-another-key", b"{}", b'{"Key": 7, "AccessKeyId": "A"}', b"[]", b"{", b"",
])
def test_in_agrees_with_getitem(tmp_path: Path, content: str | bytes) -> None:
    cache = arc.JSONFileCache(tmp_path / "cache")
    cache["a"] = ENTRY
    path = tmp_path / "cache" / (arc.JSONFileCache._file_stem("b") + ".json")
    if content == "for-another-key":
        os.replace(tmp_path / "cache" / (arc.JSONFileCache._file_stem("a") + ".json"), path)
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)
        path.chmod(0o600)
    with pytest.raises(KeyError):
        cache["b"]
    assert "b" not in cache
    assert list(cache) == ([] if content == "for-another-key" else ["a"])


# -- the command line -----------------------------------------------------------------------------


def test_cli_with_an_unusable_cache_dir_prints_credentials_and_one_warning(aws_env: str, sts_calls: Callable[[], int]) -> None:
    folder = f"/proc/nope-{uuid.uuid4().hex}/x"
    result = subprocess.run([SCRIPT, role_arn("A"), "--cache-dir", folder], capture_output=True, text=True,
                            timeout=60, env=os.environ.copy(), check=False)
    assert result.returncode == 0, result.stderr
    values = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert values["AWS_ACCESS_KEY_ID"].startswith("ASIA") and values["AWS_SECRET_ACCESS_KEY"]
    [line] = result.stderr.splitlines()
    assert f"credential cache folder {folder} cannot be created (No such file or directory)" in line, line
    assert sts_calls() == 1
