"""Test suites: JSON data files, built in (this folder) or the user's own.

A suite file is one JSON object (``"schema": "quantlab.suite/1"``)::

    {
      "schema": "quantlab.suite/1",
      "name": "sanity",                      # how `quantlab run NAME` finds it
      "description": "one line for `quantlab suites`",
      "kind": "cases",                       # cases | long_context | concurrency | capacity
      "params": {"temperature": 0, "max_tokens": 96},   # SamplingParams fields
      "cases": [                             # Case.to_dict() shape
        {"id": "add", "messages": [{"role": "user", "content": "What is 2+3?"}],
         "expect": "5", "format": "number", "group": "arithmetic",
         "params": {"max_tokens": 16}}       # per-case params merge over the suite's
      ],
      "settings": {...},                     # kind-specific knobs (below)
      "quick": {...}                         # overrides applied by --quick
    }

Kinds:

* ``cases``: every case is sent to all lanes (``--concurrency`` exchanges in flight).
* ``concurrency``: the same cases at each of ``settings.levels`` (default [1, 8])
  exchanges in flight; each lane's outputs are compared between the levels.
* ``capacity``: per lane alone, a ramp over ``settings.levels`` (default [1, 2, 4, 8,
  16]) requests in flight, ``settings.rounds`` waves per level; the cases are prompt
  templates, each request made unique (cold TTFT).
* ``long_context``: no ``cases``; ``settings`` is a generator spec (lengths, planted facts,
  filler vocabulary) turned into cases of exact token lengths at run time
  (:mod:`quantlab.longctx`).

``quick`` may hold ``max_cases`` (keep the first N cases), ``params`` (merged over the
suite's and each case's params) and any ``settings`` key (replacing it).
Users put their own files in ``./suites/``, ``~/.config/quantlab/suites/`` (or
``$QUANTLAB_SUITES``), or pass a path; a user suite with a built-in's name shadows it.
docs/suites.md describes the format for people.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from quantlab.detectors.answer_format import FORMATS
from quantlab.records import Case, SamplingParams

SCHEMA = "quantlab.suite/1"
KINDS = ("cases", "long_context", "concurrency", "capacity")
BUILTIN_DIR = Path(__file__).resolve().parent
_PARAM_KEYS = frozenset(SamplingParams.__dataclass_fields__)
_CASE_KEYS = frozenset(
    ("id", "messages", "params", "expect", "expect_regex", "facts", "format", "group", "meta")
)
_TOP_KEYS = frozenset(
    ("schema", "name", "description", "kind", "params", "cases", "settings", "quick")
)


class SuiteError(Exception):
    """A suite that cannot be found or read; the message names the file and the fault."""


@dataclass
class Suite:
    """A parsed suite. ``origin`` is "built-in" or "user"; ``path`` the file it came from."""

    name: str
    kind: str
    description: str = ""
    params: SamplingParams = field(default_factory=SamplingParams)
    cases: list[Case] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)
    origin: str = "built-in"
    path: Path | None = None

    def case_params(self, case: Case) -> SamplingParams:
        """The params a case is sent with: its own where it has them, else the suite's."""
        return case.params or self.params

    def quickened(self) -> Suite:
        """A copy with the ``quick`` overrides applied (``--quick``)."""
        q = dict(self.quick)
        max_cases = q.pop("max_cases", None)
        cases = self.cases[:max_cases] if isinstance(max_cases, int) else list(self.cases)
        params = self.params
        quick_params = q.pop("params", None)
        if isinstance(quick_params, dict):
            params = SamplingParams.from_dict({**self.params.to_dict(), **quick_params})
            # A case's own params were merged over the suite's: apply the quick ones on top.
            cases = [
                replace(c, params=SamplingParams.from_dict({**c.params.to_dict(), **quick_params}))
                if c.params
                else c
                for c in cases
            ]
        return Suite(
            name=self.name,
            kind=self.kind,
            description=self.description,
            params=params,
            cases=cases,
            settings={**self.settings, **q},
            quick={},
            origin=self.origin,
            path=self.path,
        )

    @property
    def case_count(self) -> str:
        """What `quantlab suites` shows: a number, or what the generator makes."""
        if self.kind == "long_context":
            lengths = self.settings.get("lengths") or []
            return f"{len(lengths)} lengths (generated)"
        return str(len(self.cases))


def parse_suite(data: Any, where: str, origin: str = "user", path: Path | None = None) -> Suite:
    """Check a decoded suite document and build the Suite; SuiteError says what is wrong."""
    if not isinstance(data, dict):
        raise SuiteError(f"{where}: a suite is a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise SuiteError(f"{where}: unknown key(s) {', '.join(unknown)}")
    if data.get("schema", SCHEMA) != SCHEMA:
        raise SuiteError(f"{where}: schema {data.get('schema')!r} is not {SCHEMA!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
        raise SuiteError(f"{where}: 'name' must be a word without spaces, not {name!r}")
    kind = data.get("kind", "cases")
    if kind not in KINDS:
        raise SuiteError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    desc = data.get("description", "")
    if not isinstance(desc, str):
        raise SuiteError(f"{where}: 'description' must be text")
    params = _params(data.get("params") or {}, f"{where}: params", SamplingParams())
    for key in ("settings", "quick"):
        if not isinstance(data.get(key, {}), dict):
            raise SuiteError(f"{where}: '{key}' must be an object")
    raw_cases = data.get("cases", [])
    if not isinstance(raw_cases, list):
        raise SuiteError(f"{where}: 'cases' must be a list")
    cases = [_case(c, i, where, params) for i, c in enumerate(raw_cases)]
    ids = [c.id for c in cases]
    dups = sorted({i for i in ids if ids.count(i) > 1})
    if dups:
        raise SuiteError(f"{where}: case ids must be unique; repeated: {', '.join(dups)}")
    if kind != "long_context" and not cases:
        raise SuiteError(f"{where}: a {kind} suite needs at least one case")
    if kind == "long_context" and not (data.get("settings") or {}).get("lengths"):
        raise SuiteError(f"{where}: a long_context suite needs settings.lengths")
    return Suite(
        name=name,
        kind=kind,
        description=desc,
        params=params,
        cases=cases,
        settings=dict(data.get("settings") or {}),
        quick=dict(data.get("quick") or {}),
        origin=origin,
        path=path,
    )


def _params(raw: Any, where: str, base: SamplingParams) -> SamplingParams:
    if not isinstance(raw, dict):
        raise SuiteError(f"{where} must be an object")
    unknown = sorted(set(raw) - _PARAM_KEYS)
    if unknown:
        known = ", ".join(sorted(_PARAM_KEYS))
        raise SuiteError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {known})")
    merged = {**base.to_dict(), **raw}
    mt = merged.get("max_tokens")
    if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
        raise SuiteError(f"{where}: max_tokens must be a whole number of at least 1")
    temp = merged.get("temperature")
    if isinstance(temp, bool) or not isinstance(temp, int | float) or temp < 0:
        raise SuiteError(f"{where}: temperature must be a number of at least 0")
    return SamplingParams.from_dict(merged)


def _case(raw: Any, i: int, where: str, suite_params: SamplingParams) -> Case:
    """Check every field of one case (type, value, unknown keys): a mistake in a suite is
    refused at load, with the file, the case and the field, not found later on every answer."""
    at = f"{where}: case #{i + 1}"
    if not isinstance(raw, dict):
        raise SuiteError(f"{at} must be an object")
    case_id = raw.get("id")
    if isinstance(case_id, bool) or not isinstance(case_id, str | int):
        raise SuiteError(f"{at}: missing 'id'" if case_id is None else f"{at}: 'id' must be text")
    if isinstance(case_id, str) and not case_id.strip():
        raise SuiteError(f"{at}: 'id' must not be empty")
    at = f"{where}: case {case_id!r}"
    unknown = sorted(set(raw) - _CASE_KEYS)
    if unknown:
        known = ", ".join(sorted(_CASE_KEYS))
        raise SuiteError(f"{at}: unknown key(s) {', '.join(unknown)} (known: {known})")
    msgs = raw.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise SuiteError(f"{at}: 'messages' must be a non-empty list")
    for m in msgs:
        if (
            not isinstance(m, dict)
            or m.get("role") not in ("system", "user", "assistant")
            or not isinstance(m.get("content"), str)
        ):
            raise SuiteError(f"{at}: each message needs a role (system/user/assistant) and content")
        extra = sorted(set(m) - {"role", "content", "name"})
        if extra:
            raise SuiteError(f"{at}: unknown key(s) {', '.join(extra)} in a message")
    if msgs[-1]["role"] != "user":
        raise SuiteError(f"{at}: the last message must be the user's")
    d = dict(raw)
    if d.get("params") is not None:
        d["params"] = _params(d["params"], f"{at}: params", suite_params).to_dict()
    expect = d.get("expect")
    if expect is not None and (
        isinstance(expect, bool) or not isinstance(expect, str | int | float)
    ):
        raise SuiteError(f"{at}: 'expect' must be text or a number, not {type(expect).__name__}")
    _check_regex(d.get("expect_regex"), at)
    fmt = d.get("format")
    if fmt is not None and (
        not isinstance(fmt, str) or fmt.strip().lower().replace("-", "_") not in FORMATS
    ):
        raise SuiteError(f"{at}: 'format' {fmt!r} is not one of {', '.join(FORMATS)}")
    if d.get("group") is not None and not isinstance(d["group"], str):
        raise SuiteError(f"{at}: 'group' must be text")
    if d.get("meta") is not None and not isinstance(d["meta"], dict):
        raise SuiteError(f"{at}: 'meta' must be an object")
    _check_facts(d.get("facts"), at)
    try:
        return Case.from_dict(d)
    except (TypeError, ValueError, KeyError) as exc:
        raise SuiteError(f"{at}: {exc}") from None


def _check_regex(pattern: Any, at: str) -> None:
    """``expect_regex`` must be text that compiles (as the detector will use it)."""
    if pattern is None:
        return
    if not isinstance(pattern, str) or not pattern:
        raise SuiteError(f"{at}: 'expect_regex' must be a non-empty text")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise SuiteError(f"{at}: 'expect_regex' {pattern!r} does not compile: {exc}") from None


_FACT_KEYS = frozenset(("key", "value", "depth", "aliases"))


def _check_facts(facts: Any, at: str) -> None:
    if facts is None:
        return
    if not isinstance(facts, list):
        raise SuiteError(f"{at}: 'facts' must be a list")
    for j, f in enumerate(facts):
        fat = f"{at}: facts #{j + 1}"
        if not isinstance(f, dict):
            raise SuiteError(f"{fat} must be an object")
        unknown = sorted(set(f) - _FACT_KEYS)
        if unknown:
            raise SuiteError(f"{fat}: unknown key(s) {', '.join(unknown)}")
        for key in ("key", "value"):
            if not isinstance(f.get(key), str) or not f[key]:
                raise SuiteError(f"{fat}: '{key}' must be a non-empty text")
        depth = f.get("depth", 0.5)
        if isinstance(depth, bool) or not isinstance(depth, int | float) or not 0 <= depth <= 1:
            raise SuiteError(f"{fat}: 'depth' must be a number from 0 to 1")
        aliases = f.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise SuiteError(f"{fat}: 'aliases' must be a list of texts")


def load_suite_file(path: str | Path, origin: str = "user") -> Suite:
    """Read one suite file."""
    p = Path(path).expanduser()
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise SuiteError(f"{p}: cannot read it: {exc.strerror or exc}") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SuiteError(f"{p}: not valid JSON: {exc}") from None
    return parse_suite(data, str(p), origin, p)


def user_dirs(cwd: Path | None = None) -> list[Path]:
    """Where user suites live, first wins: $QUANTLAB_SUITES, ./suites, ~/.config/quantlab/suites."""
    dirs: list[Path] = []
    env = os.environ.get("QUANTLAB_SUITES")
    if env:
        dirs.extend(Path(p).expanduser() for p in env.split(os.pathsep) if p)
    dirs.append((cwd or Path.cwd()) / "suites")
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    dirs.append(config_home / "quantlab" / "suites")
    return dirs


@dataclass
class Catalog:
    """Every suite found, by name, and the files that could not be read (with why)."""

    suites: dict[str, Suite] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    shadowed: list[str] = field(default_factory=list)


def catalog(cwd: Path | None = None) -> Catalog:
    """Built-in suites, then user suites (a user suite shadows a built-in of its name)."""
    cat = Catalog()
    for p in sorted(BUILTIN_DIR.glob("*.json")):
        s = load_suite_file(p, "built-in")  # a broken built-in is a bug: let it raise
        cat.suites[s.name] = s
    seen_user: set[str] = set()
    for d in user_dirs(cwd):
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.json")):
            try:
                s = load_suite_file(p, "user")
            except SuiteError as exc:
                cat.errors.append(str(exc))
                continue
            if s.name in seen_user:  # an earlier folder wins
                continue
            seen_user.add(s.name)
            if s.name in cat.suites:
                cat.shadowed.append(f"{s.name}: {p} shadows {cat.suites[s.name].path}")
            cat.suites[s.name] = s
    return cat


def find_suite(spec: str, cwd: Path | None = None) -> Suite:
    """A suite by name (user suites first, then built-in) or by path to a .json file."""
    p = Path(spec).expanduser()
    if spec.endswith(".json") or os.sep in spec:
        if not p.is_file():
            raise SuiteError(f"{spec}: no such suite file")
        return load_suite_file(p, "user")
    cat = catalog(cwd)
    if spec in cat.suites:
        return cat.suites[spec]
    known = ", ".join(sorted(cat.suites)) or "(none)"
    hint = ""
    if cat.errors:
        hint = f"; {len(cat.errors)} user suite file(s) could not be read (see `quantlab suites`)"
    raise SuiteError(f"no suite named {spec!r} (known: {known}){hint}")
