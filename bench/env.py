"""An AWS environment that never touches the user's real configuration."""

import os
from pathlib import Path

ACCOUNT_ID = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/bench-role"
ROLE_SESSION_NAME = "bench"
ASSUMED_ROLE_MARKER = ":assumed-role/bench-role/"
REPO_ROOT = Path(__file__).resolve().parent.parent


def isolated_env(workdir: Path, endpoint_url: str | None = None) -> dict[str, str]:
    """Environment for a child process: fake keys, empty config files, moto endpoint.

    Every inherited ``AWS_*`` and ``BOTO*`` variable is dropped, so a profile,
    session token or web-identity setting of the user cannot leak in.
    """
    config_file = workdir / "aws-config"
    credentials_file = workdir / "aws-credentials"
    config_file.touch()
    credentials_file.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BOTO"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(config_file),
        AWS_SHARED_CREDENTIALS_FILE=str(credentials_file),
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    return env
