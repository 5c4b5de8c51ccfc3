"""The README's two Quick start commands: the demo, and the test command CI runs."""

from __future__ import annotations

import re
import subprocess
import sys

from .vendored import ROOT


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "README's Quick start has no sh block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_ci_runs_exactly_the_readme_test_command_with_ci_true() -> None:
    demo, test_command = quick_start_commands()
    assert test_command == "bash tests/run.sh"
    script = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in script if line and not line.startswith("#")]
    assert commands[-2:] == ["export CI=true", f"exec {test_command}"]
    # The demo's environment is .venv; the test command never touches it.
    assert ".venv " in demo or ".venv/" in demo
    run_sh = (ROOT / "tests" / "run.sh").read_text()
    assert not re.search(r"(?<![\w-])\.venv(?![\w-])", "\n".join(
        line for line in run_sh.splitlines() if not line.lstrip().startswith("#")))


def test_demo_explains_the_refresh_and_the_second_process_hits_the_cache() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py")],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "AssumeRole calls for 200 API calls: 0" in out
    assert "LogReader's credentials have 3 min left" in out
    assert "refreshed LogReader with 1 AssumeRole call (4 in all)" in out
    assert out.count("fake clock: ") == 3
    # After the refresh and in the second process every hop reads from the same fake time.
    after = out.split("fake clock: ")[2:]
    for part in after:
        assert re.findall(r"from now", part) and set(re.findall(r"(\d+) min \d+ s from now", part)) == {"48", "15"}
    assert out.rstrip().endswith("cache hits: 3, AssumeRole calls: 0")
