"""Report charts for the Dagster UI: a PNG (rendered inline in markdown metadata) and the same
data as a Vega-Lite spec (for tools that render it). One report: its topics against the
previous period and its score distributions. Several (a multi-day run): volume and quality
per day."""

from __future__ import annotations

import base64
import io

import polars as pl

# Small enough to keep the event log light (~20-30 kB per materialization), legible in the UI.
_FIGURE_INCHES = (9.0, 3.2)
_DPI = 80
_TOPICS_SHOWN = 10


def report_png(reports: pl.DataFrame) -> bytes:
    # matplotlib costs ~0.3 s to import: only the report assets pay it, when they run.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=_FIGURE_INCHES, dpi=_DPI)
    try:
        if reports.height == 1:
            _topics(axes[0], reports.row(0, named=True))
            _scores(axes[1], reports.row(0, named=True))
        else:
            _volume(axes[0], axes[1], reports)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(figure)


def png_markdown(png: bytes, title: str) -> str:
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"


def _topics(axis, report: dict) -> None:
    topics = report["topics"][:_TOPICS_SHOWN][::-1]
    names = [topic["value"] for topic in topics]
    total = sum(topic["count"] for topic in report["topics"]) or 1
    shares = [topic["count"] / total for topic in topics]
    previous = {
        change["value"]: change["previous_share"]
        for change in report["changes"]
        if change["dimension"] == "topics"
    }
    positions = range(len(names))
    axis.barh([p + 0.2 for p in positions], shares, height=0.4, label=report["period"])
    if previous:
        axis.barh(
            [p - 0.2 for p in positions],
            [previous.get(name, 0.0) for name in names],
            height=0.4,
            color="lightgray",
            label=report["previous_period"],
        )
    axis.set_yticks(list(positions), names)
    axis.set_xlabel("share of conversations")
    axis.set_title("Topics")
    axis.legend(fontsize="small")


def _scores(axis, report: dict) -> None:
    bins = len(report["quality_histogram"])
    edges = [index / bins for index in range(bins)]
    width = 0.4 / bins
    axis.bar([e + 0.5 / bins - width / 2 for e in edges], report["quality_histogram"],
             width=width, label="quality")  # fmt: skip
    axis.bar([e + 0.5 / bins + width / 2 for e in edges], report["satisfaction_histogram"],
             width=width, label="satisfaction")  # fmt: skip
    axis.set_xlim(0, 1)
    axis.set_xlabel("score")
    axis.set_ylabel("conversations")
    axis.set_title("Quality and satisfaction")
    axis.legend(fontsize="small")


def _volume(volume_axis, quality_axis, reports: pl.DataFrame) -> None:
    periods = [period[5:] if len(period) == 10 else period for period in reports["period"]]
    volume_axis.bar(periods, reports["conversations"].to_list())
    volume_axis.set_title("Conversations")
    volume_axis.tick_params(axis="x", labelrotation=60, labelsize="small")
    quality_axis.plot(periods, reports["quality_mean"].to_list(), marker="o", label="quality")
    quality_axis.plot(periods, reports["satisfaction_mean"].to_list(), marker="o",
                      label="satisfaction")  # fmt: skip
    quality_axis.set_ylim(0, 1)
    quality_axis.set_title("Mean scores")
    quality_axis.tick_params(axis="x", labelrotation=60, labelsize="small")
    quality_axis.legend(fontsize="small")


def report_vega_lite(reports: pl.DataFrame) -> dict:
    """Topic shares per period as a Vega-Lite v5 spec with its data inline."""
    values = [
        {"period": report["period"], "topic": topic["value"], "conversations": topic["count"]}
        for report in reports.iter_rows(named=True)
        for topic in report["topics"]
    ]
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Conversations by topic",
        "data": {"values": values},
        "mark": "bar",
        "encoding": {
            "x": {"field": "period", "type": "ordinal"},
            "y": {"field": "conversations", "type": "quantitative", "stack": "normalize"},
            "color": {"field": "topic", "type": "nominal"},
        },
    }


def calibration_png(curves: dict[str, list], title: str) -> bytes:
    """A reliability diagram: per curve (name -> calibration bins with `mean_predicted`,
    `observed_rate` and `rows`), the observed rate against the mean prediction of each bin,
    beside the diagonal of perfect calibration, and how many rows each bin holds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (reliability, counts) = plt.subplots(1, 2, figsize=_FIGURE_INCHES, dpi=_DPI)
    try:
        reliability.plot([0, 1], [0, 1], color="lightgray", linestyle="--", label="perfect")
        for offset, (name, bins) in enumerate(curves.items()):
            filled = [b for b in bins if b.rows]
            reliability.plot([b.mean_predicted for b in filled],
                             [b.observed_rate for b in filled], marker="o", label=name)  # fmt: skip
            width = 0.4 / max(len(bins), 1)
            counts.bar([b.lower + (offset + 0.5) * width for b in bins], [b.rows for b in bins],
                       width=width, label=name)  # fmt: skip
        reliability.set_xlim(0, 1)
        reliability.set_ylim(0, 1)
        reliability.set_xlabel("predicted probability of returning within 7 days")
        reliability.set_ylabel("observed return rate")
        reliability.set_title(title)
        reliability.legend(fontsize="small")
        counts.set_xlim(0, 1)
        counts.set_xlabel("predicted probability")
        counts.set_ylabel("user-days")
        counts.set_title("Predictions per bin")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(figure)
