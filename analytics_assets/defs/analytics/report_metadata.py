"""What a report materialization shows in the UI: a markdown summary with a chart, the chart
as Vega-Lite, and the headline numbers as plottable metadata."""

from __future__ import annotations

import polars as pl
from dagster import MetadataValue

from analytics_assets.analytics.charts import png_markdown, report_png, report_vega_lite
from analytics_assets.defs.day_metadata import CHARTED_DAYS
from analytics_assets.defs.metadata import markdown_table, markdown_text


def report_metadata(reports: pl.DataFrame, *, with_chart: bool = True) -> dict:
    # One report (a day's, a week's, a month's) per materialization: a multi-day run gives
    # each day its own (defs/day_metadata.py). Several reports make a table of them.
    summary = _one(reports.row(0, named=True)) if reports.height == 1 else _many(reports)
    title = f"{reports['kind'][0]} {reports['period'][0]}"
    chart = (
        png_markdown(report_png(reports), title)
        if with_chart
        else f"_Chart drawn for the last {CHARTED_DAYS} days of a run; materialize this day "
        "alone to draw it._"
    )
    metadata = {
        "summary": MetadataValue.md(summary + "\n\n" + chart),
        "chart_vega_lite": MetadataValue.json(report_vega_lite(reports)),
        "reports": reports.height,
    }
    if reports.height == 1:
        report = reports.row(0, named=True)
        # Numbers the UI plots across partitions (the asset's "Plots" tab).
        metadata.update(
            {
                "conversations": report["conversations"],
                "messages": report["messages"],
                "users": report["users"],
                "new_users": report["new_users"],
                "errors": report["errors"],
            }
        )
        # A day without conversations has no mean: nothing to plot, rather than a NaN.
        for name in ("quality_mean", "satisfaction_mean"):
            if report[name] is not None:
                metadata[name] = round(report[name], 4)
    else:
        metadata["conversations_in_run"] = int(reports["conversations"].sum())
    return metadata


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _milliseconds(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def _change(change: float | None) -> str:
    return "" if change is None else f" ({change:+.0%})"


def _model_mean(parts: dict, name: str) -> float | None:
    return parts[f"{name}_sum"] / parts[f"{name}_count"] if parts[f"{name}_count"] else None


def _one(report: dict) -> str:
    volume = {c["value"]: c for c in report["changes"] if c["dimension"] == "volume"}

    def with_change(name: str) -> str:
        change = volume.get(name)
        return f"{report[name]}{_change(change['count_change'] if change else None)}"

    against = f" vs {report['previous_period']}" if report["previous_period"] else ""
    lines = [
        f"### {report['kind'].capitalize()} report {report['period']}{against}",
        f"- **{with_change('conversations')}** conversations, {with_change('messages')} "
        f"messages, {with_change('users')} users ({report['new_users']} new, "
        f"{report['returning_users']} returning)",
        f"- quality **{_score(report['quality_mean'])}**, satisfaction "
        # A mean over conversations of each one's median: named so, since "latency p50"
        # read as the period's median (one slow conversation of ten moved it 400 ms → 3 s).
        f"**{_score(report['satisfaction_mean'])}**, mean conversation latency p50 "
        f"{_milliseconds(report['latency_p50_mean'])}, {report['total_tokens']:,} tokens",
        f"- rejected records (processing_errors): {report['errors']}",
    ]
    if report["categorized_via_translation"]:
        lines.append(
            f"- categorized through a translation: {report['categorized_via_translation']} "
            "conversations"
        )
    if report["rising_topics"]:
        rising = ", ".join(
            f"{markdown_text(t['value'])} {t['previous_share']:.0%} → {t['share']:.0%}"
            for t in report["rising_topics"]
        )
        lines.append(f"- rising topics: {rising}")
    significant = [c for c in report["model_comparison"] if c["significant"]]
    lines.append(
        "- models: "
        + (
            "; ".join(
                f"{markdown_text(c['model'])} {c['metric']} {c['value']:.3g} vs "
                f"{c['others']:.3g} "
                f"(p={c['p_value']:.3f})"
                for c in significant
            )
            if significant
            else "no significant difference between models"
        )
    )
    models = pl.DataFrame(
        [
            {
                "model": m["model"],
                "conversations": m["conversations"],
                "quality": _score(_model_mean(m, "quality")),
                "satisfaction": _score(_model_mean(m, "satisfaction")),
                "mean latency p50": _milliseconds(_model_mean(m, "latency_p50_ms")),
            }
            for m in report["per_model"]
        ]
    )
    topics = pl.DataFrame(report["topics"][:5]) if report["topics"] else None
    parts = ["\n".join(lines)]
    if topics is not None:
        parts.append(markdown_table(topics.rename({"value": "topic"})))
    if models.height:
        parts.append(markdown_table(models, rows=models.height))
    return "\n\n".join(parts)


def _many(reports: pl.DataFrame) -> str:
    table = reports.select(
        "period",
        "conversations",
        "messages",
        "users",
        "new_users",
        pl.col("quality_mean").round(3),
        pl.col("satisfaction_mean").round(3),
        "errors",
    )
    return (
        f"### {reports.height} {reports['kind'][0]} reports, "
        f"{reports['period'][0]} to {reports['period'][-1]}\n\n"
        + markdown_table(table, rows=table.height)
    )
