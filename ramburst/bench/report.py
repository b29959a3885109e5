"""Rows of measurements, their ratio to the tmpfs baseline, and their renderings."""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field


@dataclass
class Row:
    """One figure: the median of its passes. With a tmpfs baseline measured in the same passes
    (interleaved), the ratio is the median of the per-pass ratios, so drift of the machine
    during the run affects both sides of each ratio alike."""

    path: str  # tmpfs, pool, s3, fs, tcp-loopback, deploy
    workload: str  # "4MiB write", "4MiB read", "4KiB writes", "create+stat+delete", "up", "down"
    value: float
    unit: str  # MB/s, ops/s, s
    baseline: float | None = None  # tmpfs figure for the same workload, same run
    samples: list[float] = field(default_factory=list)  # one per pass
    baseline_samples: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, path: str, workload: str, samples: list[float], unit: str) -> Row:
        return cls(path, workload, statistics.median(samples), unit, samples=list(samples))

    def pass_ratios(self) -> list[float]:
        if self.path == "tmpfs" or not self.baseline_samples or len(self.samples) != len(self.baseline_samples):
            return []
        return [v / b for v, b in zip(self.samples, self.baseline_samples) if b]

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0) or self.path == "tmpfs":
            return None
        ratios = self.pass_ratios()
        return statistics.median(ratios) if ratios else self.value / self.baseline

    @property
    def ratio_range(self) -> tuple[float, float] | None:
        ratios = self.pass_ratios()
        return (min(ratios), max(ratios)) if len(ratios) > 1 else None

    def to_json(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "ratio_range": self.ratio_range}


def attach_baselines(rows: list[Row]) -> list[Row]:
    """Give every row the tmpfs figure (and passes) of its workload."""
    base = {r.workload: r for r in rows if r.path == "tmpfs"}
    for r in rows:
        if r.path != "tmpfs" and r.unit != "s" and r.workload in base:
            r.baseline = base[r.workload].value
            r.baseline_samples = list(base[r.workload].samples)
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| path | workload | ramburst | tmpfs | ratio | ratio range |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r.path == "tmpfs":
            continue
        base = f"{r.baseline:,.0f} {r.unit}" if r.baseline is not None else "-"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        spread = f"{r.ratio_range[0]:.2f}-{r.ratio_range[1]:.2f}" if r.ratio_range else "-"
        value = f"{r.value:.2f} {r.unit}" if r.unit == "s" else f"{r.value:,.0f} {r.unit}"
        lines.append(f"| {r.path} | {r.workload} | {value} | {base} | {ratio} | {spread} |")
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
    ratios = [r.ratio for r in data]
    lows = [r.ratio - r.ratio_range[0] if r.ratio_range else 0 for r in data]
    highs = [r.ratio_range[1] - r.ratio if r.ratio_range else 0 for r in data]
    colours = ["tab:grey" if r.path == "tcp-loopback" else "tab:blue" for r in data]  # a reference, not ramburst
    ax.bar(range(len(data)), ratios, color=colours, yerr=[lows, highs], capsize=3)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.axhline(0.5, color="tab:red", linestyle=":", linewidth=1)
    ax.set_xticks(range(len(data)), labels, fontsize=8)
    ax.set_ylabel("ramburst / tmpfs (same run)")
    ups = [r for r in rows if r.workload in ("up", "down")]
    ax.set_title("ramburst bench" + "".join(f"   {r.workload} {r.value:.2f} s" for r in ups))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
