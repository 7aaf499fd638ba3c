"""Suite files: the built-in suites, user suites, broken files, `quantlab suites`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from quantlab.records import FAILURE_TAGS
from quantlab.suites import (
    BUILTIN_DIR,
    SuiteError,
    catalog,
    find_suite,
    load_suite_file,
    parse_suite,
)


def _user_suite(name: str, **extra: object) -> dict:
    return {
        "name": name,
        "description": "two prompts",
        "cases": [
            {"id": "a", "messages": [{"role": "user", "content": "Say hi."}], "expect": "hi"},
            {
                "id": "b",
                "messages": [{"role": "user", "content": "2+2?"}],
                "expect": "4",
                "params": {"max_tokens": 8},
            },
        ],
        **extra,
    }


def _case(**fields: object) -> dict:
    """One valid case, with ``fields`` changed."""
    return {"id": "x", "messages": [{"role": "user", "content": "hi"}], **fields}


def test_every_checked_case_field_still_loads() -> None:
    fact = {"key": "k", "value": "v", "depth": 0.25, "aliases": ["w"]}
    ok = _case(expect=4, expect_regex="(?i)hi", format="one-line", group="g", meta={"a": 1})
    s = parse_suite(_user_suite("mine", cases=[{**ok, "facts": [fact]}]), "mine.json")
    (case,) = s.cases
    assert case.expect == "4" and case.format == "one-line" and case.facts[0].aliases == ["w"]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cwd and config home with no user suites in them."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("QUANTLAB_SUITES", raising=False)
    return tmp_path


def test_builtin_suites_load_and_have_the_promised_shape(isolated: Path) -> None:
    cat = catalog()
    assert cat.errors == []
    assert {"sanity", "long-context", "distribution", "concurrency", "capacity"} <= set(cat.suites)
    sanity = cat.suites["sanity"]
    assert sanity.kind == "cases" and 18 <= len(sanity.cases) <= 25
    formats = {c.format for c in sanity.cases}
    assert {"json", "yes_no", "one_line", "number"} <= formats
    assert all(c.expect or c.expect_regex for c in sanity.cases), "every sanity case is checked"
    dist = cat.suites["distribution"]
    groups: dict[str, int] = {}
    for c in dist.cases:
        groups[c.group or ""] = groups.get(c.group or "", 0) + 1
    assert groups.keys() == {"calibration", "ood:code", "ood:math", "ood:niche"}
    assert min(groups.values()) >= 10
    lc = cat.suites["long-context"]
    assert [x["tokens"] for x in lc.settings["lengths"]] == [1000, 4000, 8000, 16000]
    assert sorted(f["depth"] for f in lc.settings["facts"]) == [0.1, 0.5, 0.9]
    assert cat.suites["concurrency"].settings["levels"] == [1, 8]
    assert cat.suites["capacity"].settings["levels"] == [1, 2, 4, 8, 16]
    # Every sampling parameter is explicit, at temperature 0.
    for s in cat.suites.values():
        assert s.params.temperature == 0 and s.params.seed == 0


def test_every_case_id_is_unique_across_the_builtin_files() -> None:
    for path in BUILTIN_DIR.glob("*.json"):
        s = load_suite_file(path, "built-in")
        ids = [c.id for c in s.cases]
        assert len(ids) == len(set(ids)), path


def test_quick_versions_are_smaller(isolated: Path) -> None:
    cat = catalog()
    assert len(cat.suites["sanity"].quickened().cases) == 8
    q = cat.suites["capacity"].quickened()
    assert q.settings["levels"] == [1, 2, 4] and q.params.max_tokens == 32
    conc = cat.suites["concurrency"].quickened()
    assert conc.params.max_tokens == 48 and conc.settings["levels"] == [1, 8]
    assert [x["label"] for x in cat.suites["long-context"].quickened().settings["lengths"]] == [
        "1K",
        "4K",
    ]


def test_case_params_merge_over_the_suite_params() -> None:
    s = parse_suite(_user_suite("mine", params={"max_tokens": 50, "temperature": 0.5}), "x")
    a, b = s.cases
    assert s.case_params(a).max_tokens == 50 and s.case_params(a).temperature == 0.5
    assert s.case_params(b).max_tokens == 8 and s.case_params(b).temperature == 0.5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "nonsense"}, "kind 'nonsense' is not one of"),
        ({"name": "two words"}, "'name' must be a word"),
        ({"cases": []}, "needs at least one case"),
        ({"params": {"temprature": 0}}, "unknown key(s) temprature"),
        ({"params": {"max_tokens": 0}}, "max_tokens must be a whole number of at least 1"),
        ({"extra": 1}, "unknown key(s) extra"),
        ({"cases": [{"id": "x", "messages": []}]}, "case 'x': 'messages' must be a non-empty list"),
        (
            {"cases": [{"id": "x", "messages": [{"role": "bot", "content": "hi"}]}]},
            "each message needs a role",
        ),
        (
            {"cases": [{"id": "x", "messages": [{"role": "assistant", "content": "hi"}]}]},
            "the last message must be the user's",
        ),
        ({"cases": [_case(expect_regex="(unclosed")]}, "case 'x': 'expect_regex' '(unclosed'"),
        ({"cases": [_case(expect_regex=5)]}, "case 'x': 'expect_regex' must be a non-empty"),
        ({"cases": [_case(expect=["a"])]}, "case 'x': 'expect' must be text or a number"),
        ({"cases": [_case(format="yaml")]}, "case 'x': 'format' 'yaml' is not one of json"),
        ({"cases": [_case(group=3)]}, "case 'x': 'group' must be text"),
        ({"cases": [_case(meta=[])]}, "case 'x': 'meta' must be an object"),
        ({"cases": [_case(params="fast")]}, "case 'x': params must be an object"),
        ({"cases": [_case(params={"max_tokens": "8"})]}, "case 'x': params: max_tokens must be"),
        ({"cases": [_case(expct="4")]}, "case 'x': unknown key(s) expct (known: expect,"),
        ({"cases": [_case(facts={"k": "v"})]}, "case 'x': 'facts' must be a list"),
        ({"cases": [_case(facts=[{"key": "k"}])]}, "case 'x': facts #1: 'value' must be"),
        ({"cases": [_case(facts=[{"key": "k", "value": "v", "depth": 2}])]}, "'depth' must be"),
        ({"cases": [_case(facts=[{"key": "k", "value": "v", "x": 1}])]}, "unknown key(s) x"),
        ({"cases": [_case(id=True)]}, "case #1: 'id' must be text"),
        ({"cases": [_case(id=" ")]}, "case #1: 'id' must not be empty"),
        (
            {"cases": [_case(messages=[{"role": "user", "content": "hi", "contnt": "x"}])]},
            "case 'x': unknown key(s) contnt in a message",
        ),
    ],
)
def test_bad_suites_are_named_clearly(change: dict, message: str) -> None:
    data = {**_user_suite("mine"), **change}
    with pytest.raises(SuiteError) as err:
        parse_suite(data, "mine.json")
    assert message in str(err.value)
    assert str(err.value).startswith("mine.json")


def test_duplicate_case_ids_are_refused() -> None:
    data = _user_suite("mine")
    data["cases"][1]["id"] = "a"
    with pytest.raises(SuiteError, match="repeated: a"):
        parse_suite(data, "mine.json")


def test_user_suites_are_found_a_broken_one_is_reported_and_a_builtin_can_be_shadowed(
    isolated: Path,
) -> None:
    d = isolated / "suites"
    d.mkdir()
    (d / "mine.json").write_text(json.dumps(_user_suite("mine")))
    (d / "broken.json").write_text('{"name": "broken", ')
    (d / "sanity.json").write_text(json.dumps(_user_suite("sanity")))
    cat = catalog()
    assert cat.suites["mine"].origin == "user" and len(cat.suites["mine"].cases) == 2
    assert len(cat.errors) == 1 and "broken.json: not valid JSON" in cat.errors[0]
    assert cat.suites["sanity"].origin == "user"
    assert cat.shadowed and "sanity" in cat.shadowed[0]
    assert find_suite("mine").name == "mine"
    assert find_suite(str(d / "mine.json")).path == d / "mine.json"
    with pytest.raises(SuiteError, match="no suite named 'nope'"):
        find_suite("nope")
    with pytest.raises(SuiteError, match="no such suite file"):
        find_suite(str(d / "missing.json"))


def test_config_home_and_env_folders_are_searched(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = isolated / "config" / "quantlab" / "suites"
    home.mkdir(parents=True)
    (home / "a.json").write_text(json.dumps(_user_suite("from-home")))
    extra = isolated / "elsewhere"
    extra.mkdir()
    (extra / "b.json").write_text(json.dumps(_user_suite("from-env")))
    monkeypatch.setenv("QUANTLAB_SUITES", str(extra))
    cat = catalog()
    assert {"from-home", "from-env"} <= set(cat.suites)


def test_failure_tags_are_the_fixed_taxonomy() -> None:
    assert "repetition loop" in FAILURE_TAGS and len(FAILURE_TAGS) == 12


def _cli(args: list[str], cwd: Path, env_home: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "XDG_CONFIG_HOME": str(env_home)}
    env.pop("QUANTLAB_SUITES", None)
    return subprocess.run(
        [sys.executable, "-m", "quantlab", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_quantlab_suites_lists_everything_and_reports_a_broken_file(tmp_path: Path) -> None:
    d = tmp_path / "suites"
    d.mkdir()
    (d / "mine.json").write_text(json.dumps(_user_suite("mine")))
    (d / "bad.json").write_text(json.dumps({"name": "bad", "kind": "cases", "cases": "x"}))
    res = _cli(["suites"], tmp_path, tmp_path / "cfg")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "bad.json: 'cases' must be a list" in res.stderr
    for name in ("sanity", "long-context", "distribution", "concurrency", "capacity", "mine"):
        assert name in res.stdout
    line = next(x for x in res.stdout.splitlines() if x.startswith("mine"))
    assert "cases" in line and "2" in line and str(d / "mine.json") in line
    js = _cli(["suites", "--json"], tmp_path, tmp_path / "cfg")
    out = json.loads(js.stdout)
    by = {s["name"]: s for s in out["suites"]}
    assert by["sanity"]["origin"] == "built-in" and by["mine"]["origin"] == "user"
    assert by["long-context"]["kind"] == "long_context"
    assert len(out["errors"]) == 1


def test_quantlab_run_names_an_unknown_suite_without_a_traceback(tmp_path: Path) -> None:
    res = _cli(["run", "nope", "--endpoint", "a=http://127.0.0.1:9"], tmp_path, tmp_path)
    assert res.returncode == 2
    assert "no suite named 'nope'" in res.stderr and "Traceback" not in res.stderr
    res = _cli(["run", "sanity", "--concurrency", "0"], tmp_path, tmp_path)
    assert res.returncode == 2 and "--concurrency must be between" in res.stderr


def test_quantlab_run_refuses_a_regex_that_does_not_compile(tmp_path: Path) -> None:
    """Issue 9.6: refused at load with file, case id and field, exit 2, nothing sent."""
    bad = tmp_path / "bad.json"
    suite = _user_suite("bad")
    suite["cases"][1]["expect_regex"] = "[0-9"
    bad.write_text(json.dumps(suite))
    res = _cli(["run", str(bad), "--endpoint", "a=http://127.0.0.1:9"], tmp_path, tmp_path)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert f"{bad}: case 'b': 'expect_regex' '[0-9' does not compile" in res.stderr
    assert not list(tmp_path.glob("sessions/*.json"))
