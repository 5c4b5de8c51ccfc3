"""Fixtures for the asyncio tests (assume_role_chain_aio).

aioboto3 pins aiobotocore, which pins an older botocore than the newest, so
these tests run in an environment of their own (``.venv-aio`` in
tests/run.sh, always with ``CI=true``). Where aioboto3 is not installed, the
whole folder is skipped here, and only here.
"""

from __future__ import annotations

import pytest

pytest.importorskip("aioboto3", reason="the asyncio tests run in .venv-aio (tests/run.sh): aioboto3 is not installed")
pytest.importorskip("pytest_asyncio", reason="the asyncio tests need pytest-asyncio (tests/run.sh installs it in .venv-aio)")

import aioboto3

from tests.conftest import role_arn

ROLE = role_arn("aio-reader")
ROLE_2 = role_arn("aio-writer")


@pytest.fixture
def aio_parent(aws_env: str) -> aioboto3.Session:
    """An aioboto3 session with the moto-only environment's keys."""
    return aioboto3.Session()
