"""Load: 64 threads calling through a 3-hop chain across 6 refresh cycles of every hop.

The main thread moves a time-machine clock in steps (moto is in-process, so
its clock moves too); at each step the 64 threads make one API call each,
between two barriers. Every request, the API calls and each hop's AssumeRole
calls alike, is checked in a ``before-sign`` hook against the expiry moto gave
the credentials it is signed with.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
from typing import Any

import boto3
import botocore.config
import time_machine
from moto.sts.models import sts_backends

import assume_role_chain as arc
from tests.conftest import role_arn
from tests.faults import at

THREADS = 64
HOPS = [role_arn("load-a"), role_arn("load-b"), role_arn("load-c")]
MARGIN = dt.timedelta(seconds=60)  # refresh_windows(900).margin
# When each cycle's refresh happens, in seconds after the credentials were issued:
# at the opening of the advisory window (675 s), inside it, at the opening of the
# mandatory window (750 s), one second before the margin (840 s), inside the margin
# (no call for a while) and after expiry (900 s).
REFRESH_AT = (676, 700, 751, 839, 860, 905)


def schedule() -> list[int]:
    """Clock steps: the first fetch, then per cycle the refresh step, after a quiet one in every other cycle."""
    steps, issued = [0], 0
    for cycle, offset in enumerate(REFRESH_AT):
        steps += [issued + 400, issued + offset] if cycle % 2 else [issued + offset]
        issued += offset  # every hop was refreshed at that step
    return steps


def issued_credentials() -> dict[str, tuple[str, dt.datetime]]:
    """Access key id -> (role ARN, expiry) of every credential moto has issued."""
    issued = {}
    for by_partition in sts_backends.values():
        for backend in by_partition.values():
            for role in backend.assumed_roles:
                issued[role.access_key_id] = (role.role_arn, role.expiration.replace(tzinfo=dt.timezone.utc))
    return issued


def test_64_threads_through_a_3_hop_chain(parent: boto3.Session, clock: time_machine.Traveller) -> None:
    chain = arc.assume_role_chain(parent, HOPS, DurationSeconds=900)
    signed: list[tuple[str, dt.datetime, str]] = []  # (access key, signing time, operation)

    def record(**event: Any) -> None:
        # The generation the signer is about to use (it makes the same call next).
        key = event["request_signer"]._credentials.get_frozen_credentials().access_key
        signed.append((key, dt.datetime.now(dt.timezone.utc), event["operation_name"]))

    sessions, hop = [], chain
    while hop is not parent:
        sessions.append(hop)
        hop = getattr(hop, "assume_role_parent_session")  # noqa: B009 (set by assume_role)
    for session in [parent, *sessions]:  # AssumeRole of hop n is signed with hop n-1's credentials
        session._session.register("before-sign", record)
    s3 = chain.client("s3", config=botocore.config.Config(max_pool_connections=THREADS))

    steps = schedule()
    barrier = threading.Barrier(THREADS + 1, timeout=120)
    errors: list[BaseException] = []

    def worker() -> None:
        for _ in steps:
            barrier.wait()  # the clock has moved
            try:
                s3.list_buckets()
            except Exception as error:  # counted: there must be none
                errors.append(error)
            barrier.wait()  # every thread is done with this step

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for second in steps:
        clock.move_to(at(second))
        barrier.wait()
        barrier.wait()
    for thread in threads:
        thread.join(30)

    assert errors == [], f"{len(errors)} failed calls, first: {errors[0]!r}"
    issued = issued_credentials()
    calls = [(key, moment) for key, moment, operation in signed if operation == "ListBuckets"]
    assert len(calls) == THREADS * len(steps)
    for key, moment, operation in signed:
        if key == "AKIAPARENTEXAMPLE000":  # the static parent signs hop 1's AssumeRole
            assert operation == "AssumeRole"
            continue
        role, expiry = issued[key]
        assert moment < expiry - MARGIN, f"{operation} signed at {moment:%H:%M:%S} with {role} credentials expiring {expiry:%H:%M:%S}"
    cycles = len(REFRESH_AT) + 1
    per_hop = collections.Counter(role for role, _ in issued.values())
    assert per_hop == dict.fromkeys(HOPS, cycles), "one AssumeRole per hop per cycle"
    assert len({key for key, _ in calls}) == cycles
    print(f"load: {len(steps)} steps, {len(calls)} API calls, {len(signed)} signed requests, "
          f"AssumeRole per hop {sorted(per_hop.values())}, 0 failed")
