"""Rows of measurements, their ratio to the tmpfs baseline, and their renderings."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass
class Row:
    path: str  # tmpfs, pool, s3, fs, deploy
    workload: str  # "4MiB write", "4MiB read", "4KiB write ops", "create/stat/delete", "up", "down"
    value: float
    unit: str  # MB/s, ops/s, s
    baseline: float | None = None  # tmpfs figure for the same workload, same run

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0) or self.path == "tmpfs":
            return None
        return self.value / self.baseline

    def to_json(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def attach_baselines(rows: list[Row]) -> list[Row]:
    """Give every row the tmpfs figure of its workload."""
    base = {r.workload: r.value for r in rows if r.path == "tmpfs"}
    for r in rows:
        if r.path != "tmpfs" and r.unit != "s":
            r.baseline = base.get(r.workload)
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| path | workload | ramburst | tmpfs | ratio |", "|---|---|---|---|---|"]
    for r in rows:
        if r.path == "tmpfs":
            continue
        base = f"{r.baseline:,.0f} {r.unit}" if r.baseline is not None else "-"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        value = f"{r.value:.2f} {r.unit}" if r.unit == "s" else f"{r.value:,.0f} {r.unit}"
        lines.append(f"| {r.path} | {r.workload} | {value} | {base} | {ratio} |")
    return "\n".join(lines)


def to_json(rows: list[Row], notes: dict) -> str:
    return json.dumps({"rows": [r.to_json() for r in rows], **notes}, indent=1)


def plot(rows: list[Row], path: str) -> None:
    """Bars of ramburst against tmpfs per workload (ratios), for people who would rather look."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from ..errors import UsageError

        raise UsageError("--plot needs matplotlib: pip install 'ramburst[plot]'") from None
    data = [r for r in rows if r.ratio is not None]
    labels = [f"{r.path}\n{r.workload}" for r in data]
    fig, ax = plt.subplots(figsize=(max(6, len(data) * 1.1), 4))
    ax.bar(range(len(data)), [r.ratio for r in data], color="tab:blue")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.axhline(0.5, color="tab:red", linestyle=":", linewidth=1)
    ax.set_xticks(range(len(data)), labels, fontsize=8)
    ax.set_ylabel("ramburst / tmpfs (same run)")
    ups = [r for r in rows if r.workload in ("up", "down")]
    ax.set_title("ramburst bench" + "".join(f"   {r.workload} {r.value:.2f} s" for r in ups))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
