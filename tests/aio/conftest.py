"""Fixtures for the asyncio tests (assume_role_chain_aio).

aioboto3 pins aiobotocore, which pins an older botocore than the newest, so
these tests run in an environment of their own (``.venv-aio`` in
tests/run.sh, always with ``CI=true``). Where aioboto3 or pytest-asyncio is
not installed, tests/conftest.py does not collect this folder at all.
"""

from __future__ import annotations

import aioboto3
import pytest

from tests.conftest import role_arn

ROLE = role_arn("aio-reader")
ROLE_2 = role_arn("aio-writer")


@pytest.fixture
def aio_parent(aws_env: str) -> aioboto3.Session:
    """An aioboto3 session with the moto-only environment's keys."""
    return aioboto3.Session()
