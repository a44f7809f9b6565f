"""Per-conversation analytics: latency, resolution signals, and quality and satisfaction
scores in [0, 1] with the components that made them. Formulas: docs/metrics.md."""

from __future__ import annotations

import re

import polars as pl

from analytics_assets.transforms.records import messages_within_reach, newest_copies
from analytics_assets.transforms.timestamps import TIMESTAMP_DTYPE

# Phrases of a user who wants out of the bot (lower-cased, matched in a user turn, whole
# words). A bare "manager" or "lawyer" is not one: "does the password manager sync?" and
# "I am a lawyer" are questions to the bot, not requests to leave it.
ESCALATION_PATTERN = (
    r"\b(?:human agent|live agent|real person|"
    r"(?:talk|speak|chat) (?:to|with) (?:a |an |the |your |some )?"
    r"(?:human|person|agent|manager|supervisor|someone|somebody)|"
    r"(?:(?:transfer|connect|put) me (?:through )?(?:to|with) (?:a |an |the |your )?"
    r"(?:human|person|agent|manager|supervisor|someone|somebody|representative))|"
    r"(?:want|need|get me|give me|escalate (?:this |it )?to) "
    r"(?:a |an |the |your )?(?:human|real person|manager|supervisor)|"
    r"cancel my (?:subscription|account)|(?:my|our) lawyers?|legal action|"
    r"hablar con (?:una persona|un agente|un humano)|mit einem menschen|parler à un humain)\b"
)
# A user turn made only of these words (after normalizing) asks nothing: "thanks" or "ok"
# twice, or two emoji (which normalize to nothing), is not the same question asked again.
SMALL_TALK_WORDS = frozenset({
    "ok", "okay", "k", "kk", "yes", "yeah", "yep", "yup", "no", "nope", "sure", "thanks",
    "thank", "thx", "ty", "you", "so", "much", "very", "many", "hi", "hello", "hey", "bye",
    "goodbye", "cool", "great", "nice", "perfect", "awesome", "got", "it", "please", "lol",
    "haha", "gracias", "muchas", "si", "sí", "vale", "hola", "adiós", "adios", "danke", "vielen",
    "dank", "ja", "nein", "hallo", "tschüss", "merci", "beaucoup", "oui", "non", "bonjour",
    "salut", "obrigado", "obrigada", "sim", "não", "nao", "olá", "ola", "oi", "grazie", "mille",
    "ciao", "спасибо", "большое", "да", "нет", "привет", "пока", "谢谢", "谢谢你", "好的", "好",
    "是", "嗯", "对", "ありがとう", "ありがとうございます", "はい", "いいえ", "うん", "감사합니다",
    "고맙습니다", "네", "아니요", "شكرا", "نعم", "لا", "teşekkürler", "tesekkurler", "evet",
    "hayır",
    "merhaba",
})  # fmt: skip
# One pattern, not a split per message: the whole normalized turn is small-talk words.
_SMALL_TALK_WORD = "|".join(sorted(map(re.escape, SMALL_TALK_WORDS), key=len, reverse=True))
_ONLY_SMALL_TALK = rf"^(?:{_SMALL_TALK_WORD})(?: (?:{_SMALL_TALK_WORD}))*$"
# Shorter than this after normalizing ("?", "1", "ya"), a turn is not a question either,
# unless it is written in a script where two characters make a word.
MIN_REPEATED_CHARS = 3
_DENSE_SCRIPT = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]"
# Latency that users do not notice, and latency after which a reply feels broken (ms, p95).
LATENCY_GOOD_MS = 2_000.0
LATENCY_BAD_MS = 10_000.0
# Weights: what the user said explicitly (a rating, a thumb) outweighs what we infer.
QUALITY_WEIGHTS = {
    "answered_score": 1.0,
    "no_repeat_score": 1.0,
    "no_escalation_score": 1.0,
    "thumbs_score": 2.0,
    "latency_score": 0.5,
}
SATISFACTION_WEIGHTS = {
    "rating_score": 3.0,
    "thumbs_score": 2.0,
    "sentiment_end_score": 1.0,
    "sentiment_change_score": 0.5,
    "no_complaint_score": 1.0,
    "no_escalation_score": 1.0,
}
# The intents that say the categorizer abstained where a row has no `intent_method` (the
# shipped taxonomies' fallback); a row that has one abstained where it is `fallback`, whatever
# the taxonomy calls its fallback.
INTENT_FALLBACKS = ["uncertain"]
ABSTAINED = "fallback"
# Satisfaction is scored only where at least one of these is known.
SATISFACTION_SIGNALS = [name for name in SATISFACTION_WEIGHTS if name != "no_escalation_score"]
SENTIMENT_VALUE = {"positive": 1.0, "neutral": 0.5, "negative": 0.0}

ANALYTICS_SCHEMA: dict[str, pl.DataType] = {
    "conversation_id": pl.String(),
    "user_id": pl.String(),
    "model": pl.String(),
    "channel": pl.String(),
    "started_at": TIMESTAMP_DTYPE,
    "ended_at": TIMESTAMP_DTYPE,
    "duration_s": pl.Float64(),
    "turns": pl.UInt32(),
    "message_count": pl.UInt32(),
    "prompt_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "total_tokens": pl.Int64(),
    "latency_p50_ms": pl.Float64(),
    "latency_p95_ms": pl.Float64(),
    "rating": pl.Int8(),
    "feedback_up": pl.UInt32(),
    "feedback_down": pl.UInt32(),
    "topic": pl.String(),
    "intent": pl.String(),
    "language": pl.String(),
    "sentiment_opening": pl.String(),
    "sentiment": pl.String(),
    "repeated_question": pl.Boolean(),
    "unanswered_last_turn": pl.Boolean(),
    "abandoned_after_reply": pl.Boolean(),
    "escalation": pl.Boolean(),
    "complaint": pl.Boolean(),
    "categorized_via_translation": pl.Boolean(),
    "answered_score": pl.Float64(),
    "no_repeat_score": pl.Float64(),
    "no_escalation_score": pl.Float64(),
    "no_complaint_score": pl.Float64(),
    "thumbs_score": pl.Float64(),
    "latency_score": pl.Float64(),
    "rating_score": pl.Float64(),
    "sentiment_end_score": pl.Float64(),
    "sentiment_change_score": pl.Float64(),
    "quality_score": pl.Float64(),
    "satisfaction_score": pl.Float64(),
    "day": pl.Date(),
}


def weighted_mean(weights: dict[str, float]) -> pl.Expr:
    """Mean of the components present (non-null), by weight; null when none is present."""
    numerator = pl.sum_horizontal([pl.col(n).fill_null(0.0) * w for n, w in weights.items()])
    denominator = pl.sum_horizontal(
        [pl.col(n).is_not_null().cast(pl.Float64) * w for n, w in weights.items()]
    )
    return pl.when(denominator > 0).then(numerator / denominator)


Frame = pl.DataFrame | pl.LazyFrame


def conversation_analytics(
    conversations: Frame, messages: Frame, categories: Frame, *, engine: str = "auto"
) -> pl.DataFrame:
    """One row per conversation of `conversations` (its day); `messages` must cover the day
    and the next, `categories` the same conversations.

    Runs as one lazy query: given lake scans, polars reads only the columns and rows it needs
    (the messages of these conversations), and the query can run on the GPU engine."""
    conversations, messages, categories = conversations.lazy(), messages.lazy(), categories.lazy()
    if "categorized_via_translation" not in categories.collect_schema():
        # Categories written before translations existed were all read in the original.
        categories = categories.with_columns(pl.lit(False).alias("categorized_via_translation"))
    if "intent_method" not in categories.collect_schema():
        categories = categories.with_columns(pl.lit(None, pl.String).alias("intent_method"))
    # Over D and D+1 a message NocoDB holds on both days (a re-delivery after midnight) is
    # one message, not a repeated question.
    owned = newest_copies(messages_within_reach(messages, conversations))
    normalized = (
        pl.col("content").str.to_lowercase().str.replace_all(r"[^\w]+", " ").str.strip_chars()
    )
    # Two Han, Kana or Hangul characters are a question (退款, "refund"); two Latin ones not.
    long_enough = (normalized.str.len_chars() >= MIN_REPEATED_CHARS) | (
        normalized.str.contains(_DENSE_SCRIPT) & (normalized.str.len_chars() >= 2)
    )
    asks_something = long_enough & ~normalized.str.contains(_ONLY_SMALL_TALK)
    is_user = pl.col("role") == "user"
    signals = (
        owned.sort("created_at", "message_id")
        .group_by("conversation_id", maintain_order=True)
        .agg(
            pl.col("latency_ms").filter(pl.col("role") == "assistant").quantile(0.5, "linear")
            .alias("latency_p50_ms"),
            pl.col("latency_ms").filter(pl.col("role") == "assistant").quantile(0.95, "linear")
            .alias("latency_p95_ms"),
            # The same question again (after normalizing case and punctuation).
            (normalized.filter(is_user & asks_something).is_duplicated().any())
            .alias("repeated_question"),
            is_user.sum().alias("_user_turns"),
            # Who spoke last: a system prompt or a tool's output is neither side's turn.
            pl.col("role").filter(pl.col("role").is_in(["user", "assistant"])).last()
            .alias("_last_role"),
            pl.col("content").filter(is_user).str.to_lowercase()
            .str.contains(ESCALATION_PATTERN).any().alias("escalation"),
        )
    )  # fmt: skip
    frame = (
        conversations.join(signals, on="conversation_id", how="left")
        .join(
            categories.select(
                "conversation_id",
                "topic",
                "intent",
                "intent_method",
                "language",
                "sentiment_opening",
                "sentiment",
                "categorized_via_translation",
            ),
            on="conversation_id",
            how="left",
        )
        .with_columns(
            pl.col("repeated_question").fill_null(False),
            pl.col("escalation").fill_null(False),
            (pl.col("_last_role") == "user").fill_null(False).alias("unanswered_last_turn"),
            ((pl.col("_last_role") == "assistant") & (pl.col("sentiment") == "negative"))
            .fill_null(False)
            .alias("abandoned_after_reply"),
            # Null where the intent is not known: the conversation is not categorized (yet),
            # or its intent is the fallback (an abstention). Neither is a complaint-free one.
            pl.when(
                pl.col("intent").is_not_null()
                & pl.when(pl.col("intent_method").is_not_null())
                .then(pl.col("intent_method") != ABSTAINED)
                .otherwise(~pl.col("intent").is_in(INTENT_FALLBACKS))
            )
            .then(pl.col("intent") == "complaint")
            .alias("complaint"),
            pl.col("categorized_via_translation").fill_null(False),
        )
    )
    feedback_total = pl.col("feedback_up") + pl.col("feedback_down")
    opening_value = pl.col("sentiment_opening").replace_strict(SENTIMENT_VALUE, default=None)
    end_value = pl.col("sentiment").replace_strict(SENTIMENT_VALUE, default=None)
    # Without a user turn (a conversation whose messages are not there, or only the bot's)
    # there was no question to answer, repeat, complain in or wait for: those components are
    # absent, not perfect. The change of sentiment needs two user turns.
    asked = pl.col("_user_turns").fill_null(0) > 0

    def where_asked(component: pl.Expr) -> pl.Expr:
        return pl.when(asked).then(component)

    frame = frame.with_columns(
        where_asked(1.0 - pl.col("unanswered_last_turn").cast(pl.Float64)).alias("answered_score"),
        where_asked(1.0 - pl.col("repeated_question").cast(pl.Float64)).alias("no_repeat_score"),
        where_asked(1.0 - pl.col("escalation").cast(pl.Float64)).alias("no_escalation_score"),
        where_asked(1.0 - pl.col("complaint").cast(pl.Float64)).alias("no_complaint_score"),
        pl.when(feedback_total > 0)
        .then(pl.col("feedback_up") / feedback_total)
        .alias("thumbs_score"),
        where_asked(
            1.0 - (pl.col("latency_p95_ms") - LATENCY_GOOD_MS) / (LATENCY_BAD_MS - LATENCY_GOOD_MS)
        ).clip(0.0, 1.0).alias("latency_score"),
        ((pl.col("rating").cast(pl.Float64) - 1.0) / 4.0).alias("rating_score"),
        where_asked(end_value).alias("sentiment_end_score"),
        # -1..1 change from the first to the last user turn, mapped to 0..1.
        pl.when(pl.col("_user_turns") >= 2)
        .then((end_value - opening_value + 1.0) / 2.0)
        .alias("sentiment_change_score"),
    )  # fmt: skip
    return (
        frame.with_columns(
            weighted_mean(QUALITY_WEIGHTS).alias("quality_score"),
            # "Did not ask for a human" alone says nothing of how satisfied a user was: a
            # conversation with no rating, thumb, sentiment or categorized intent scored 1.0.
            pl.when(pl.any_horizontal(pl.col(SATISFACTION_SIGNALS).is_not_null()))
            .then(weighted_mean(SATISFACTION_WEIGHTS))
            .alias("satisfaction_score"),
        )
        .select(list(ANALYTICS_SCHEMA))
        .cast(ANALYTICS_SCHEMA)
        .sort("started_at", "conversation_id")
        .collect(engine=engine)
    )
