"""What a day of user_return_predictions shows in the UI: the users scored and the mean
prediction, whose numbers were served (model or baseline) and why, the evaluation of the
model against the last-week baseline as plottable numbers, and a calibration chart."""

from __future__ import annotations

from typing import Any

from dagster import MetadataValue

from analytics_assets.analytics.charts import calibration_png, png_markdown
from analytics_assets.analytics.return_prediction import Forecast
from analytics_assets.defs.metadata import frame_metadata


def prediction_metadata(
    result: Forecast, *, seconds: float, with_chart: bool = True
) -> dict[str, Any]:
    predictions, evaluation = result.predictions, result.evaluation
    summary = evaluation.summary()
    metadata: dict[str, Any] = {
        **frame_metadata(predictions),
        "users_scored": predictions.height,
        "method": evaluation.method,
        "method_reason": evaluation.reason,
        "count_method": evaluation.count_method,
        "count_method_reason": evaluation.count_reason,
        "seconds": round(seconds, 3),
        # Every evaluation figure, also those of a day without any (None there).
        "evaluation": MetadataValue.json(summary),
    }
    if predictions.height:
        metadata["mean_return_probability"] = round(predictions["return_probability_7d"].mean(), 5)
        metadata["mean_expected_conversations"] = round(
            predictions["expected_conversations_7d"].mean(), 4
        )
    # Numbers the UI plots across partitions; a figure the day lacks is left out, not null.
    for name in ("train_rows", "evaluation_rows", "evaluation_return_rate"):
        if summary[name] is not None:
            metadata[name] = summary[name]
    for side in ("model", "baseline"):
        for metric in ("auc", "brier", "log_loss", "calibration_error", "count_mae",
                       "count_poisson_deviance"):  # fmt: skip
            value = summary.get(f"{side}_{metric}")
            if value is not None:
                metadata[f"{side}_{metric}"] = value
    curves = {
        name: bins
        for name, bins in (
            ("model", evaluation.model_calibration),
            ("baseline (last week)", evaluation.baseline_calibration),
        )
        if bins
    }
    if curves and with_chart:
        first, last = summary["evaluation_days"]
        title = f"Calibration {first}..{last}"
        caption = (
            f"Evaluated on {evaluation.evaluation_rows} user-days ({first}..{last}), trained "
            f"on {evaluation.train_rows}; probabilities served: {evaluation.method} "
            f"({evaluation.reason}); counts served: {evaluation.count_method} "
            f"({evaluation.count_reason})."
        )
        chart = png_markdown(calibration_png(curves, title), title)
        metadata["calibration"] = MetadataValue.md(f"{caption}\n\n{chart}")
    return metadata
