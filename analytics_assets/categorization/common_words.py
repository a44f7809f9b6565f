"""Words too common to name a topic by: what discovery leaves out of a cluster's terms and
`promote-topic` out of a new topic's keywords.

A cluster of Spanish `other` conversations was named `las_que`, its keywords `las, que,
con`: promoted, that topic would have matched nearly every Spanish text. Discovery's lift
(frequent in the cluster, rare elsewhere) cannot tell a language's function words from a
topic's, because a cluster is often one language and its function words are rare in the
others. So the lists are fixed: this project's English one, the function words of 32 other
languages from the `stop-words` package (shipped in it, read offline), and the greetings,
thanks and please of the languages the multilingual set covers, which every chat is full of.
A few topic words on the package's lists are kept as terms (`TOPIC_WORDS`: Czech's list has
`email`); others stay left out (Russian `время`, time).
"""

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


# Words of the package's lists that name what a chat is about, kept as terms: Czech's list
# has `email` and `design`, Spanish's `cuenta` (account), the Romance ones "work". Chosen by
# reading the lists' words that name a thing; taking the shipped taxonomies' keywords instead
# brought question words back (`cómo`, `dan`, `왜` are keywords of theirs).
TOPIC_WORDS = frozenset(
    ["email", "design", "cuenta", "conta", "trabajo", "trabalho", "lavoro", "valor"]
)


@cache
def common_words() -> frozenset[str]:
    """Every list above, lower-cased."""
    from stop_words import LANGUAGE_MAPPING, get_stop_words

    words = set()
    for code in LANGUAGE_MAPPING:
        if code != "en":
            words.update(word.lower() for word in get_stop_words(code))
    return frozenset((words - TOPIC_WORDS) | ENGLISH | COURTESY)
