"""A tour of assume-role-chain against a local STS (moto), no AWS account needed.

Run: python examples/demo.py

1. A parent session and a three-hop role chain A -> B -> C.
2. The identity and expiry at each hop.
3. 200 API calls under a fake clock, then a jump to 3 minutes before the
   900 s credentials expire: the chain refreshes that hop, once.
4. A second run in a fresh process, served from the JSON file cache with
   zero AssumeRole calls.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3

import assume_role_chain as arc

ACCOUNT = "123456789012"
ROLES = [f"arn:aws:iam::{ACCOUNT}:role/{name}" for name in ("OrgAuditor", "SecurityHub", "LogReader")]
BOLD, DIM, GREEN, CYAN, RESET = ("\033[1m", "\033[2m", "\033[32m", "\033[36m", "\033[0m") if sys.stdout.isatty() else ("",) * 5


def heading(text: str) -> None:
    print(f"\n{BOLD}{text}{RESET}")


def isolate_environment(endpoint: str, home: str) -> None:
    """Point boto3 at the local STS with throwaway keys; never at a real account."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID="AKIADEMOPARENT000000",
        AWS_SECRET_ACCESS_KEY="demo-parent-secret",
        AWS_DEFAULT_REGION="eu-west-1",
        AWS_ENDPOINT_URL=endpoint,
        AWS_CONFIG_FILE=os.path.join(home, "config"),
        AWS_SHARED_CREDENTIALS_FILE=os.path.join(home, "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )


def build_chain(cache: arc.JSONFileCache) -> boto3.Session:
    parent = boto3.Session()
    hops: list[str | dict[str, object]] = [*ROLES[:2], {"RoleArn": ROLES[2], "DurationSeconds": 900}]
    return arc.assume_role_chain(parent, hops, RoleSessionName="demo", cache=cache)


def hops_of(session: boto3.Session) -> list[boto3.Session]:
    hops = []
    while hasattr(session, "assume_role_parent_session"):
        hops.append(session)
        session = session.assume_role_parent_session
    return list(reversed(hops))


def show_chain(chain: boto3.Session, now: dt.datetime, when: str) -> None:
    print(f"  {DIM}fake clock: {now:%H:%M:%S} UTC ({when}){RESET}")
    for number, hop in enumerate(hops_of(chain), start=1):
        arn = arc.whoami(hop)["Arn"]
        credentials = hop.get_credentials()
        assert credentials is not None
        key = str(credentials.get_frozen_credentials().access_key)
        expiry: dt.datetime = credentials._expiry_time  # type: ignore[attr-defined]
        left = int((expiry - now).total_seconds())
        print(f"  hop {number}  {CYAN}{arn}{RESET}")
        print(f"         key …{key[-6:]}  expires {expiry:%H:%M:%S} UTC, {left // 60} min {left % 60} s from now")


def first_run(cache_dir: str, start: dt.datetime) -> None:
    import time_machine
    from moto.sts.models import sts_backends

    def assume_role_calls() -> int:
        return sum(len(b.assumed_roles) for by_region in sts_backends.values() for b in by_region.values())

    events: list[arc.RefreshEvent] = []
    arc.add_refresh_listener(events.append)
    with time_machine.travel(start, tick=False) as clock:
        heading("1. A parent session and the chain OrgAuditor -> SecurityHub -> LogReader")
        print(f"  parent  {CYAN}{arc.whoami(boto3.Session())['Arn']}{RESET}")
        chain = build_chain(arc.JSONFileCache(cache_dir))
        print(f"  sessions created; AssumeRole calls so far: {assume_role_calls()} (nothing is fetched before first use)")

        heading("2. Identity and expiry at each hop (LogReader asked for 900 s; the others got STS's default, 1 hour)")
        show_chain(chain, start, "the start")
        print(f"  AssumeRole calls: {GREEN}{assume_role_calls()}{RESET} (one per hop)")

        heading("3. 200 API calls as LogReader while the fake clock runs 11 minutes")
        before = assume_role_calls()
        sts = chain.client("sts")
        for step in range(200):
            clock.move_to(start + dt.timedelta(seconds=step * 3.3))
            sts.get_caller_identity()
        print(f"  AssumeRole calls for 200 API calls: {GREEN}{assume_role_calls() - before}{RESET} "
              f"{DIM}(botocore's own 15-minute refresh window would make one per call for 900 s credentials){RESET}")
        print("  The fake clock jumps to 12 min after the start: LogReader's credentials have 3 min left.\n"
              "  This library refreshes credentials when a quarter of their lifetime is left (225 s of 900 s),\n"
              "  so the next API call fetches new ones for LogReader; the other hops, 48 min left, stay as they are.")
        clock.move_to(start + dt.timedelta(minutes=12))
        sts.get_caller_identity()
        fetched = [e for e in events if e.outcome == "fetched"]
        latest = fetched[-1]
        assert latest.expiry is not None
        print(f"  refreshed {CYAN}{latest.source.rpartition('/')[2]}{RESET} with 1 AssumeRole call "
              f"({GREEN}{assume_role_calls()}{RESET} in all); its new credentials expire at {latest.expiry:%H:%M:%S} UTC")
        show_chain(chain, start + dt.timedelta(minutes=12), "the start + 12 min")


def second_run(cache_dir: str, now: dt.datetime) -> None:
    import time_machine

    events: list[arc.RefreshEvent] = []
    arc.add_refresh_listener(events.append)
    with time_machine.travel(now, tick=False):
        chain = build_chain(arc.JSONFileCache(cache_dir))
        show_chain(chain, now, "the start + 12 min, as the first process left it")
    fetched = sum(1 for e in events if e.outcome == "fetched")
    hits = sum(1 for e in events if e.outcome == "cache-hit")
    print(f"  cache hits: {GREEN}{hits}{RESET}, AssumeRole calls: {GREEN}{fetched}{RESET}")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--second-run":
        second_run(sys.argv[2], dt.datetime.fromisoformat(sys.argv[3]))
        return
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with tempfile.TemporaryDirectory() as home:
        isolate_environment(f"http://{host}:{port}", home)
        cache_dir = os.path.join(home, "cache")
        print(f"{BOLD}assume-role-chain {arc.__version__}{RESET} against a local STS at http://{host}:{port}")
        print("(moto, started in this process: no AWS account, no network. A fake clock lets the demo\n"
              " skip ahead in time; every time shown is on that clock.)")
        start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        try:
            first_run(cache_dir, start)
            heading("4. A second process with the same JSON file cache, its fake clock where the first one stopped")
            files = sorted(p.name for p in Path(cache_dir).iterdir() if p.suffix == ".json")
            mode = oct(Path(cache_dir).stat().st_mode & 0o777)
            print(f"  cache folder {mode}, {len(files)} entries (file names are hashes, mode 0600)")
            later = start + dt.timedelta(minutes=12)
            subprocess.run([sys.executable, __file__, "--second-run", cache_dir, later.isoformat()], check=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
