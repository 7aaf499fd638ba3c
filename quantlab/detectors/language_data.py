"""Data for the language_switch detector: Unicode script ranges, stopwords, language names.

Small by design (no language-identification model): scripts are told apart by Unicode
block, and the Latin-script languages quantized chat models most often drift between by
their commonest function words.
"""

from __future__ import annotations


def _w(words: str) -> frozenset[str]:
    """A set of space-separated words (keeps the word lists below readable)."""
    return frozenset(words.split())


#: Script name -> regex character class body (Unicode blocks of its letters).
SCRIPTS: dict[str, str] = {
    "latin": "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff",
    "cyrillic": "\u0400-\u052f\u1c80-\u1c8f\u2de0-\u2dff\ua640-\ua69f",
    "greek": "\u0370-\u03ff\u1f00-\u1fff",
    "arabic": "\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufefc",
    "hebrew": "\u0590-\u05ff",
    "devanagari": "\u0900-\u097f",
    "bengali": "\u0980-\u09ff",
    "tamil": "\u0b80-\u0bff",
    "thai": "\u0e00-\u0e7f",
    "georgian": "\u10a0-\u10ff",
    "armenian": "\u0530-\u058f",
    "hangul": "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af",
    "kana": "\u3040-\u30ff\u31f0-\u31ff",
    "han": "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff",
}

#: Pairs of scripts that legitimately share a word: Japanese mixes kana and kanji; maths
#: mixes Latin and Greek letters ("πr", "αβ-decay").
COMPATIBLE_SCRIPTS: frozenset[frozenset[str]] = frozenset(
    {frozenset({"han", "kana"}), frozenset({"latin", "greek"})}
)

#: Function words per Latin-script language. A word listed for several languages counts
#: for each of them with a weight of 1 / (number of languages listing it).
STOPWORDS: dict[str, frozenset[str]] = {
    "en": _w(
        "the a an and is are was were be been of to in that it its with for as on at this "
        "these those by not or have has had which who whom whose what when where why how "
        "you your we our they their them he she his her i my me from can will would should "
        "there if than then into about do does did but so all any some no yes "
        # Instruction words: short English prompts ("Explain how X works.") have few
        # function words, and these are English-only.
        "explain describe write give tell please answer translate summarize"
    ),
    "fr": _w(
        "le la les des est et un une du que qui dans pour pas sur au aux avec ce cette ces "
        "il elle ils elles sont en de ne nous vous je tu mais où très son sa ses leur être "
        "avoir fait comme plus par se lui y "
        "comment quel quelle quels pourquoi explique écris réponds donne décris"
    ),
    "es": _w(
        "el la los las es y un una unos que del en por para con no se su sus al lo como más "
        "pero está están son de muy también yo tu él ella nosotros ser hay fue este esta "
        "entre cuando sin sobre "
        "cómo qué cuál cuáles dónde explica explícalo escribe dime responde describe"
    ),
    "de": _w(
        "der die das und ist nicht ein eine einen einem zu den von mit sich des auf für im "
        "dem auch es sind wir ich sie wie oder aber du er ihr hat haben wird werden wenn "
        "noch nach bei aus um sein war "
        "welche welcher warum erkläre erklär schreibe antworte beschreibe gib"
    ),
    "it": _w(
        "il la le di che è e un una uno per non con del della dei delle sono si gli lo in "
        "da al alla come anche ma più nel nella questo questa io tu lui lei noi essere ha "
        "hanno perché "
        "come quale quali dove spiega spiegalo scrivi rispondi descrivi dimmi"
    ),
    "pt": _w(
        "o a os as de que e é do da em um uma para com não no na nos nas se por mais dos "
        "das como mas ao à eu você ele ela nós ser está são foi tem isso este esta muito "
        "qual quais onde explique escreva responda descreva"
    ),
    "nl": _w(
        "de het een en van is dat niet op te zijn voor met die aan er ook als maar bij naar "
        "wordt ik je jij hij zij wij we hun was heeft hebben dit deze wat om of "
        "hoe welke waarom leg uit schrijf beschrijf antwoord geef"
    ),
}

#: Letters and marks only some Latin-script languages use: each occurrence adds this
#: weight, split between the languages listed (a short prompt has few function words).
DIACRITICS: dict[str, tuple[str, ...]] = {
    "¿": ("es",),
    "¡": ("es",),
    "ñ": ("es",),
    "ã": ("pt",),
    "õ": ("pt",),
    "ç": ("fr", "pt"),
    "œ": ("fr",),
    "ê": ("fr", "pt"),
    "è": ("fr", "it"),
    "ù": ("fr", "it"),
    "ò": ("it",),
    "ì": ("it",),
    "ß": ("de",),
    "ä": ("de",),
    "ö": ("de",),
    "ü": ("de",),
}
DIACRITIC_WEIGHT = 0.5

#: Words naming a language (any case, accents optional) -> the language code they allow.
LANGUAGE_NAMES: dict[str, str] = {
    **dict.fromkeys(_w("english inglés ingles anglais englisch inglese inglês"), "en"),
    **dict.fromkeys(
        _w("french français francais francés frances französisch franzosisch francese francês"),
        "fr",
    ),
    **dict.fromkeys(
        _w("spanish español espanol espagnol spanisch spagnolo espanhol castellano"),
        "es",
    ),
    **dict.fromkeys(_w("german deutsch allemand alemán aleman tedesco alemão"), "de"),
    **dict.fromkeys(_w("italian italiano italien italienisch"), "it"),
    **dict.fromkeys(_w("portuguese português portugues portugais portugiesisch portoghese"), "pt"),
    **dict.fromkeys(_w("dutch nederlands néerlandais niederländisch flemish"), "nl"),
    **dict.fromkeys(
        _w("russian русский русском ukrainian українська bulgarian serbian kazakh belarusian"),
        "cyrillic",
    ),
    **dict.fromkeys(_w("greek ελληνικά"), "greek"),
    **dict.fromkeys(_w("arabic العربية persian farsi urdu"), "arabic"),
    **dict.fromkeys(_w("hebrew עברית yiddish"), "hebrew"),
    **dict.fromkeys(_w("hindi हिन्दी हिंदी marathi nepali sanskrit"), "devanagari"),
    **dict.fromkeys(_w("bengali bangla"), "bengali"),
    **dict.fromkeys(_w("tamil"), "tamil"),
    **dict.fromkeys(_w("thai ไทย"), "thai"),
    **dict.fromkeys(_w("georgian"), "georgian"),
    **dict.fromkeys(_w("armenian"), "armenian"),
    **dict.fromkeys(_w("korean 한국어"), "hangul"),
    **dict.fromkeys(_w("japanese 日本語"), "japanese"),
    **dict.fromkeys(_w("chinese mandarin cantonese 中文 汉语 漢語"), "han"),
}

#: Language or script code -> how evidence names it.
LABELS: dict[str, str] = {
    "en": "English",
    "fr": "French",
    "es": "Spanish",
    "de": "German",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "latin": "Latin script",
    "cyrillic": "Cyrillic script",
    "greek": "Greek script",
    "arabic": "Arabic script",
    "hebrew": "Hebrew script",
    "devanagari": "Devanagari script",
    "bengali": "Bengali script",
    "tamil": "Tamil script",
    "thai": "Thai script",
    "georgian": "Georgian script",
    "armenian": "Armenian script",
    "hangul": "Korean (Hangul)",
    "japanese": "Japanese",
    "han": "Chinese (Han)",
    "kana": "Japanese kana",
}

#: Language code -> the script it is written in (codes that are scripts map to themselves).
SCRIPT_OF: dict[str, str] = {
    **dict.fromkeys(STOPWORDS, "latin"),
    **{s: s for s in SCRIPTS},
    "japanese": "han",
}
