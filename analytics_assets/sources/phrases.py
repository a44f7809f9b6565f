"""Phrase banks for the sample generator: what users of a SaaS chatbot say, in 8 languages.

Each opening carries the topic and intent it was written for, so the sample doubles as a
labelled set for the categorization tiers.
"""

from __future__ import annotations

# language -> list of (topic, intent, text)
OPENINGS: dict[str, list[tuple[str, str, str]]] = {
    "en": [
        ("pricing", "purchase", "How much does the Pro plan cost per seat?"),
        ("pricing", "information", "Is there a discount for annual billing or for nonprofits?"),
        ("pricing", "purchase", "We want to upgrade to the Enterprise tier, what is the price?"),
        ("billing", "support", "I was charged twice this month, can you refund one payment?"),
        ("billing", "complaint", "Your invoice is wrong again and nobody answers my emails."),
        ("billing", "support", "How do I change the credit card on my subscription?"),
        ("features", "information", "Does the dashboard support exporting charts to PDF?"),
        ("features", "feedback", "It would be great if you added dark mode to the editor."),
        ("features", "information", "Can I schedule reports to be sent every Monday?"),
        ("account", "support", "I can't log in, the password reset email never arrives."),
        ("account", "support", "How do I add a new admin to our workspace?"),
        ("account", "complaint", "My account was locked for no reason, this is unacceptable."),
        ("bug", "troubleshooting", "The app crashes with error 500 when I upload a CSV file."),
        ("bug", "troubleshooting", "Since the last update the sync button does nothing."),
        ("bug", "complaint", "The export has been broken for three days, fix it please!"),
        ("integration", "troubleshooting", "The API returns 401 even though my token is valid."),
        ("integration", "information", "Do you have a webhook for new orders? Using the REST API."),
        ("integration", "troubleshooting", "Our Slack integration stopped posting messages."),
        ("how_to", "information", "How do I create a pivot table from two data sources?"),
        ("how_to", "information", "What's the best way to share a dashboard with a client?"),
        ("how_to", "support", "Can you walk me through setting up two-factor authentication?"),
        ("feedback", "feedback", "Just wanted to say the new onboarding is really smooth, thanks!"),
        ("feedback", "feedback", "The latest redesign is confusing, I liked the old menu better."),
        ("other", "chit_chat", "Hi there! How are you today?"),
        ("other", "chit_chat", "Tell me a joke about spreadsheets."),
        ("other", "information", "What's the weather like in Berlin?"),
    ],
    "es": [
        ("pricing", "purchase", "¿Cuánto cuesta el plan Pro por usuario?"),
        ("billing", "support", "Me cobraron dos veces este mes, ¿pueden devolverme un pago?"),
        ("features", "information", "¿El panel permite exportar gráficos a PDF?"),
        ("account", "support", "No puedo iniciar sesión, nunca llega el correo para restablecer."),
        ("bug", "troubleshooting", "La aplicación se cierra con un error al subir un archivo CSV."),
        ("integration", "troubleshooting", "La API devuelve 401 aunque mi token es válido."),
        ("how_to", "information", "¿Cómo creo una tabla dinámica con dos fuentes de datos?"),
        ("feedback", "feedback", "El nuevo diseño es muy bonito, ¡gracias!"),
        ("other", "chit_chat", "¡Hola! ¿Qué tal estás hoy?"),
    ],
    "de": [
        ("pricing", "purchase", "Wie viel kostet der Pro-Tarif pro Nutzer?"),
        ("billing", "complaint", "Die Rechnung ist schon wieder falsch, das ist ärgerlich."),
        ("features", "information", "Kann ich Berichte jeden Montag automatisch versenden?"),
        ("account", "support", "Ich kann mich nicht anmelden, die E-Mail kommt nicht an."),
        (
            "bug",
            "troubleshooting",
            "Seit dem letzten Update funktioniert die Synchronisierung nicht.",
        ),
        ("integration", "information", "Gibt es einen Webhook für neue Bestellungen über die API?"),
        ("how_to", "information", "Wie teile ich ein Dashboard mit einem Kunden?"),
        ("feedback", "feedback", "Das neue Onboarding ist wirklich gelungen, danke!"),
    ],
    "fr": [
        ("pricing", "information", "Y a-t-il une réduction pour la facturation annuelle ?"),
        ("billing", "support", "Comment changer la carte bancaire de mon abonnement ?"),
        ("features", "feedback", "Ce serait génial d'avoir un mode sombre dans l'éditeur."),
        ("account", "support", "Comment ajouter un nouvel administrateur à notre espace ?"),
        ("bug", "complaint", "L'export ne marche plus depuis trois jours, c'est inadmissible !"),
        ("integration", "troubleshooting", "Notre intégration Slack ne publie plus de messages."),
        (
            "how_to",
            "support",
            "Pouvez-vous m'expliquer comment activer la double authentification ?",
        ),
        ("other", "chit_chat", "Bonjour ! Racontez-moi une blague."),
    ],
    "pt": [
        ("pricing", "purchase", "Quanto custa o plano Enterprise por ano?"),
        ("billing", "support", "Fui cobrado duas vezes, podem reembolsar um pagamento?"),
        ("features", "information", "O painel permite agendar relatórios semanais?"),
        ("bug", "troubleshooting", "O aplicativo trava quando envio um arquivo CSV."),
        ("integration", "information", "Vocês têm webhook para novos pedidos na API REST?"),
        ("how_to", "information", "Como compartilho um painel com um cliente?"),
        ("feedback", "feedback", "O novo design ficou confuso, prefiro o menu antigo."),
    ],
    "zh": [
        ("pricing", "purchase", "专业版每个用户每月多少钱？"),
        ("billing", "support", "这个月我被扣了两次款，可以退款吗？"),
        ("bug", "troubleshooting", "上传CSV文件时应用程序崩溃了。"),
        ("how_to", "information", "如何与客户共享仪表板？"),
        ("integration", "troubleshooting", "我的令牌是有效的，但API一直返回401错误。"),
    ],
    "ru": [
        ("pricing", "information", "Есть ли скидка при оплате за год?"),
        ("account", "support", "Не могу войти, письмо для сброса пароля не приходит."),
        ("bug", "complaint", "Экспорт не работает уже три дня, исправьте, пожалуйста!"),
        ("features", "information", "Можно ли экспортировать графики в PDF?"),
        ("how_to", "information", "Как создать сводную таблицу из двух источников данных?"),
    ],
    "ja": [
        ("pricing", "purchase", "プロプランは1ユーザーあたりいくらですか？"),
        ("account", "support", "ログインできません。パスワードリセットのメールが届きません。"),
        ("bug", "troubleshooting", "CSVファイルをアップロードするとアプリがクラッシュします。"),
        ("features", "information", "レポートを毎週月曜日に自動送信できますか？"),
        ("feedback", "feedback", "新しいオンボーディングはとても使いやすいです。ありがとう！"),
    ],
}

LANGUAGE_WEIGHTS = {
    "en": 0.58,
    "es": 0.12,
    "de": 0.08,
    "fr": 0.08,
    "pt": 0.06,
    "zh": 0.03,
    "ru": 0.03,
    "ja": 0.02,
}

# Follow-up turns by the user, by the sentiment of the conversation.
FOLLOW_UPS: dict[str, dict[str, list[str]]] = {
    "en": {
        "positive": [
            "Perfect, that worked. Thank you so much!",
            "Great, thanks for the quick help 🙂",
        ],
        "neutral": ["Okay. And where do I find that setting?", "Can you give me an example?"],
        "negative": [
            "That doesn't work, I already tried it. This is frustrating.",
            "I asked the same question twice, can I talk to a human agent?",
        ],
    },
    "es": {
        "positive": ["¡Perfecto, funcionó! Muchas gracias."],
        "neutral": ["Vale. ¿Dónde encuentro esa opción?"],
        "negative": ["Eso no funciona, ya lo probé. Qué frustración."],
    },
    "de": {
        "positive": ["Super, das hat geklappt. Vielen Dank!"],
        "neutral": ["Okay. Wo finde ich diese Einstellung?"],
        "negative": ["Das funktioniert nicht, das habe ich schon versucht."],
    },
    "fr": {
        "positive": ["Parfait, ça marche. Merci beaucoup !"],
        "neutral": ["D'accord. Où se trouve ce réglage ?"],
        "negative": ["Ça ne marche pas, j'ai déjà essayé. C'est frustrant."],
    },
    "pt": {
        "positive": ["Perfeito, funcionou. Muito obrigado!"],
        "neutral": ["Certo. Onde encontro essa opção?"],
        "negative": ["Não funciona, já tentei isso. Que frustrante."],
    },
    "zh": {
        "positive": ["太好了，问题解决了，谢谢！"],
        "neutral": ["好的，这个设置在哪里？"],
        "negative": ["还是不行，我已经试过了，真让人失望。"],
    },
    "ru": {
        "positive": ["Отлично, всё заработало. Спасибо!"],
        "neutral": ["Хорошо. А где найти эту настройку?"],
        "negative": ["Это не работает, я уже пробовал. Очень неприятно."],
    },
    "ja": {
        "positive": ["完璧です、うまくいきました。ありがとうございます！"],
        "neutral": ["わかりました。その設定はどこにありますか？"],
        "negative": ["それはうまくいきません。もう試しました。"],
    },
}

ASSISTANT_REPLIES: dict[str, list[str]] = {
    "en": [
        "Thanks for reaching out! Go to Settings → Billing and choose the option you need.",
        "I'm sorry about the trouble. Could you share the exact error message and a timestamp?",
        "Here is how: open the dashboard, click Share, then add the client's email address.",
        "You can do that through the API: `POST /v1/reports` with `schedule: weekly`.",
    ],
    "es": ["¡Gracias por escribirnos! Ve a Ajustes → Facturación y elige la opción."],
    "de": ["Danke für Ihre Nachricht! Öffnen Sie Einstellungen → Abrechnung."],
    "fr": ["Merci de nous avoir contactés ! Ouvrez Paramètres → Facturation."],
    "pt": ["Obrigado pelo contato! Abra Configurações → Cobrança e escolha a opção."],
    "zh": ["感谢您的联系！请前往设置 → 账单，然后选择相应选项。"],
    "ru": ["Спасибо за обращение! Откройте Настройки → Оплата."],
    "ja": ["お問い合わせありがとうございます！設定 → 請求 を開いてください。"],
}

MODELS = {"gpt-4o": 0.45, "claude-3-5-sonnet": 0.35, "llama-3-70b": 0.20}
CHANNELS = {"web": 0.55, "mobile": 0.25, "slack": 0.12, "api": 0.08}
