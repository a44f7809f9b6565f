"""Who comes back: per user and day, the probability that the user returns within the next
7 days and the expected number of conversations in them (docs/metrics.md, "Return
prediction").

Features of a (user, day) come from the user's activity up to and including that day only;
labels from the 7 days after it. A logistic regression (return) and a Poisson regression
(count), both L2-penalized and fitted by Newton's method (IRLS) in numpy, are trained on
earlier days and evaluated on later days whose label windows are closed, against a baseline
that knows only last week's activity. Where there is too little history, or the model does
not beat the baseline on the evaluation days (the Brier score for the probability, the
Poisson deviance for the count, each on its own), the baseline's numbers are served and the
evaluation says why.

Pure: numpy and polars, no Dagster, no scikit-learn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

import numpy as np
import polars as pl

HORIZON_DAYS = 7
# A user is scored on a day when active in the 28 days up to and including it.
ACTIVE_DAYS = 28
# The days of activity one prediction reads (the day and the 89 before it).
HISTORY_DAYS = 90
EVALUATION_DAYS = 7
# The days `forecasts` builds one grid of features for: its memory is every user active in
# them by these days and the 89 before (a year at once was 12 times one day's).
RANGE_DAYS = 31
MIN_TRAIN_ROWS = 200
MIN_EVALUATION_ROWS = 50
L2_PENALTY = 1.0
# Lower bounds of the baseline's buckets of last-7-day conversations: 0, 1, 2, 3-4, 5+.
ACTIVITY_BUCKETS = (0, 1, 2, 3, 5)
CALIBRATION_BINS = 10
# The count baseline predicts last week's count; a week without conversations predicts this
# much instead of zero, so that the Poisson deviance of a return stays finite.
COUNT_FLOOR = 0.1

FEATURES = (
    "conversations_1d", "conversations_7d", "conversations_28d", "active_days_28d",
    "messages_28d", "days_since_last", "days_since_first", "sentiment_28d", "quality_28d",
)  # fmt: skip
# Counts and day spans are skewed: the model sees log(1 + x).
_LOGGED = {"conversations_1d", "conversations_7d", "conversations_28d", "active_days_28d",
           "messages_28d", "days_since_last", "days_since_first"}  # fmt: skip
LABELS = ("returned_7d", "conversations_next_7d", "label_observed")

PREDICTION_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "day": pl.Date(),
    "return_probability_7d": pl.Float64(),
    "expected_conversations_7d": pl.Float64(),
    "baseline_return_probability_7d": pl.Float64(),
    "baseline_conversations_7d": pl.Float64(),
    "method": pl.String(),
    "count_method": pl.String(),
    "conversations_7d": pl.UInt32(),
    "conversations_28d": pl.UInt32(),
    "active_days_28d": pl.UInt32(),
    "days_since_last": pl.UInt32(),
}
ACTIVITY_COLUMNS = ("user_id", "day", "conversations", "messages", "sentiment_end_mean",
                    "quality_mean", "sentiment_end_scored", "quality_scored")  # fmt: skip


# --- features and labels -----------------------------------------------------------------


def user_day_rows(activity: pl.DataFrame, first_day: date, last_day: date) -> pl.DataFrame:
    """One row per user and day in [first_day, last_day] on which the user was active in the
    28 days up to and including it: the features (from days ≤ that day) and the labels (the
    7 days after it; `label_observed` is false where the window passes `last_day`).

    `activity`: one row per user and active day (user_analytics' columns `ACTIVITY_COLUMNS`);
    days outside the range are ignored."""
    span = (last_day - first_day).days + 1
    activity = activity.filter(pl.col("day").is_between(first_day, last_day))
    if span <= 0 or not activity.height:
        return _empty_rows()
    users = activity["user_id"].unique().sort()
    # Positions by vectorized lookups: a Python loop over the rows was a quarter of the time.
    cells = (
        users.search_sorted(activity["user_id"]).to_numpy().astype(np.int64) * span
        + (activity["day"] - first_day).dt.total_days().to_numpy()
    )

    def grid(values) -> np.ndarray:
        # bincount sums repeated cells like np.add.at, at a fraction of its cost.
        weights = np.asarray(values, dtype=float)
        return np.bincount(cells, weights, minlength=len(users) * span).reshape(len(users), span)

    conversations = grid(activity["conversations"].fill_null(0))
    # A day's mean weighs what it is a mean of, its scored conversations: weighted by all of
    # them, a day of ten conversations with one scored outweighed a day with its one scored,
    # and the 28-day mean came out 0.64 where the four scored said 0.05 (test). A day
    # written before the counts existed weighs its conversations, as then.
    sentiment_weights = _scored(activity, "sentiment_end_scored")
    quality_weights = _scored(activity, "quality_scored")
    sentiment = activity["sentiment_end_mean"].cast(pl.Float64)
    quality = activity["quality_mean"].cast(pl.Float64)

    active = conversations > 0
    day_index = np.arange(span)
    last_active = np.maximum.accumulate(np.where(active, day_index, -1), axis=1)
    first_active = np.where(active.any(axis=1), active.argmax(axis=1), span)

    cumulative_conversations = _cumulative(conversations)
    conversations_28d = _window(cumulative_conversations, ACTIVE_DAYS)
    user, day = np.nonzero(conversations_28d > 0)

    def window(matrix: np.ndarray, days: int, cumulative: np.ndarray | None = None) -> np.ndarray:
        """The window sums at the scored (user, day) cells only: a whole matrix of them per
        feature was most of this function's time. `cumulative`: `_cumulative(matrix)`, where
        the caller has it already."""
        cumulative = _cumulative(matrix) if cumulative is None else cumulative
        return cumulative[user, day + 1] - cumulative[user, np.maximum(day + 1 - days, 0)]

    next_end = np.minimum(day + 1 + HORIZON_DAYS, span)
    conversations_next = (
        cumulative_conversations[user, next_end] - cumulative_conversations[user, day + 1]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        sentiment_28d = window(
            grid((sentiment * sentiment_weights).fill_null(0)), ACTIVE_DAYS
        ) / window(grid(sentiment_weights * sentiment.is_not_null()), ACTIVE_DAYS)
        quality_28d = window(grid((quality * quality_weights).fill_null(0)), ACTIVE_DAYS) / window(
            grid(quality_weights * quality.is_not_null()), ACTIVE_DAYS
        )
    frame = pl.DataFrame(
        {
            "user_id": users.gather(user),
            "day": np.datetime64(first_day, "D") + day.astype("timedelta64[D]"),
            "conversations_1d": conversations[user, day],
            "conversations_7d": window(conversations, 7, cumulative_conversations),
            "conversations_28d": conversations_28d[user, day],
            "active_days_28d": window(active.astype(float), ACTIVE_DAYS),
            "messages_28d": window(grid(activity["messages"].fill_null(0)), ACTIVE_DAYS),
            "days_since_last": (day - last_active[user, day]).astype(float),
            "days_since_first": (day - first_active[user]).astype(float),
            "sentiment_28d": sentiment_28d,
            "quality_28d": quality_28d,
            "returned_7d": conversations_next > 0,
            "conversations_next_7d": conversations_next,
            "label_observed": day + HORIZON_DAYS <= span - 1,
        },
        schema=_ROW_SCHEMA,
        nan_to_null=True,
    )
    return frame.sort("day", "user_id")


_ROW_SCHEMA = {
    "user_id": pl.String(), "day": pl.Date(), **{name: pl.Float64() for name in FEATURES},
    "returned_7d": pl.Boolean(), "conversations_next_7d": pl.Float64(),
    "label_observed": pl.Boolean(),
}  # fmt: skip


def _scored(activity: pl.DataFrame, column: str) -> pl.Series:
    """Per row, the conversations its mean is over: `column`, or where it is missing (a day
    written before it existed) all the day's conversations."""
    conversations = activity["conversations"].fill_null(0).cast(pl.Float64)
    if column not in activity.columns:
        return conversations
    return activity[column].cast(pl.Float64).fill_null(conversations)


def _empty_rows() -> pl.DataFrame:
    return pl.DataFrame(schema=_ROW_SCHEMA)


def _cumulative(matrix: np.ndarray) -> np.ndarray:
    """Cumulative sums along the days with a leading zero: column t holds days < t."""
    return np.concatenate([np.zeros((matrix.shape[0], 1)), np.cumsum(matrix, axis=1)], axis=1)


def _window(cumulative: np.ndarray, days: int) -> np.ndarray:
    """Per day, the sum over that day and the `days - 1` before it (fewer at the start), from
    `_cumulative`'s sums."""
    ends = np.arange(1, cumulative.shape[1])
    return cumulative[:, ends] - cumulative[:, np.maximum(ends - days, 0)]


# --- models ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scaling:
    """How a feature frame becomes a design matrix: log1p of the skewed ones, missing
    values filled with the training mean, then standardized with the training statistics."""

    fill: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def of_features(cls, raw: np.ndarray) -> Scaling:
        # The mean of the present values; 0 for a feature no row has (e.g. no quality score).
        present = ~np.isnan(raw)
        counts = present.sum(axis=0)
        fill = np.where(present, raw, 0.0).sum(axis=0) / np.maximum(counts, 1)
        filled = np.where(np.isnan(raw), fill, raw)
        scale = filled.std(axis=0)
        return cls(fill, filled.mean(axis=0), np.where(scale > 1e-9, scale, 1.0))

    def design(self, rows: pl.DataFrame) -> np.ndarray:
        return self.design_of_features(_raw_features(rows))

    def design_of_features(self, raw: np.ndarray) -> np.ndarray:
        standardized = (np.where(np.isnan(raw), self.fill, raw) - self.mean) / self.scale
        return np.column_stack([np.ones(len(raw)), standardized])


def _raw_features(rows: pl.DataFrame) -> np.ndarray:
    columns = [
        np.log1p(rows[name].to_numpy().astype(float))
        if name in _LOGGED
        else rows[name].to_numpy().astype(float)
        for name in FEATURES
    ]
    return np.column_stack(columns) if rows.height else np.empty((0, len(FEATURES)))


def _penalized_loss(design, target, family, penalty: float, weights: np.ndarray) -> float:
    """The loss `_newton` minimizes (the intercept is not penalized)."""
    return family.loss(design @ weights, target) + 0.5 * penalty * float(weights[1:] @ weights[1:])


def _closer(design, target, family, penalty: float, default: np.ndarray, near: np.ndarray):
    """Of two starting points, the one with the lower penalized loss."""
    if near.shape != default.shape or not np.all(np.isfinite(near)):
        return default
    near_loss = _penalized_loss(design, target, family, penalty, near)
    default_loss = _penalized_loss(design, target, family, penalty, default)
    return near if near_loss < default_loss else default


def _newton(design, target, family, penalty: float, start: np.ndarray) -> np.ndarray:
    """Penalized Newton-Raphson (IRLS) for a GLM with a canonical link; the intercept (the
    first column) is not penalized. A step that does not lower the penalized loss is halved
    until it does: a full Newton step overshoots from the start on heavy-tailed counts."""
    ridge = np.full(design.shape[1], penalty)
    ridge[0] = 0.0

    def loss(linear: np.ndarray, weights: np.ndarray) -> float:
        return family.loss(linear, target) + 0.5 * float(ridge @ weights**2)

    # The linear predictor of the accepted step is kept for the next iteration's mean and
    # weights instead of being multiplied out again.
    weights, linear = start, design @ start
    current = loss(linear, weights)
    for _ in range(100):
        mean, weight = family.mean_and_weight(linear)
        gradient = design.T @ (mean - target) + ridge * weights
        hessian = design.T @ (design * weight[:, None]) + np.diag(ridge)
        step = np.linalg.solve(hessian + 1e-9 * np.eye(len(ridge)), gradient)
        close = np.max(np.abs(step)) < 1e-6
        for _ in range(30):
            candidate = weights - step
            candidate_linear = design @ candidate
            candidate_loss = loss(candidate_linear, candidate)
            # A full step under 1e-6 is taken as it is: that close, Newton's step is right,
            # and the loss (a sum over every row) no longer resolves it, so comparing losses
            # stopped the fit about 1e-8 from its minimum, a different point per start.
            if candidate_loss <= current or close:
                break
            step = step / 2
        else:
            break  # no step lowers the loss: at the minimum (to numerical precision)
        weights, current, linear = candidate, candidate_loss, candidate_linear
        if np.max(np.abs(step)) < 1e-8:
            break
    return weights


class _Logistic:
    @staticmethod
    def mean_and_weight(linear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probability = 1.0 / (1.0 + np.exp(-np.clip(linear, -30, 30)))
        return probability, probability * (1 - probability)

    @staticmethod
    def loss(linear: np.ndarray, target: np.ndarray) -> float:
        return float(np.sum(np.logaddexp(0.0, linear) - target * linear))


class _Poisson:
    @staticmethod
    def mean_and_weight(linear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = np.exp(np.clip(linear, -20, 20))
        return mean, mean

    @staticmethod
    def loss(linear: np.ndarray, target: np.ndarray) -> float:
        return float(np.sum(np.exp(np.clip(linear, -20, 20)) - target * linear))


@dataclass(frozen=True)
class ReturnModel:
    """The logistic regression for a return and the Poisson regression for the count."""

    scaling: Scaling
    return_weights: np.ndarray
    count_weights: np.ndarray

    @classmethod
    def fit(
        cls, rows: pl.DataFrame, penalty: float = L2_PENALTY, near: ReturnModel | None = None
    ) -> ReturnModel:
        """`near`: a model fitted on almost the same rows (the day before's), whose weights
        start the fits where they are closer to the minimum than the default start. The
        problem is convex and each fit runs to a step under 1e-8, so the start changes the
        number of Newton steps, not the weights (to rounding)."""
        raw = _raw_features(rows)  # once, for the scaling and the design
        scaling = Scaling.of_features(raw)
        design = scaling.design_of_features(raw)
        returned = rows["returned_7d"].to_numpy().astype(float)
        counts = rows["conversations_next_7d"].to_numpy().astype(float)
        start = np.zeros(design.shape[1])
        rate = np.clip(returned.mean(), 1e-3, 1 - 1e-3)
        start_return = start.copy()
        start_return[0] = np.log(rate / (1 - rate))
        start_count = start.copy()
        start_count[0] = np.log(max(counts.mean(), 1e-3))
        if near is not None:
            start_return = _closer(design, returned, _Logistic, penalty, start_return,
                                   near.return_weights)  # fmt: skip
            start_count = _closer(design, counts, _Poisson, penalty, start_count,
                                  near.count_weights)  # fmt: skip
        return cls(
            scaling,
            _newton(design, returned, _Logistic, penalty, start_return),
            _newton(design, counts, _Poisson, penalty, start_count),
        )

    def predict(self, rows: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        design = self.scaling.design(rows)
        return (
            _Logistic.mean_and_weight(design @ self.return_weights)[0],
            _Poisson.mean_and_weight(design @ self.count_weights)[0],
        )


def _buckets(conversations_7d: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.array(ACTIVITY_BUCKETS), conversations_7d, side="right") - 1


@dataclass(frozen=True)
class LastWeekBaseline:
    """Knows only last week's conversations: the return probability is the return rate of
    the training rows in the same bucket of last-7-day conversations (smoothed towards the
    overall rate by two pseudo-rows); the count is last week's count. Without labelled rows,
    the probability assumes next week repeats last week's rate: 1 - exp(-last week's count)."""

    bucket_rates: tuple[float, ...] | None

    @classmethod
    def fit(cls, rows: pl.DataFrame) -> LastWeekBaseline:
        if not rows.height:
            return cls(None)
        buckets = _buckets(rows["conversations_7d"].to_numpy())
        returned = rows["returned_7d"].to_numpy().astype(float)
        overall = returned.mean()
        rates = tuple(
            float((returned[buckets == b].sum() + 2 * overall) / ((buckets == b).sum() + 2))
            for b in range(len(ACTIVITY_BUCKETS))
        )
        return cls(rates)

    def predict(self, rows: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        last_week = rows["conversations_7d"].to_numpy().astype(float)
        if self.bucket_rates is None:
            probability = np.clip(1 - np.exp(-last_week), 0.05, 0.95)
        else:
            probability = np.array(self.bucket_rates)[_buckets(last_week)]
        return probability, last_week


# --- metrics -----------------------------------------------------------------------------


def auc(returned: np.ndarray, probability: np.ndarray) -> float | None:
    """The area under the ROC curve (Mann-Whitney, ties counted half); None with one class."""
    positives = int(returned.sum())
    negatives = len(returned) - positives
    if not positives or not negatives:
        return None
    _, inverse, counts = np.unique(probability, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]
    rank_sum = ranks[returned.astype(bool)].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def brier(returned: np.ndarray, probability: np.ndarray) -> float:
    return float(np.mean((probability - returned) ** 2))


def log_loss(returned: np.ndarray, probability: np.ndarray) -> float:
    clipped = np.clip(probability, 1e-6, 1 - 1e-6)
    return float(-np.mean(returned * np.log(clipped) + (1 - returned) * np.log(1 - clipped)))


def poisson_deviance(counts: np.ndarray, expected: np.ndarray) -> float:
    """Mean Poisson deviance (0 for a perfect prediction). An expected count of exactly 0
    (the baseline's last week without a conversation) is taken as `COUNT_FLOOR`, so that a
    return keeps the deviance finite; a positive prediction (the model's) is taken as it is:
    raised to the floor too, a model's 0.02 for a quiet user scored as the baseline's 0."""
    mean = np.where(expected > 0, expected, COUNT_FLOOR)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_term = np.where(counts > 0, counts * np.log(counts / mean), 0.0)
    return float(np.mean(2 * (ratio_term - (counts - mean))))


@dataclass(frozen=True)
class CalibrationBin:
    lower: float
    upper: float
    rows: int
    mean_predicted: float | None
    observed_rate: float | None


def calibration(
    returned: np.ndarray, probability: np.ndarray, bins: int = CALIBRATION_BINS
) -> list[CalibrationBin]:
    """Reliability bins of equal width: per bin, the mean prediction and the observed rate."""
    index = np.minimum((probability * bins).astype(int), bins - 1)
    result = []
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        result.append(
            CalibrationBin(
                b / bins,
                (b + 1) / bins,
                count,
                float(probability[inside].mean()) if count else None,
                float(returned[inside].mean()) if count else None,
            )
        )
    return result


def calibration_error(bins: list[CalibrationBin]) -> float:
    """Expected calibration error: the row-weighted mean gap between prediction and rate."""
    total = sum(b.rows for b in bins)
    if not total:
        return 0.0
    return float(
        sum(b.rows * abs(b.mean_predicted - b.observed_rate) for b in bins if b.rows) / total
    )


@dataclass(frozen=True)
class Scores:
    auc: float | None
    brier: float
    log_loss: float
    calibration_error: float
    count_mae: float
    count_poisson_deviance: float

    @classmethod
    def of(cls, rows: pl.DataFrame, probability: np.ndarray, expected: np.ndarray) -> Scores:
        returned = rows["returned_7d"].to_numpy().astype(float)
        counts = rows["conversations_next_7d"].to_numpy().astype(float)
        return cls(
            auc=_round(auc(returned, probability)),
            brier=_round(brier(returned, probability)),
            log_loss=_round(log_loss(returned, probability)),
            calibration_error=_round(calibration_error(calibration(returned, probability))),
            count_mae=_round(float(np.mean(np.abs(expected - counts)))),
            count_poisson_deviance=_round(poisson_deviance(counts, expected)),
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 5)


# --- the split, the evaluation and the day's predictions ---------------------------------


@dataclass(frozen=True)
class Split:
    """The days of one prediction made on `as_of`. Evaluation: the last `EVALUATION_DAYS`
    days whose label windows are closed by `as_of`. Training: days whose label windows close
    by the first evaluation day, so that the model evaluated on a day knows only labels known
    on it. Training and evaluation rows start once the history covers a full 28-day lookback
    (`warm_up_end`), so that their features are not truncated by the start of the history."""

    as_of: date
    history_start: date
    warm_up_end: date
    train_last: date
    evaluation_first: date
    evaluation_last: date

    @classmethod
    def of(cls, as_of: date, history_days: int = HISTORY_DAYS) -> Split:
        evaluation_last = as_of - timedelta(days=HORIZON_DAYS)
        evaluation_first = evaluation_last - timedelta(days=EVALUATION_DAYS - 1)
        history_start = as_of - timedelta(days=history_days - 1)
        return cls(
            as_of=as_of,
            history_start=history_start,
            warm_up_end=history_start + timedelta(days=ACTIVE_DAYS - 1),
            train_last=evaluation_first - timedelta(days=HORIZON_DAYS),
            evaluation_first=evaluation_first,
            evaluation_last=evaluation_last,
        )

    def train(self, rows: pl.DataFrame) -> pl.DataFrame:
        return rows.filter(pl.col("day").is_between(self.warm_up_end, self.train_last))

    def evaluation(self, rows: pl.DataFrame) -> pl.DataFrame:
        first = max(self.evaluation_first, self.warm_up_end)
        return rows.filter(pl.col("day").is_between(first, self.evaluation_last))

    def labelled(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Every row whose label window is closed: what the served model is refitted on."""
        return rows.filter(pl.col("day").is_between(self.warm_up_end, self.evaluation_last))


@dataclass(frozen=True)
class Evaluation:
    as_of: date
    # "model" or "baseline": whose return probabilities the day's predictions serve (chosen
    # by the Brier score), and whose expected counts (chosen by the Poisson deviance).
    method: str
    reason: str
    count_method: str
    count_reason: str
    train_rows: int
    train_returned: int
    evaluation_rows: int
    evaluation_return_rate: float | None
    train_days: tuple[date, date]
    evaluation_days: tuple[date, date]
    model: Scores | None
    baseline: Scores | None
    model_calibration: list[CalibrationBin] = field(default_factory=list)
    baseline_calibration: list[CalibrationBin] = field(default_factory=list)

    def summary(self) -> dict:
        """Flat numbers (for metadata and the API), without the calibration bins."""
        flat = {
            "as_of": self.as_of.isoformat(),
            "method": self.method,
            "reason": self.reason,
            "count_method": self.count_method,
            "count_reason": self.count_reason,
            "train_rows": self.train_rows,
            "train_returned": self.train_returned,
            "evaluation_rows": self.evaluation_rows,
            "evaluation_return_rate": self.evaluation_return_rate,
            "train_days": [day.isoformat() for day in self.train_days],
            "evaluation_days": [day.isoformat() for day in self.evaluation_days],
        }
        for name, scores in (("model", self.model), ("baseline", self.baseline)):
            for metric, value in (asdict(scores) if scores else {}).items():
                flat[f"{name}_{metric}"] = value
        return flat


def _better(metric: str, model: float, baseline: float) -> tuple[str, str]:
    """The model where its evaluation figure (lower is better) is at least as good."""
    if model <= baseline:
        return "model", f"the model's {metric} is at least as good as the baseline's"
    return "baseline", f"the model's {metric} is worse than the baseline's"


@dataclass(frozen=True)
class Forecast:
    predictions: pl.DataFrame
    evaluation: Evaluation


def forecast(activity: pl.DataFrame, as_of: date, *, history_days: int = HISTORY_DAYS) -> Forecast:
    """The predictions for every user active in the 28 days up to `as_of`, from activity up
    to `as_of` (later days are ignored), with the evaluation that chose whose numbers they
    are."""
    split = Split.of(as_of, history_days)
    return _forecast_of_rows(user_day_rows(activity, split.history_start, as_of), split)[0]


def forecasts(
    activity: pl.DataFrame, days: Sequence[date], *, history_days: int = HISTORY_DAYS
) -> Iterator[Forecast]:
    """`forecast(activity, day)` for each of `days`, in their order, at a fraction of the
    cost of calling it per day: a backfill of 60 days built the features of up to 90 days
    and fitted four models from scratch 60 times over (68 s of a 1M-message backfill).

    The features are built once per `RANGE_DAYS` consecutive days of `days`, over the union
    of their histories (a longer union would hold a grid of every user by every day of it in
    memory at once). A row a forecast reads (from its `warm_up_end` on) has its whole 28-day
    window inside its own history, so it is the same row in the union but for
    `days_since_first`, which counts from the first active day inside that history and is
    recomputed per day; and but for the last bits of the sentiment and quality means, whose
    running sums start earlier in the union (differences of ~1e-15). Labels are read only
    where their 7 days end by `as_of`. Each model's fit starts from the one of the day
    before (`ReturnModel.fit`'s `near`). Tested equal to `forecast` per day."""
    if history_days < ACTIVE_DAYS:  # a history shorter than a window: rows differ per day
        for as_of in days:
            yield forecast(activity, as_of, history_days=history_days)
        return
    active_days = (
        activity.filter(pl.col("conversations").fill_null(0) > 0).select("user_id", "day").unique()
    )
    near: tuple[ReturnModel | None, ReturnModel | None] = (None, None)
    for start in range(0, len(days), RANGE_DAYS):
        chunk = days[start : start + RANGE_DAYS]
        first = min(chunk) - timedelta(days=history_days - 1)
        union = user_day_rows(activity, first, max(chunk))
        for as_of in chunk:
            split = Split.of(as_of, history_days)
            first_active = (
                active_days.filter(pl.col("day").is_between(split.history_start, as_of))
                .group_by("user_id")
                .agg(pl.col("day").min().alias("first_active"))
            )
            rows = (
                union.filter(pl.col("day").is_between(split.warm_up_end, as_of))
                .join(
                    first_active,
                    on="user_id",
                    how="left",
                    maintain_order="left",
                    nulls_equal=True,  # as user_day_rows, which gives a null id a row too
                )
                .with_columns(
                    days_since_first=(pl.col("day") - pl.col("first_active"))
                    .dt.total_days()
                    .cast(pl.Float64)
                )
                .drop("first_active")
            )
            result, near = _forecast_of_rows(rows, split, near)
            yield result


def _forecast_of_rows(
    rows: pl.DataFrame,
    split: Split,
    near: tuple[ReturnModel | None, ReturnModel | None] = (None, None),
) -> tuple[Forecast, tuple[ReturnModel | None, ReturnModel | None]]:
    """The forecast of `split.as_of` from its user-day rows (`user_day_rows` over its
    history); returns it with the models it fitted (evaluated, served), to start the next
    day's fits from (`near`, the same pair from the day before)."""
    as_of = split.as_of
    near_evaluated, near_served = near
    evaluated = served = None
    train, evaluation = split.train(rows), split.evaluation(rows)
    returned = int(train["returned_7d"].sum())
    too_little = (
        f"too little history: {train.height} training rows (at least {MIN_TRAIN_ROWS}), "
        f"{evaluation.height} evaluation rows (at least {MIN_EVALUATION_ROWS})"
        if train.height < MIN_TRAIN_ROWS or evaluation.height < MIN_EVALUATION_ROWS
        else "training rows of one class only"
        if returned in (0, train.height)
        else None
    )
    model_scores = baseline_scores = None
    model_bins: list[CalibrationBin] = []
    baseline_bins: list[CalibrationBin] = []
    truth = evaluation["returned_7d"].to_numpy().astype(float)
    if evaluation.height:
        baseline_probability, baseline_count = LastWeekBaseline.fit(train).predict(evaluation)
        baseline_scores = Scores.of(evaluation, baseline_probability, baseline_count)
        baseline_bins = calibration(truth, baseline_probability)
    if too_little is None:
        evaluated = ReturnModel.fit(train, near=near_evaluated)
        probability, expected = evaluated.predict(evaluation)
        model_scores = Scores.of(evaluation, probability, expected)
        model_bins = calibration(truth, probability)
    if too_little:
        method, reason = count_method, count_reason = "baseline", too_little
    else:
        method, reason = _better("Brier score", model_scores.brier, baseline_scores.brier)
        count_method, count_reason = _better(
            "Poisson deviance",
            model_scores.count_poisson_deviance,
            baseline_scores.count_poisson_deviance,
        )
    labelled = split.labelled(rows)
    today = rows.filter(pl.col("day") == as_of)
    baseline_probability, baseline_count = LastWeekBaseline.fit(labelled).predict(today)
    probability, expected = baseline_probability, baseline_count
    if "model" in (method, count_method):
        served = ReturnModel.fit(labelled, near=near_served)
        model_probability, model_expected = served.predict(today)
        probability = model_probability if method == "model" else probability
        expected = model_expected if count_method == "model" else expected
    predictions = (
        today.select(
            "user_id",
            "day",
            "conversations_7d",
            "conversations_28d",
            "active_days_28d",
            "days_since_last",
        )
        .with_columns(
            pl.Series("return_probability_7d", probability, pl.Float64).round(5),
            pl.Series("expected_conversations_7d", expected, pl.Float64).round(4),
            pl.Series("baseline_return_probability_7d", baseline_probability, pl.Float64).round(5),
            pl.Series("baseline_conversations_7d", baseline_count, pl.Float64),
            pl.lit(method).alias("method"),
            pl.lit(count_method).alias("count_method"),
        )
        .select(list(PREDICTION_SCHEMA))
        .cast(PREDICTION_SCHEMA)
        .sort("user_id")
    )
    forecast_of_day = Forecast(
        predictions,
        Evaluation(
            as_of=as_of,
            method=method,
            reason=reason,
            count_method=count_method,
            count_reason=count_reason,
            train_rows=train.height,
            train_returned=returned,
            evaluation_rows=evaluation.height,
            evaluation_return_rate=_round(float(truth.mean())) if evaluation.height else None,
            train_days=(split.warm_up_end, split.train_last),
            evaluation_days=(max(split.evaluation_first, split.warm_up_end), split.evaluation_last),
            model=model_scores,
            baseline=baseline_scores,
            model_calibration=model_bins,
            baseline_calibration=baseline_bins,
        ),
    )
    # A day without a fit hands on the older model: still the nearest start there is.
    return forecast_of_day, (evaluated or near_evaluated, served or near_served)


# --- a known generating process (for the tests and the benchmark) -----------------------


def simulated_activity(
    users: int = 800, days: int = 120, first_day: date = date(2026, 1, 1), seed: int = 7
) -> pl.DataFrame:
    """User activity from a known process: each user joins on a uniform day, stays for an
    exponential lifetime (mean 45 days) and meanwhile has Poisson(rate) conversations a day,
    the rate drawn from a gamma distribution (mean 0.2 a day: some users talk daily, most
    rarely). Returns user_analytics' `ACTIVITY_COLUMNS`, one row per user and active day."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(shape=0.8, scale=0.25, size=users)
    joined = rng.integers(0, days, size=users)
    left = joined + rng.exponential(45.0, size=users)
    day_index = np.arange(days)
    alive = (day_index >= joined[:, None]) & (day_index < left[:, None])
    conversations = rng.poisson(rates[:, None] * alive)
    user, day = np.nonzero(conversations)
    count = conversations[user, day]
    schema = {"user_id": pl.String(), "day": pl.Date(), "conversations": pl.UInt32(),
              "messages": pl.UInt32(), "sentiment_end_mean": pl.Float64(),
              "quality_mean": pl.Float64(), "sentiment_end_scored": pl.UInt32(),
              "quality_scored": pl.UInt32()}  # fmt: skip
    return pl.DataFrame(
        {
            "user_id": [f"u_{number:020x}" for number in user],
            "day": np.datetime64(first_day, "D") + day.astype("timedelta64[D]"),
            "conversations": count,
            "messages": count * (2 + rng.poisson(4, size=len(count))),
            "sentiment_end_mean": rng.uniform(-1, 1, size=len(count)),
            "quality_mean": rng.uniform(0, 1, size=len(count)),
            "sentiment_end_scored": count,
            "quality_scored": count,
        },
        schema=schema,
    )
