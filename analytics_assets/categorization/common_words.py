"""Words too common to name a topic by: what discovery leaves out of a cluster's terms and
`promote-topic` out of a new topic's keywords.

A cluster of Spanish `other` conversations was named `las_que`, its keywords `las, que,
con`: promoted, that topic would have matched nearly every Spanish text. Discovery's lift
(frequent in the cluster, rare elsewhere) cannot tell a language's function words from a
topic's, because a cluster is often one language and its function words are rare in the
others. So the lists are fixed: this project's English one, the function words of 32 other
languages from the `stop-words` package (shipped in it, read offline), and the greetings,
thanks and please of the languages the multilingual set covers, which every chat is full of.
A word of the package's lists that either shipped taxonomy uses as a one-word keyword is
kept (Czech's list has `email` and `design`). Other topic words on those lists stay left
out: Spanish `cuenta` (account), `trabajo` (work), Russian `время` (time).

The package's English list is not used: at 1,333 words it holds topic words (`order`,
`problem`, `work`)."""

from __future__ import annotations

from functools import cache

ENGLISH = frozenset(
    [
        "the",
        "and",
        "for",
        "you",
        "your",
        "with",
        "this",
        "that",
        "have",
        "has",
        "was",
        "are",
        "but",
        "not",
        "can",
        "how",
        "what",
        "when",
        "where",
        "why",
        "who",
        "does",
        "did",
        "there",
        "their",
        "them",
        "they",
        "our",
        "out",
        "all",
        "any",
        "from",
        "into",
        "just",
        "like",
        "more",
        "some",
        "than",
        "then",
        "very",
        "will",
        "would",
        "could",
        "should",
        "about",
        "please",
        "thanks",
        "thank",
        "hello",
    ]
)
# Greetings, thanks and please (three letters or more: shorter words are never terms).
COURTESY = frozenset(
    [
        "hola",
        "gracias",
        "favor",
        "hallo",
        "danke",
        "bitte",
        "bonjour",
        "salut",
        "merci",
        "plaît",
        "ciao",
        "grazie",
        "favore",
        "olá",
        "obrigado",
        "obrigada",
        "привет",
        "здравствуйте",
        "спасибо",
        "пожалуйста",
        "merhaba",
        "teşekkürler",
        "teşekkür",
        "lütfen",
        "مرحبا",
        "شكرا",
    ]
)


@cache
def common_words() -> frozenset[str]:
    """Every list above, lower-cased."""
    from stop_words import LANGUAGE_MAPPING, get_stop_words

    words = set()
    for code in LANGUAGE_MAPPING:
        if code != "en":
            words.update(word.lower() for word in get_stop_words(code))
    # The package's lists hold topic words too (Czech `email`, `design`): a word either
    # shipped taxonomy keys a label on is not common.
    words -= _taxonomy_keywords()
    return frozenset(words | ENGLISH | COURTESY)


def _taxonomy_keywords() -> set[str]:
    """The shipped taxonomies' one-word keywords, lower-cased (the words of a phrase such as
    "qu'est-ce que" are function words)."""
    import yaml

    from analytics_assets.categorization.taxonomy import SHIPPED_TAXONOMIES

    found: set[str] = set()
    for path in SHIPPED_TAXONOMIES.values():
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for dimension in ("topics", "intents", "sentiments"):
            for spec in (document.get(dimension) or {}).values():
                for keyword in (spec or {}).get("keywords") or ():
                    if len(str(keyword).split()) == 1:
                        found.add(str(keyword).lower())
    return found
