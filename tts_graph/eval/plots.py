"""Figures of an evaluation, drawn from :func:`~tts_graph.eval.metrics.summarize` results.

Every function writes one PNG and returns its path, or returns None (writing nothing) when the
summaries hold nothing to draw, so a report can include exactly the figures that exist.
Figures are drawn on matplotlib's Agg canvas directly, without pyplot: no display, no global
figure state, safe from any thread, and nothing is fetched from the network.

>>> from tts_graph.eval.metrics import summarize
>>> plot_coverage({"best-of-16": summarize(records)}, "coverage.png")  # doctest: +SKIP
PosixPath('coverage.png')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tts_graph.eval.metrics import find_knee, find_turnover

__all__ = [
    "plot_accuracy_by_difficulty",
    "plot_accuracy_by_thinking_cap",
    "plot_accuracy_vs_compute",
    "plot_coverage",
]

Summary = Mapping[str, Any]

_SELECTOR_LABELS = {
    "majority": "majority vote",
    "weighted": "weighted vote (score)",
    "confidence": "confidence-filtered vote",
    "verifier": "verifier-selected",
}
_MARKERS = "osD^vP*Xh"


def _figure(width: float = 6.4, height: float = 4.4) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _colors(n: int) -> list[Any]:
    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _errors(value: float, ci: Sequence[float] | None) -> tuple[float, float]:
    """Distances below and above ``value`` to its interval's ends (0 without one)."""
    if not ci:
        return 0.0, 0.0
    return max(0.0, value - ci[0]), max(0.0, ci[1] - value)


def _plot_curve(
    ax: Axes, curve: Mapping[str, Any] | None, compute: str, **style: Any
) -> list[float]:
    """Draw ``curve``'s points (accuracy against ``compute``) with ``style``; the x values
    drawn, or none when the curve has no points or a point lacks that compute (e.g. FLOPs of an
    unknown model)."""
    points = (curve or {}).get("points") or []
    xs = [p[compute] for p in points]
    if not xs or any(x is None for x in xs):
        return []
    ax.plot(xs, [p["accuracy"] for p in points], **style)
    return xs


def _log_x_if_wide(ax: Axes, values: Sequence[float], base: int = 10) -> None:
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) >= 10:
        ax.set_xscale("log", base=base)


def plot_coverage(
    runs: Mapping[str, Summary], path: str | Path, *, selectors: bool | None = None
) -> Path | None:
    """Coverage (pass@k) against ``k`` for each run, with its bootstrap band, the fitted
    exponentiated power law (dashed, drawn on to 4× the largest ``k``), and, below it, each
    selector's accuracy (``selectors`` defaults to True for one run, False for several).

    None when no run has a coverage point.

    >>> plot_coverage({"best-of-16": summarize(records)}, "coverage.png")  # doctest: +SKIP
    PosixPath('coverage.png')
    """
    drawable = {label: s for label, s in runs.items() if s["coverage"]["points"]}
    if not drawable:
        return None
    with_selectors = len(drawable) == 1 if selectors is None else selectors
    fig, ax = _figure()
    colors = _colors(len(drawable) + (len(_SELECTOR_LABELS) if with_selectors else 0))
    all_ks: list[float] = []
    for i, (label, summary) in enumerate(drawable.items()):
        points = summary["coverage"]["points"]
        ks = [p["k"] for p in points]
        all_ks.extend(ks)
        ys = [p["value"] for p in points]
        color = colors[i]
        ax.plot(ks, ys, marker="o", color=color, label=f"coverage (pass@k), {label}")
        cis = [p["ci"] for p in points]
        if all(cis):
            ax.fill_between(ks, [c[0] for c in cis], [c[1] for c in cis], color=color, alpha=0.15)
        fit = summary["coverage"].get("fit")
        if fit:
            grid = np.geomspace(1, 4 * max(ks), 100)
            fitted = np.exp(fit["a"] * grid ** fit["b"])
            ax.plot(
                grid,
                fitted,
                linestyle="--",
                color=color,
                linewidth=1,
                label=f"fit exp({fit['a']:.3g}·k^{fit['b']:.3g}), R²={fit['r2']:.3f}",
            )
        if with_selectors:
            for j, (name, curve) in enumerate(summary.get("selectors", {}).items()):
                ax.plot(
                    [p["k"] for p in curve],
                    [p["value"] for p in curve],
                    marker=_MARKERS[(j + 1) % len(_MARKERS)],
                    markersize=4,
                    color=colors[len(drawable) + j],
                    label=_SELECTOR_LABELS.get(name, name)
                    + ("" if len(drawable) == 1 else f", {label}"),
                )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples per problem (k)")
    ax.set_ylabel("fraction of problems solved")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("Coverage and selection against samples" if with_selectors else "Coverage")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_accuracy_vs_compute(
    runs: Mapping[str, Summary],
    path: str | Path,
    *,
    strategies: Mapping[str, str] | None = None,
    compute: str = "tokens",
) -> Path | None:
    """Accuracy against compute per problem (``compute``: ``"tokens"`` or ``"flops"``).

    Each run is a point at its measured mean compute and accuracy, with its bootstrap interval;
    runs of one strategy (``strategies``: run label → strategy; each run alone without it) are
    joined in order of compute, with that line's knee (black-edged star) and turn-over
    (black-edged down triangle) when it has them. Each run's subsampled majority-vote curve
    (accuracy with ``k`` of its samples against their estimated compute) is drawn dotted, its
    knee marked with a star and a turn-over (accuracy falling as compute rises) with a down
    triangle; where the run checked its samples, its verifier-selected curve (uniform
    best-of-k) is drawn dashed. None when there is
    nothing to place (e.g. FLOPs asked for but unknown).

    >>> runs = {"n=4": summarize(small), "n=16": summarize(large)}  # doctest: +SKIP
    >>> plot_accuracy_vs_compute(runs, "acc.png", strategies={"n=4": "bon", "n=16": "bon"})  # doctest: +SKIP
    PosixPath('acc.png')
    """
    if compute not in ("tokens", "flops"):
        raise ValueError(f"compute must be 'tokens' or 'flops', got {compute!r}")
    mean_key = "mean_tokens" if compute == "tokens" else "mean_flops"
    groups: dict[str, list[tuple[str, Summary]]] = {}
    for label, summary in runs.items():
        strategy = (strategies or {}).get(label, label)
        groups.setdefault(strategy, []).append((label, summary))
    fig, ax = _figure(7.0, 4.6)
    colors = _colors(len(groups))
    xs_all: list[float] = []  # the x of everything drawn
    for color, (strategy, members) in zip(colors, groups.items(), strict=True):
        measured = []
        for m, (label, summary) in enumerate(members):
            marker = _MARKERS[m % len(_MARKERS)]
            curve = summary.get("compute", {}).get("all")
            majority = _plot_curve(
                ax, curve, compute, color=color, linewidth=0.9, alpha=0.6, linestyle=":"
            )
            xs_all.extend(majority)
            if majority and compute == "tokens":
                knee = curve.get("knee")
                if knee:
                    ax.plot(knee["x"], knee["y"], marker="*", markersize=13, color=color)
                    ax.annotate(
                        f"knee k={knee['k']}",
                        (knee["x"], knee["y"]),
                        textcoords="offset points",
                        xytext=(6, -12),
                        fontsize=7,
                        color=color,
                    )
                turn = curve.get("turnover")
                if turn:
                    ax.plot(turn["x_low"], turn["y_low"], marker="v", markersize=9, color=color)
            verified = summary.get("compute_verified")
            xs_all.extend(
                _plot_curve(
                    ax, verified, compute, color=color, linewidth=1.1, alpha=0.8, linestyle="--"
                )
            )
            totals = summary["totals"]
            x, y = totals.get(mean_key), totals.get("accuracy")
            if x is None or y is None:
                continue
            lo, hi = _errors(y, totals.get("ci"))
            ax.errorbar(
                [x], [y], yerr=[[lo], [hi]], fmt=marker, color=color, capsize=3, markersize=7,
                label=label if label != strategy else None,
            )  # fmt: skip
            measured.append((x, y))
            xs_all.append(x)
        if measured:
            measured.sort()
            mx, my = [p[0] for p in measured], [p[1] for p in measured]
            ax.plot(mx, my, color=color, linewidth=1.6, label=strategy)
            # Across runs of one strategy (e.g. a budget sweep): its own knee and turn-over.
            knee = find_knee(mx, my)
            if knee is not None:
                ax.plot(knee.x, knee.y, marker="*", markersize=16, color=color, mec="black")
            turn = find_turnover(mx, my)
            if turn is not None:
                ax.plot(turn["x_low"], turn["y_low"], marker="v", markersize=10, color=color,
                        mec="black")  # fmt: skip
    if not xs_all:
        return None
    _log_x_if_wide(ax, xs_all)
    unit = "tokens" if compute == "tokens" else "FLOPs"
    ax.set_xlabel(f"{unit} per problem (mean)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(
        f"Accuracy against {unit} over k of each run's samples\n"
        "(dotted: majority vote; dashed: verifier-selected, i.e. uniform best-of-k)",
        fontsize=10,
    )
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_accuracy_by_difficulty(summary: Summary, path: str | Path) -> Path | None:
    """Accuracy per difficulty bin (easiest first) with bootstrap intervals and each bin's
    problem count; None when no record has a bin.

    >>> plot_accuracy_by_difficulty(summarize(records), "bins.png")  # doctest: +SKIP
    PosixPath('bins.png')
    """
    rows = summary.get("by_difficulty") or []
    if not rows:
        return None
    fig, ax = _figure()
    names = [str(r["group"]) for r in rows]
    values = [r["accuracy"] or 0.0 for r in rows]
    errors = np.array([_errors(v, r.get("ci")) for v, r in zip(values, rows, strict=True)]).T
    bars = ax.bar(names, values, yerr=errors, capsize=4, color=_colors(1)[0], alpha=0.8)
    for bar, r in zip(bars, rows, strict=True):
        ax.annotate(
            f"n={r['problems']}",
            (bar.get_x() + bar.get_width() / 2, 0.01),
            ha="center",
            fontsize=8,
            color="white",
        )
    ax.set_xlabel("difficulty bin")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Accuracy by difficulty")
    return _save(fig, path)


def plot_accuracy_by_thinking_cap(
    series: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path
) -> Path | None:
    """Accuracy against the thinking-token cap, one line per series (e.g. per strategy).

    Each series is rows as :func:`~tts_graph.eval.metrics.accuracy_by_thinking_cap` returns
    them (``cap``, ``accuracy``, ``ci``, ``mean_tokens``); rows from several runs may be mixed,
    they are sorted by cap. None when no series has a row.

    >>> rows = accuracy_by_thinking_cap(records)  # doctest: +SKIP
    >>> plot_accuracy_by_thinking_cap({"budget forcing": rows}, "caps.png")  # doctest: +SKIP
    PosixPath('caps.png')
    """
    drawable = {k: sorted(v, key=lambda r: r["cap"]) for k, v in series.items() if v}
    if not drawable:
        return None
    fig, ax = _figure()
    caps: list[float] = []
    for color, (label, rows) in zip(_colors(len(drawable)), drawable.items(), strict=True):
        xs = [float(r["cap"]) for r in rows]
        ys = [r["accuracy"] or 0.0 for r in rows]
        errors = np.array([_errors(y, r.get("ci")) for y, r in zip(ys, rows, strict=True)]).T
        ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, color=color, label=label)
        for x, y, r in zip(xs, ys, rows, strict=True):
            if r.get("mean_tokens") is not None:
                ax.annotate(
                    f"{r['mean_tokens']:.0f} tok",
                    (x, y),
                    textcoords="offset points",
                    xytext=(4, 6),
                    fontsize=7,
                    color=color,
                )
        caps.extend(xs)
    if caps and min(caps) > 0 and max(caps) / min(caps) >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xlabel("thinking-token cap")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.set_title("Accuracy against the thinking cap (labels: mean tokens per problem)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    return _save(fig, path)
