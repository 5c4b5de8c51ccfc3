"""Render results: a table on stdout, latest.json, latest.md and latest.png."""

import importlib.metadata
import json
import math
import os
import platform
import sys
import textwrap
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.libs import OURS, PEERS, STATIC, Library

Values = dict[str, float | None]


@dataclass
class Metric:
    """One row of the table. Lower is better for every metric."""

    key: str
    label: str
    unit: str
    values: Values
    notes: dict[str, str] = field(default_factory=dict)
    # Rows measured against static credentials (``baseline``, their value) show
    # ratios to it and go in a table of their own.
    versus_static: bool = False
    baseline: float | None = None

    def best_peer(self) -> tuple[str, float] | None:
        measured = [(v, lib.key) for lib in PEERS if (v := self.values.get(lib.key)) is not None]
        if not measured:
            return None
        value, key = min(measured)
        return key, value

    def ratio(self) -> float | None:
        """Ours divided by the best peer; ``None`` when undefined."""
        ours, best = self.values.get(OURS.key), self.best_peer()
        if ours is None or best is None or best[1] == 0:
            return None
        return ours / best[1]

    def ratio_to_baseline(self, lib: str) -> float | None:
        """``lib``'s value divided by the baseline; ``None`` when undefined."""
        value = self.values.get(lib)
        if value is None or not self.baseline:
            return None
        return value / self.baseline

    def best_peer_to_baseline(self) -> float | None:
        best = self.best_peer()
        return None if best is None else self.ratio_to_baseline(best[0])


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "working tree"


def load_average() -> float:
    """The 1-minute load average (0 where the platform has none)."""
    return round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else 0.0


def metadata(
    libraries: list[Library],
    settings: dict[str, Any],
    seconds: float,
    errors: dict[str, str],
    load_at_start: float,
) -> dict[str, Any]:
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "versions": {name: _version(name) for name in ("boto3", "botocore", "moto", *(lib.key for lib in libraries))},
        "missing_libraries": [lib.key for lib in (OURS, *PEERS) if lib not in libraries],
        "settings": settings,
        "runtime_seconds": round(seconds, 1),
        "load_average": {"start": load_at_start, "end": load_average()},
        "errors": errors,
    }


def _format(value: float | None) -> str:
    if value is None:
        return "—"
    if value == int(value) and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"


def _format_ratio(metric: Metric) -> str:
    ratio = metric.ratio()
    if ratio is not None:
        return f"{ratio:.3g}x"
    best, ours = metric.best_peer(), metric.values.get(OURS.key)
    if best is not None and ours is not None and best[1] == 0:
        return "= (both 0)" if ours == 0 else "n/a (best peer 0)"
    return "—"


def _cell(metric: Metric, lib: Library) -> str:
    text = _format(metric.values.get(lib.key))
    return f"{text} *" if lib.key in metric.notes else text


def _format_times(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.3g}x"


def table(metrics: list[Metric]) -> tuple[list[str], list[list[str]]]:
    """The table of rows compared with the best peer."""
    header = ["Metric (lower is better)", *(lib.key for lib in (OURS, *PEERS)), "ours ÷ best peer"]
    rows = [
        [f"{m.label} [{m.unit}]", *(_cell(m, lib) for lib in (OURS, *PEERS)), _format_ratio(m)]
        for m in metrics
        if not m.versus_static
    ]
    return header, rows


def baseline_table(metrics: list[Metric]) -> tuple[list[str], list[list[str]]]:
    """The table of rows compared with static credentials (empty if there are none)."""
    header = [
        "Metric (lower is better)",
        STATIC,
        *(lib.key for lib in (OURS, *PEERS)),
        "ours ÷ static",
        "best peer ÷ static",
    ]
    rows = [
        [
            f"{m.label} [{m.unit}]",
            _format(m.baseline),
            *(_cell(m, lib) for lib in (OURS, *PEERS)),
            _format_times(m.ratio_to_baseline(OURS.key)),
            _format_times(m.best_peer_to_baseline()),
        ]
        for m in metrics
        if m.versus_static
    ]
    return header, rows


def _notes(metrics: list[Metric]) -> list[str]:
    return [f"{m.label}, {lib}: {note}" for m in metrics for lib, note in m.notes.items()]


def _text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    lines.insert(1, "-" * len(lines[0]))
    return [*lines, ""]


def render_text(metrics: list[Metric]) -> str:
    lines = _text_table(*table(metrics)) + _text_table(*baseline_table(metrics))
    return "\n".join([*lines, *(f"* {note}" for note in _notes(metrics))])


def _machine_line(meta: dict[str, Any]) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in meta["versions"].items())
    return (
        f"Machine: {meta['cpu_count']} cores, {meta['memory_gib']} GiB RAM, {meta['platform']}; "
        f"Python {meta['python']}; {versions}. Run {meta['date']}, {meta['runtime_seconds']} s, "
        f"load average {meta['load_average']['start']} at start, {meta['load_average']['end']} at end."
    )


def _load_warning(meta: dict[str, Any]) -> str | None:
    """A warning when other work kept half the cores busy before the run started
    (the load at the end includes the benchmark's own processes)."""
    if meta["load_average"]["start"] <= (meta["cpu_count"] or 1) / 2:
        return None
    return "Warning: the machine was busy with other work during the run; timings (ms) are unreliable, rerun."


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return []
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def render_markdown(metrics: list[Metric], meta: dict[str, Any]) -> str:
    lines = [
        *_markdown_table(*table(metrics)),
        *_markdown_table(*baseline_table(metrics)),
        _machine_line(meta),
        "",
        "Generated by `python -m bench` against a local moto server; AssumeRole calls counted server-side.",
        "",
        *(f"- \\* {note}" for note in _notes(metrics)),
    ]
    if warning := _load_warning(meta):
        lines.append(f"- {warning}")
    if meta["missing_libraries"]:
        lines.append(f"- Not installed, not measured: {', '.join(meta['missing_libraries'])}.")
    return "\n".join(lines) + "\n"


def render_chart(metrics: list[Metric], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 4
    rows = math.ceil(len(metrics) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for axis, metric in zip(axes.flat, metrics, strict=False):
        values = {STATIC: metric.baseline} if metric.versus_static else {}
        values |= {lib.key: metric.values.get(lib.key) for lib in (OURS, *PEERS)}
        libs = list(values)
        colors = ["#1f77b4"] * (len(libs) - 4) + ["#d62728", "#7f7f7f", "#9e9e9e", "#bdbdbd"]
        bars = axis.bar(range(len(libs)), [v or 0.0 for v in values.values()], color=colors)
        axis.bar_label(bars, labels=[_format(v) for v in values.values()], fontsize=7)
        axis.set_title("\n".join(textwrap.wrap(metric.label, 44)), fontsize=8)
        axis.set_ylabel(metric.unit, fontsize=8)
        axis.set_xticks(range(len(libs)), [textwrap.fill(lib, 12) for lib in libs], fontsize=6)
        axis.margins(y=0.15)
    for axis in list(axes.flat)[len(metrics) :]:
        axis.set_visible(False)
    figure.suptitle("assume-role-chain vs peers (lower is better)", fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (3.4 * rows)))  # room for the title
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _json_metric(metric: Metric) -> dict[str, Any]:
    document = asdict(metric) | {"ratio_to_best_peer": metric.ratio()}
    if not metric.versus_static:
        del document["baseline"], document["versus_static"]
    else:
        document["ratio_to_baseline"] = {lib: metric.ratio_to_baseline(lib) for lib in metric.values}
    return document


def write_all(metrics: list[Metric], meta: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "metrics": [_json_metric(m) for m in metrics]}
    (out_dir / "latest.json").write_text(json.dumps(document, indent=2) + "\n")
    (out_dir / "latest.md").write_text(render_markdown(metrics, meta))
    render_chart(metrics, out_dir / "latest.png")
    print()
    print(render_text(metrics))
    print()
    print(_machine_line(meta))
    if warning := _load_warning(meta):
        print(warning)
    if meta["errors"]:
        print("Errors:", *(f"  {k}: {v}" for k, v in meta["errors"].items()), sep="\n", file=sys.stderr)
    print(f"Wrote {out_dir}/latest.json, latest.md, latest.png")
