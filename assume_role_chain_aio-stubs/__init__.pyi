# Generated from assume_role_chain_aio.py by tests/packaging/make_stubs.py: do not edit.

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Union

import aioboto3
import aiobotocore.credentials
import aiobotocore.session
import boto3

from assume_role_chain import JSONDict

__all__ = ['assume_role', 'assume_role_chain', 'get_credentials', 'patch_aioboto3', 'refreshable_session', 'whoami']
logger: Any
AsyncParent = Union[aioboto3.Session, aiobotocore.session.AioSession, boto3.Session]
def assume_role(parent: AsyncParent, RoleArn: str | Mapping[str, Any], **kwargs: Any) -> Any: ...
def assume_role_chain(parent: AsyncParent, roles: Sequence[str | Mapping[str, Any]], **common: Any) -> Any: ...
def refreshable_session(fetch: Callable[[], Mapping[str, Any]] | Callable[[], Coroutine[Any, Any, Mapping[str, Any]]], **kwargs: Any) -> aioboto3.Session: ...
def patch_aioboto3() -> None: ...
async def whoami(session: aioboto3.Session | aiobotocore.session.AioSession) -> JSONDict: ...
async def get_credentials(session: aioboto3.Session | aiobotocore.session.AioSession) -> dict[str, str | None]: ...
