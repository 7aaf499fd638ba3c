"""The failure detectors: handmade texts (each detector firing and not firing) and the real
answers of the local BF16/Q4_0 pair recorded in tests/data/pair_outputs.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantlab.detectors import DETECTORS, detect, detect_exchange
from quantlab.detectors.divergence import first_difference, similarity
from quantlab.detectors.numbers import final_number, find_numbers, parse_number
from quantlab.detectors.textnorm import contains, tokenize
from quantlab.records import (
    Case,
    Exchange,
    Fact,
    Finding,
    LaneError,
    LaneResult,
    SamplingParams,
)

DATA = Path(__file__).parent / "data" / "pair_outputs.jsonl"

FLUENT = (
    "Photosynthesis is the process by which green plants turn light into chemical energy. "
    "Chlorophyll in the chloroplasts absorbs sunlight, which splits water molecules and "
    "releases oxygen. The energy is stored in ATP and NADPH, and the Calvin cycle then uses "
    "it to fix carbon dioxide into sugars that feed the plant and, in the end, most life on "
    "Earth."
)


def case(**kw: object) -> Case:
    prompt = str(kw.pop("prompt", "Question?"))
    return Case(id="t", messages=[{"role": "user", "content": prompt}], **kw)  # type: ignore[arg-type]


def one(findings: list[Finding], detector: str) -> Finding | None:
    hits = [f for f in findings if f.detector == detector]
    assert len(hits) <= 1
    return hits[0] if hits else None


def run(detector: str, text: str, **kw: object) -> Finding | None:
    return one(detect(text, only=(detector,), **kw), detector)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- API


def test_detector_names_are_the_contract() -> None:
    assert list(DETECTORS) == [
        "repetition",
        "collapse",
        "truncation",
        "fact_recall",
        "expected_answer",
        "format",
        "divergence",
        "language_switch",
        "runaway",
    ]


def test_a_lane_cut_off_by_quantlab_is_a_runaway_fail_and_others_say_nothing() -> None:
    why = "cut off by quantlab: over 576 content chunks for max_tokens 256"
    f = run("runaway", "word " * 50, cut_off=why)
    assert f is not None and f.severity == "fail" and why in f.evidence
    assert run("runaway", "word " * 50) is None


def test_detect_returns_findings_with_lane_and_valid_severity() -> None:
    found = detect("", lane="q4", finish_reason="length", max_tokens=16)
    assert {f.detector for f in found} == {"collapse", "truncation"}
    for f in found:
        assert isinstance(f, Finding)
        assert f.lane == "q4"
        assert f.severity in ("info", "warn", "fail")
        assert f.evidence


def test_clean_answer_has_no_findings() -> None:
    assert detect(FLUENT, prompt="Explain how photosynthesis works.", finish_reason="stop") == []


GOOD = json.loads((Path(__file__).parent / "data" / "good_answers.json").read_text("utf-8"))


@pytest.mark.parametrize("item", GOOD, ids=[g["id"] for g in GOOD])
def test_well_formed_answers_raise_nothing(item: dict) -> None:
    """Handwritten answers in the style of a capable model (markdown, tables, code, maths,
    CJK, Cyrillic, a refrain, layout rules): none is a failure, so nothing may fire."""
    assert detect(item["text"], prompt=item["prompt"], finish_reason="stop") == []


def test_odd_text_never_raises() -> None:
    for text in ["\ud800 lone surrogate", "\x00\x01\x02", "🌱" * 3, "a" * 5000, "\n" * 100]:
        detect(text, case=case(expect="4", format="json"), reference="x", finish_reason="length")


# --------------------------------------------------------------------------- repetition


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("The tiger is " + "a majestic feline, " * 12, "a majestic feline, "),
        ("Steps: " + "1. " * 15, "1. "),
        ("Is it true? " + "False, False, or False, " * 6, "False, False, or False, "),
        ("Total: " + "12 * 11 = " * 6, "12 * 11 = "),
    ],
)
def test_repetition_fires_on_loops_that_run_into_the_cap(text: str, unit: str) -> None:
    f = run("repetition", text, finish_reason="length")
    assert f is not None and f.severity == "fail"
    assert f'"{unit}"' in f.evidence
    assert "to the end" in f.evidence


def test_repetition_reports_where_the_loop_starts() -> None:
    text = "Tigers are big cats. " + "so far away, " * 8
    f = run("repetition", text, finish_reason="stop")
    assert f is not None
    assert f"from char {text.index('so far')}" in f.evidence
    assert f.score == pytest.approx((len(text) - 21 - 1) / len(text), abs=0.05)


def test_repetition_quiet_on_fluent_and_mildly_repetitive_text() -> None:
    assert run("repetition", FLUENT, finish_reason="stop") is None
    assert run("repetition", "It was very, very, very good.", finish_reason="stop") is None
    table = "| a | b | c |\n|---|---|---|\n| 1 | 2 | 3 |\n\n-----\n"
    assert run("repetition", table, finish_reason="stop") is None


def test_repetition_quiet_on_a_table_whose_numbers_vary() -> None:
    text = "\n".join(f"7 x {i} = {7 * i}" for i in range(1, 13))
    assert run("repetition", text, finish_reason="stop") is None


def test_repetition_identical_markup_lines_are_only_suspicious() -> None:
    text = "<table>\n" + "  <tr><td></td><td></td><td></td></tr>\n" * 3 + "</table>"
    f = run("repetition", text, prompt="An HTML table with 3 empty rows.", finish_reason="stop")
    assert f is not None and f.severity == "warn"


def test_repetition_sees_a_loop_that_differs_only_in_list_numbers() -> None:
    text = "The parts:\n" + "".join(f"{i}. The mainframe is where it lives.\n" for i in range(1, 9))
    f = run("repetition", text, finish_reason="length")
    assert f is not None and f.severity == "fail"
    assert "list numbers aside" in f.evidence


def test_repetition_sees_a_loop_inside_one_token() -> None:
    text = "The largest ocean covers about 151.3" + "1" * 48
    f = run("repetition", text, finish_reason="length")
    assert f is not None and f.severity == "fail"
    assert '"1" ×' in f.evidence


def test_repetition_judges_a_capped_answer_that_restarts_a_passage_by_its_share() -> None:
    a = (
        "The total number of apples Tom has now is the sum of the apples he already had "
        "and the apples he bought at the market this morning. "
    )
    b = "The difference between the two is the same as the apples he already has. "
    # A B A cut by max_tokens, the repeat covering most of the answer: a loop (fail).
    text = "To solve this we add. " + a + b + a + "The diff"
    f = run("repetition", text, finish_reason="length")
    assert f is not None and f.severity == "fail" and "repeats itself when cut" in f.evidence
    assert run("repetition", text, finish_reason="stop") is None
    # The same restart after a long fluent answer covers less than half of it: warn.
    preamble = (
        "Apples are counted one by one, and every purchase adds to what Tom already owns. "
        "Before buying, he checked the basket in the kitchen, counted what was left from "
        "last week, and wrote the number down on a small card so he would not forget it. "
        "At the market he compared prices, chose the ripest fruit and paid in cash. "
        "On the way home he met a neighbour who grows pears, and they talked about the "
        "weather, the harvest and the price of cider until the bus finally arrived. "
    )
    longer = preamble + a + b + a + "The diff"
    f = run("repetition", longer, finish_reason="length")
    assert f is not None and f.severity == "warn"


def test_repetition_fails_a_capped_poem_said_again_and_again() -> None:
    # Recorded from the Q4_0 lane (haiku about rain): the stanza and a remark, said again.
    stanza = (
        "In twilight's veil, a rainbow's light\nA rainbow's light, a rainbow's light\n"
        "A rainbow's light, a rainbow's light\nA rainbow's light, a rainbow's light\n\n"
    )
    text = (
        stanza
        + "Here's a possible way to make this poem more impactful:\n\n"
        + stanza
        + "Here's a possible way to make it more impactful:\n\n"
        + stanza[:90]
    )
    f = run("repetition", text, prompt="Write a haiku about rain.", finish_reason="length")
    assert f is not None and f.severity == "fail"


def test_repetition_finds_the_loop_a_capped_answer_ran_into_behind_a_longer_repeat() -> None:
    # Recorded from the Q4_0 lane: the longest repeat is an earlier near-repeat (×1.8), the
    # loop that ran into max_tokens is the short one at the end.
    text = (
        "The Rainbow, one by one, with no other text, is a rainbow, one by one, with no other "
        "text, one by one, with no other text, one by one, one by one, one by one, one by"
    )
    f = run("repetition", text, finish_reason="length")
    assert f is not None and f.severity == "fail" and '"one by one, " ×3.8' in f.evidence
    ended = run("repetition", text + " one.", finish_reason="stop")
    assert ended is None or ended.severity == "warn"
    # A capped fluent answer with no loop at its cut: nothing to find there.
    assert run("repetition", FLUENT, finish_reason="length") is None


def test_repetition_is_info_when_the_prompt_asks_for_it() -> None:
    text = "hello, " * 10
    asked = run("repetition", text, prompt="Repeat 'hello' ten times.", finish_reason="stop")
    assert asked is not None and asked.severity == "info"
    capped = run("repetition", text, prompt="Repeat 'hello' ten times.", finish_reason="length")
    assert capped is not None and capped.severity == "fail"


def test_repetition_warns_on_bare_numbers_counting_into_the_cap() -> None:
    text = " ".join(f"{i}." for i in range(1, 52))
    f = run("repetition", text, prompt="Give the steps to make tea.", finish_reason="length")
    assert f is not None and f.severity == "warn"
    assert run("repetition", text, finish_reason="stop") is None


# --------------------------------------------------------------------------- collapse


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty answer"),
        ("  \n\t ", "empty answer"),
        ("the the the the the the the", "one token repeated"),
        ("!!!!!!!!!!!!", "one token repeated"),
        ("🌱🌱🌱🌱🌱🌱", "one token repeated"),
        ("1111111111111", "one character repeated"),
        ("." + "\n" * 60, "whitespace"),
    ],
)
def test_collapse_fails_on_empty_and_single_token_answers(text: str, words: str) -> None:
    f = run("collapse", text)
    assert f is not None and f.severity == "fail"
    assert words in f.evidence


def test_collapse_measures_garbage_characters() -> None:
    bad = run("collapse", "The answer \ufffd\ufffd\ufffd\ufffd is \x00\x01\x02 ok")
    assert bad is not None and bad.severity == "fail"
    assert "REPLACEMENT CHARACTER" in bad.evidence
    leaked = run("collapse", "Paris is the capital of France.<|im_end|>")
    assert leaked is not None and leaked.severity == "warn"
    assert "<|im_end|>" in leaked.evidence


def test_collapse_symbol_soup_unless_symbols_were_asked_for() -> None:
    soup = "#$%&*@!(#*$&@(#*$&@#(*$&@#*(&$@#(*&"
    f = run("collapse", soup)
    assert f is not None and f.severity == "warn"
    assert run("collapse", soup, prompt="Answer with emoji and symbols only.") is None


def test_collapse_quiet_on_normal_text() -> None:
    assert run("collapse", FLUENT) is None
    assert run("collapse", "Hello, hello, hello, hello, hello!") is None  # repetition's case
    assert run("collapse", "Café au lait, s'il vous plaît 😀 — merci.") is None
    assert run("collapse", "[1, 2, 3]") is None


# --------------------------------------------------------------------------- truncation


def test_truncation_fires_only_on_length() -> None:
    f = run("truncation", "It was the best of", finish_reason="length", max_tokens=5)
    assert f is not None and f.severity == "warn"
    assert "capped at max_tokens (5)" in f.evidence
    assert "best of" in f.evidence
    assert run("truncation", "Done.", finish_reason="stop") is None
    assert run("truncation", "Done.", finish_reason=None) is None


def test_truncation_takes_max_tokens_from_the_case() -> None:
    c = case(params=SamplingParams(max_tokens=200))
    f = run("truncation", "Cut", case=c, finish_reason="length")
    assert f is not None and "(200)" in f.evidence


# --------------------------------------------------------------------------- fact_recall

FACTS = [
    Fact(key="room code", value="4417", depth=0.1),
    Fact(key="fruit", value="mango", depth=0.4),
    Fact(key="lead", value="Priya Nair", depth=0.8, aliases=["Dr. Nair"]),
]


def test_fact_recall_normalizes_case_punctuation_and_separators() -> None:
    text = "The code is 4,417; her fruit: MANGO. The lead is PRIYA NAIR."
    assert run("fact_recall", text, case=case(facts=FACTS)) is None
    assert run("fact_recall", "4417, mango, ask Dr Nair", case=case(facts=FACTS)) is None


def test_fact_recall_names_the_missing_facts_and_their_depth() -> None:
    f = run(
        "fact_recall", "The code is 4417 and the fruit is a mangosteen.", case=case(facts=FACTS)
    )
    assert f is not None and f.severity == "fail"
    assert f.score == pytest.approx(1 / 3, abs=1e-3)
    assert "fruit = 'mango' (depth 0.40)" in f.evidence
    assert "lead = 'Priya Nair' (depth 0.80)" in f.evidence
    assert "room code" not in f.evidence


def test_fact_recall_needs_exact_values() -> None:
    f = run("fact_recall", "The code is about 4,400.", case=case(facts=FACTS[:1]))
    assert f is not None and f.score == 0.0


# --------------------------------------------------------------------------- expected_answer


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("17 + 25 = 42.", "42"),
        ("The total is $1,200.00 in all.", "1200"),
        ("He has twelve apples.", "12"),
        ("3 + 5 = 8, so the answer is 8 apples", "8"),
        ("Water boils at approximately 100.000 Celsius.", "100"),
        ("The capital of France is Paris.", "paris"),
        ("A capital é Brasilia.", "Brasília"),
        ("首都是北京。", "北京"),
        ("Yes, the Sun is a star.", "yes"),
        ("False. The Earth is round.", "false"),
        ("There is no way ice is warmer; yes, it is colder.", "yes"),
        ("No doubt about it: the answer is yes.", "yes"),
        ("No fish can breathe air like we do.", "no"),
        ("Pi is about 3.14159.", "3.14"),
    ],
)
def test_expected_answer_passes_right_answers(text: str, expect: str) -> None:
    assert run("expected_answer", text, case=case(expect=expect)) is None


@pytest.mark.parametrize(
    ("text", "expect", "severity", "words"),
    [
        ("17 + 25 = 32.", "42", "fail", "final number 32"),
        ("I cannot compute that.", "42", "fail", "no number"),
        ("3 + 5 = 8. Then 8 + 3 = 11. The answer is 11.", "8", "fail", "final answer 11"),
        ("3 + 5 = 8 and 8 + 3 = 11", "8", "warn", "appears earlier"),
        ("The capital of France is Lyon.", "Paris", "fail", "'Paris' not in the answer"),
        ("No, the Sun is not a star.", "yes", "fail", "answers 'no'"),
        ("The Sun is indeed a star.", "yes", "warn", "neither"),
        ("No, no. The answer is yes.", "yes", "warn", "contradicts itself"),
        ("It is about 7.5.", "8", "fail", "final number 7.5"),
    ],
)
def test_expected_answer_fires_on_missing_or_contradicted(
    text: str, expect: str, severity: str, words: str
) -> None:
    f = run("expected_answer", text, case=case(expect=expect))
    assert f is not None and f.severity == severity
    assert words in f.evidence


def test_expected_number_echoed_from_the_prompt_is_no_evidence() -> None:
    c = case(expect="12", prompt="What is 144 divided by 12?")
    f = run("expected_answer", "144 divided by 12 is 1.44.", case=c)
    assert f is not None and f.severity == "fail"


def test_a_loop_repeating_the_right_answer_is_repetition_not_a_wrong_answer() -> None:
    text = "The answer is 42. " * 8 + "The answer is 4"
    c = case(expect="42")
    found = detect(text, case=c, finish_reason="length")
    assert one(found, "expected_answer") is None
    rep = one(found, "repetition")
    assert rep is not None and rep.severity == "fail"
    looping_numbers = "42, " * 12 + "4"
    assert run("expected_answer", looping_numbers, case=c, finish_reason="length") is None


def test_a_loop_without_the_answer_is_still_a_missing_answer() -> None:
    f = run("expected_answer", "12 * 11 = " * 5, case=case(expect="132"), finish_reason="length")
    assert f is not None and f.severity == "fail"


# A capped answer (finish_reason "length") without an explicit final answer was still going:
# its last number is the last number *so far*, and an earlier equal number is no answer.
CHANGE_PROMPT = (
    "Muffins cost 3 dollars each. Maria buys 4 muffins and pays with a 20-dollar bill. "
    "How much change does she get, in dollars?"
)


def test_capped_answer_cut_while_giving_another_number_fails() -> None:
    # Recorded from the Q4_0 lane: 8 is an intermediate product, the answer was going to 24…
    text = (
        "The total amount of money she earns is 4 * 4 = 24 dollars.\n\n"
        "The cost of 4 muffins is 4 * 2 = 8 dollars.\n\n"
        "The amount of money she earns by doing so is 24"
    )
    c = case(expect="8", prompt=CHANGE_PROMPT)
    f = run("expected_answer", text, case=c, finish_reason="length")
    assert f is not None and f.severity == "fail"
    assert "capped at max_tokens before a final answer" in f.evidence
    assert '"24"…' in f.evidence and "8 appears at char" in f.evidence
    # The same words ending by themselves: "last number" is a heuristic there, so warn.
    ended = run("expected_answer", text + ".", case=c, finish_reason="stop")
    assert ended is not None and ended.severity == "warn"


def test_capped_answer_whose_last_number_so_far_differs_fails() -> None:
    text = "3 + 5 = 8 apples. Then we add 3 more, which gives 11 apples and then we"
    f = run("expected_answer", text, case=case(expect="8"), finish_reason="length")
    assert f is not None and f.severity == "fail"
    assert "last number so far 11" in f.evidence and "8 appears at char 8" in f.evidence


def test_capped_answer_cut_inside_what_may_be_the_answer_is_unverifiable() -> None:
    f = run("expected_answer", "So the total is 4", case=case(expect="42"), finish_reason="length")
    assert f is not None and f.severity == "warn" and "unverifiable" in f.evidence
    words = run("expected_answer", "He has twenty", case=case(expect="21"), finish_reason="length")
    assert words is not None and words.severity == "warn"


def test_capped_answer_that_said_the_answer_last_or_marked_it_passes() -> None:
    c = case(expect="8812")
    said_last = "The secret number is 8812. It's a special number that has been used in"
    assert run("expected_answer", said_last, case=c, finish_reason="length") is None
    marked = "The answer is 8812. Let me explain why: 88 and 12 are"
    assert run("expected_answer", marked, case=c, finish_reason="length") is None
    wrong_mark = "The answer is 8821. Let me explain why: 88 and 12 are"
    f = run("expected_answer", wrong_mark, case=c, finish_reason="length")
    assert f is not None and f.severity == "fail" and "final answer 8821" in f.evidence


@pytest.mark.parametrize(
    ("text", "expect", "final"),
    [
        ("The answer is 20, which is 1 + 2 + 3 + ... + 20 = 20.", "210", "final answer 20 "),
        ("It has 8 legs, which makes a total of 16 legs.", "8", "final answer 16 "),
        ("The answer is 17 - 9 = 6.", "8", "final answer 6 "),
    ],
)
def test_explicit_final_answer_markers(text: str, expect: str, final: str) -> None:
    f = run("expected_answer", text, case=case(expect=expect))
    assert f is not None and f.severity == "fail" and final in f.evidence


def test_explicit_markers_do_not_misread_right_answers() -> None:
    assert run("expected_answer", "The total of 18 and 11 is 29.", case=case(expect="29")) is None
    assert run("expected_answer", "The answer is 17 - 9 = 8.", case=case(expect="8")) is None
    assert run("expected_answer", "A spider has 8 legs in total.", case=case(expect="8")) is None


def test_a_tiny_repeat_holding_the_expected_number_is_not_a_loop() -> None:
    # "8 8" is two copies back to back, but no loop repetition would report: still judged.
    f = run("expected_answer", "4 * 2 = 8 8 dollars, and 4 * 4 = 24.", case=case(expect="8"))
    assert f is not None and f.severity == "warn"


def test_expect_regex() -> None:
    c = case(expect_regex=r"\bHELLO\b")
    assert run("expected_answer", "HELLO", case=c) is None
    f = run("expected_answer", "Hello in uppercase letters.", case=c)
    assert f is not None and f.severity == "fail" and "HELLO" in f.evidence
    bad = run("expected_answer", "x", case=case(expect_regex="(unclosed"))
    assert bad is not None and bad.severity == "warn" and "not a valid" in bad.evidence


def test_number_helpers() -> None:
    assert parse_number("$1,200") == 1200
    assert parse_number("twenty-one") == 21
    assert parse_number("12 apples") is None
    found = find_numbers("9.4 billion and twenty-one, then 3-5")
    assert [n.value for n in found] == [9.4e9, 21, 3, 5]
    final = final_number("one of the best: 8812")
    assert final is not None and final.number.value == 8812
    lone = final_number("8812 is one of the most famous numbers")
    assert lone is not None and lone.number.value == 8812  # a lone "one" is a pronoun
    cut = final_number("the answer is 42 and then 4", truncated=True)
    assert cut is not None and cut.number.value == 42


# --------------------------------------------------------------------------- format


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("json", '{"name": "Alice", "age": 30}'),
        ("json", '```json\n{"name": "Alice"}\n```'),
        ("json", "  [2, 4, 6]\n"),
        ("one_line", "Paris."),
        ("yes_no", "Yes."),
        ("yes_no", "**No**, fish breathe with gills."),
        ("number", "42"),
        ("number", "$1,200."),
    ],
)
def test_format_holds(fmt: str, text: str) -> None:
    assert run("format", text, case=case(format=fmt)) is None


@pytest.mark.parametrize(
    ("fmt", "text", "severity", "words"),
    [
        ("json", 'Here it is: {"name": "Alice"} Hope it helps.', "warn", "inside other text"),
        ("json", '{\n  "country": "France",\n  "population": 1,\n}', "fail", "invalid JSON"),
        ("json", '{"1": {"name": "One"}, "2": {"name": "Tw', "fail", "invalid JSON"),
        ("json", "The first three even numbers are 2, 4 and 6.", "fail", "invalid JSON"),
        ("one_line", "Paris.\nIt is in France.", "fail", "2 lines"),
        ("yes_no", "I think the answer is yes.", "warn", "does not start"),
        ("yes_no", "The Sun is a star.", "fail", "no yes/no"),
        ("number", "17 + 25 = 42.", "warn", "other text"),
        ("number", "I do not know.", "fail", "no number"),
        ("xml", "<a/>", "warn", "unknown format"),
    ],
)
def test_format_breaks(fmt: str, text: str, severity: str, words: str) -> None:
    f = run("format", text, case=case(format=fmt))
    assert f is not None and f.severity == severity
    assert words in f.evidence


# --------------------------------------------------------------------------- divergence


def test_divergence_silent_without_reference_or_when_identical() -> None:
    assert run("divergence", FLUENT) is None
    assert run("divergence", FLUENT, reference=FLUENT + "\n") is None


def test_divergence_reports_position_and_similarity_as_info() -> None:
    ref = "The capital of France is Paris."
    text = "The capital of France is Paris, a city of two million people."
    f = run("divergence", text, reference=ref)
    assert f is not None and f.severity == "info"
    assert "first differs at char 30" in f.evidence
    assert 0.3 < f.score < 1.0
    assert f.score == pytest.approx(similarity(text, ref), abs=1e-3)


def test_divergence_warns_only_when_the_answers_share_almost_nothing() -> None:
    ref = FLUENT
    other = "My favourite recipe needs butter, flour, eggs, sugar, vanilla and a hot oven."
    f = run("divergence", other, reference=ref)
    assert f is not None and f.severity == "warn"
    reworded = FLUENT.replace("green plants turn", "plants convert").replace("Earth", "our planet")
    g = run("divergence", reworded, reference=ref)
    assert g is not None and g.severity == "info"


def test_first_difference() -> None:
    assert first_difference("abc", "abc") is None
    assert first_difference("abcd", "abxd") == 2
    assert first_difference("ab", "abc") == 2
    long_a, long_b = "x" * 500 + "a", "x" * 500 + "b"
    assert first_difference(long_a, long_b) == 500


# --------------------------------------------------------------------------- language_switch

FRENCH = (
    "Le soleil est une étoile qui se trouve au centre de notre système solaire. Il nous "
    "donne la lumière et la chaleur dont nous avons besoin pour vivre sur la Terre, et "
    "il est très important pour les plantes."
)


def test_language_switch_quiet_when_languages_match() -> None:
    assert run("language_switch", FLUENT, prompt="Explain photosynthesis.") is None
    assert run("language_switch", FRENCH, prompt="Décris le soleil en deux phrases.") is None
    assert run("language_switch", FRENCH, prompt="Describe the sun in French, please.") is None
    code = "Voici le code :\n```python\nfor item in items:\n    print(item)  # print it\n```"
    assert run("language_switch", code, prompt="Écris une boucle en Python, s'il te plaît.") is None


def test_language_switch_drift_mid_answer() -> None:
    text = FLUENT + " " + FRENCH
    f = run("language_switch", text, prompt="Explain how photosynthesis works.")
    assert f is not None and f.severity == "warn"
    assert "French" in f.evidence and "English" in f.evidence
    assert f"from char {text.index('Le soleil')}" in f.evidence


def test_language_switch_whole_answer_in_another_script() -> None:
    f = run(
        "language_switch",
        "中国的首都是北京。北京是一个历史悠久的城市，有很多名胜古迹。" * 2,
        prompt="What is the capital of China? Tell me about it.",
    )
    assert f is not None and f.severity == "fail"
    assert "Chinese" in f.evidence
    g = run("language_switch", FLUENT, prompt="光合作用是如何进行的？请详细解释。")
    assert g is not None and g.severity == "fail"


@pytest.mark.parametrize(
    "prompt",
    [
        "¿Cómo funciona la fotosíntesis? Explícalo brevemente.",
        "Wie funktioniert die Photosynthese? Erkläre es kurz.",
        "Come funziona la fotosintesi? Spiegalo in breve.",
    ],
)
def test_language_switch_short_prompts_still_have_a_language(prompt: str) -> None:
    f = run("language_switch", FLUENT, prompt=prompt)
    assert f is not None and f.severity == "fail"
    assert "English" in f.evidence


def test_language_switch_without_prompt_compares_with_the_answers_start() -> None:
    russian = "Столица России — Москва, крупнейший город страны и её политический центр."
    f = run("language_switch", FLUENT + "\n" + russian)
    assert f is not None and f.severity == "warn"
    assert "Cyrillic" in f.evidence


def test_language_switch_words_mixing_scripts() -> None:
    f = run(
        "language_switch",
        "Какой столица России? Понرёх: Остальная.",
        prompt="Какая столица России?",
    )
    assert f is not None and f.severity == "warn"
    assert "Понرёх" in f.evidence
    assert (
        run("language_switch", "The area is πr² for a circle.", prompt="Area of a circle?") is None
    )


# --------------------------------------------------------------------------- helpers


def test_contains_and_tokenize() -> None:
    assert contains("It costs 250,000 dollars.", "250000")
    assert not contains("mangosteen", "mango")
    toks = tokenize("Hi, 世界 x")
    assert toks.keys == ["hi", ",", "世", "界", "x"]
    assert [(toks.start(i), toks.end(i)) for i in range(len(toks))] == [
        (0, 2),
        (2, 3),
        (4, 5),
        (5, 6),
        (7, 8),
    ]


# --------------------------------------------------------------------------- real pair outputs


def _records() -> dict[str, dict]:
    out = {}
    for line in DATA.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        out[r["id"]] = r
    return out


RECORDS = _records()


def _case(r: dict) -> Case:
    return Case(
        id=r["id"],
        messages=[{"role": "user", "content": r["prompt"]}],
        expect=r.get("expect"),
        expect_regex=r.get("expect_regex"),
        format=r.get("format"),
        facts=[Fact.from_dict(f) for f in r.get("facts", [])],
        params=SamplingParams(max_tokens=r["max_tokens"]),
    )


def _detect(rid: str, lane: str) -> list[Finding]:
    r = RECORDS[rid]
    return detect(
        r[lane]["text"],
        case=_case(r),
        reference=None if lane == "bf16" else r["bf16"]["text"],
        finish_reason=r[lane]["finish_reason"],
        lane=lane,
    )


ALL = {(rid, lane): _detect(rid, lane) for rid in RECORDS for lane in ("bf16", "q4_0")}


def flagged(detector: str, lane: str, severities: tuple[str, ...] = ("warn", "fail")) -> set[str]:
    return {
        rid
        for (rid, ln), found in ALL.items()
        if ln == lane and any(f.detector == detector and f.severity in severities for f in found)
    }


def test_fixture_is_real_pair_output() -> None:
    first = next(iter(RECORDS.values()))
    assert "SmolLM2-135M-Instruct" in first["source"]
    assert len(RECORDS) >= 40


#: Q4_0 answers that loop until max_tokens (read by a person: every one is a real loop).
Q4_LOOPS = {
    "long-describe-tiger": "a majestic and majestic tiger",
    "long-photosynthesis": "and glucose into glucose",
    "long-story-cat": "The sound of the empty rooms",
    "long-internet": "The mainframe",
    "list-colors": "The primary colors are the same",
    "list-animals": "and the southern parts of Chile",
    "json-city": "111,",
    "math-mul": "12 * 11 = ",
    "lang-french-desc": "a propos de la défusion",
    "lang-spanish": "el capital de la Repúba",
    "poem-moon": "A tale of moonlit nights",
    "instr-translate-fr": "A: Thank you",
}


@pytest.mark.parametrize("rid", sorted(Q4_LOOPS))
def test_recorded_q4_loops_are_flagged_and_quoted(rid: str) -> None:
    rep = one(ALL[(rid, "q4_0")], "repetition")
    assert rep is not None and rep.severity == "fail", rid
    assert Q4_LOOPS[rid] in rep.evidence
    assert one(ALL[(rid, "q4_0")], "truncation") is not None  # they all ran into the cap


#: BF16 answers a person reads as fine (some are wrong, none loops or collapses).
BF16_FINE = [
    "fact-capital-france", "fact-capital-japan", "fact-h2o", "fact-water-boil",
    "fact-author-hamlet", "list-fruits", "list-steps-tea", "long-photosynthesis",
    "long-story-cat", "long-exercise", "long-seasons", "long-describe-tiger",
    "long-python-func", "ctx-facts-1", "ctx-facts-2", "json-person", "poem-moon",
    "math-word-train", "lang-spanish", "lang-italian",
]  # fmt: skip


@pytest.mark.parametrize("rid", BF16_FINE)
def test_bf16_fine_answers_raise_no_quality_flags(rid: str) -> None:
    for f in ALL[(rid, "bf16")]:
        assert f.detector not in ("repetition", "collapse", "language_switch", "divergence"), f


def test_bf16_repetition_only_on_its_own_real_loops() -> None:
    # The BF16 lane is not perfect: these four answers really do loop (read them).
    assert flagged("repetition", "bf16") <= {
        "long-internet",
        "lang-chinese",
        "ctx-long-4facts",
        "ctx-long-3facts",
    }
    assert "long-internet" in flagged("repetition", "bf16")


def test_q4_loops_far_more_than_bf16() -> None:
    q4, bf16 = flagged("repetition", "q4_0"), flagged("repetition", "bf16")
    assert len(q4) >= 20
    assert len(q4) >= 4 * len(bf16)


def test_recorded_wrong_answers_are_caught() -> None:
    sub = one(ALL[("math-sub", "q4_0")], "expected_answer")
    assert sub is not None and sub.severity == "fail" and "33" in sub.evidence
    mul = ALL[("math-mul", "q4_0")]
    assert one(mul, "expected_answer") is not None  # loops without ever answering
    assert one(ALL[("math-mul", "bf16")], "expected_answer") is None  # "12 times 11 is 132."
    for rid in ("fact-capital-japan", "fact-water-boil", "fact-h2o", "ctx-number-recall"):
        assert one(ALL[(rid, "bf16")], "expected_answer") is None, rid
    assert one(ALL[("fact-days-week", "q4_0")], "expected_answer") is not None  # "31 days"
    assert one(ALL[("fact-days-week", "bf16")], "expected_answer") is None  # "7 days"
    # The reference is wrong too sometimes: 17 + 25 = 32.
    add = one(ALL[("math-add", "bf16")], "expected_answer")
    assert add is not None and "32" in add.evidence


def test_recorded_fact_recall() -> None:
    bf16 = one(ALL[("ctx-long-4facts", "bf16")], "fact_recall")
    q4 = one(ALL[("ctx-long-4facts", "q4_0")], "fact_recall")
    assert bf16 is not None and "Pier 12" in bf16.evidence and bf16.score == 0.75
    assert q4 is not None and "Ingrid Solberg" in q4.evidence and q4.score == 0.75
    for lane in ("bf16", "q4_0"):
        assert one(ALL[("ctx-facts-1", lane)], "fact_recall") is None


def test_recorded_format_breaks() -> None:
    assert one(ALL[("json-person", "bf16")], "format") is None
    prose = one(ALL[("json-person", "q4_0")], "format")
    assert prose is not None and prose.severity == "warn"
    for lane in ("bf16", "q4_0"):
        broken = one(ALL[("json-city", lane)], "format")
        assert broken is not None and broken.severity == "fail"


def test_recorded_divergence_is_mostly_info() -> None:
    divs = [one(ALL[(rid, "q4_0")], "divergence") for rid in RECORDS]
    same = {rid for rid, r in RECORDS.items() if r["q4_0"]["text"] == r["bf16"]["text"]}
    assert same == {"instr-uppercase"}  # "Hello in uppercase letters." on both lanes
    assert sum(d is None for d in divs) == len(same)
    warns = [d for d in divs if d and d.severity == "warn"]
    assert len(warns) <= len(divs) // 5
    assert all(
        f.detector != "divergence" for found in ALL.values() for f in found if f.lane == "bf16"
    )


def test_recorded_language_switch() -> None:
    mixed = one(ALL[("lang-russian", "bf16")], "language_switch")
    assert mixed is not None and "Понرёх" in mixed.evidence
    english_prompts = [rid for rid in RECORDS if not rid.startswith("lang-")]
    for rid in english_prompts:
        for lane in ("bf16", "q4_0"):
            assert one(ALL[(rid, lane)], "language_switch") is None, (rid, lane)


def test_recorded_truncation_matches_finish_reason() -> None:
    for (rid, lane), found in ALL.items():
        capped = RECORDS[rid][lane]["finish_reason"] == "length"
        assert (one(found, "truncation") is not None) == capped


# --------------------------------------------------------------------------- exchanges


def test_detect_exchange_fills_each_lane_and_skips_failed_lanes() -> None:
    ex = Exchange(prompt="Describe a tiger.", params=SamplingParams(max_tokens=64))
    ex.results["bf16"] = LaneResult(
        lane="bf16", text="Tigers are big striped cats.", finish_reason="stop"
    )
    ex.results["q4"] = LaneResult(lane="q4", text="a majestic tiger, " * 10, finish_reason="length")
    ex.results["awq"] = LaneResult(
        lane="awq", error=LaneError(kind="http", message="boom", status=500)
    )
    dismissed = Finding("truncation", "q4", "warn", 1.0, "capped", status="dismissed")
    ex.results["q4"].findings = [dismissed]
    out = detect_exchange(ex)
    assert out["bf16"] == [] and out["awq"] == []
    q4 = {f.detector: f for f in ex.results["q4"].findings}
    assert q4["repetition"].severity == "fail"
    assert q4["truncation"] is dismissed  # a person's judgement is kept
    assert q4["divergence"].lane == "q4"


def test_detect_exchange_without_a_usable_reference() -> None:
    ex = Exchange(prompt="Hi", params=SamplingParams())
    ex.results["bf16"] = LaneResult(lane="bf16", error=LaneError(kind="connect", message="refused"))
    ex.results["q4"] = LaneResult(lane="q4", text="Hello! How can I help?", finish_reason="stop")
    assert detect_exchange(ex) == {"bf16": [], "q4": []}
