"""Theme files: one TOML file per theme in ``themes/``, plus the user's own.

A theme file only names colours; the UI turns it into whatever its toolkit needs. Parsing
lives here (plain TOML -> checked record, no UI import) so a broken file is reported the
same way wherever it is read. Example (``themes/quantlab.toml`` is the default)::

    name = "quantlab"
    dark = true
    primary = "#6cb6ff"        # required
    secondary = "#c4a7ff"      # the rest are optional
    accent = "#f2b36f"
    background = "#0d1117"
    surface = "#131a22"
    panel = "#1a2330"
    success = "#5fd38d"
    warning = "#e8c15a"
    error = "#f47067"
    foreground = "#d5dde7"

    [variables]                # any extra CSS variables, e.g. footer colours
    "footer-key-foreground" = "#6cb6ff"

Where themes are found, later folders overriding earlier ones by name: the built-in ones
(the repository's ``themes/`` folder, copied into the wheel as ``quantlab/builtin_themes/``
by ``setup.py``), then ``$XDG_CONFIG_HOME/quantlab/themes`` (default
``~/.config/quantlab/themes``).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_THEME = "quantlab"

#: Colour fields a theme may set (``primary`` is required).
COLOR_KEYS: tuple[str, ...] = (
    "primary",
    "secondary",
    "accent",
    "background",
    "surface",
    "panel",
    "boost",
    "foreground",
    "success",
    "warning",
    "error",
)
_OTHER_KEYS = ("name", "dark", "variables", "luminosity_spread", "text_alpha")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Hex (#rgb, #rgba, #rrggbb, #rrggbbaa), rgb()/rgba()/hsl()/hsla(), or a plain colour name;
# the UI's own parser has the last word, this catches typos with a clear message early.
_COLOR = re.compile(
    r"^(#([0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})"
    r"|(rgb|rgba|hsl|hsla)\([^()]*\)"
    r"|[a-z_]+[0-9]?)$"
)
_VARIABLE = re.compile(r"^[a-z][a-z0-9-]*$")


class ThemeError(Exception):
    """A theme file that cannot be used; the message names the file and what is wrong."""


@dataclass(slots=True)
class ThemeSpec:
    """A checked theme file: colours by field name, dark or light, extra CSS variables."""

    name: str
    colors: dict[str, str]
    dark: bool = True
    variables: dict[str, str] = field(default_factory=dict)
    luminosity_spread: float | None = None
    text_alpha: float | None = None
    path: Path | None = None


def builtin_theme_dir() -> Path:
    """The built-in themes: inside the installed package (a wheel), else the source
    checkout's ``themes/`` beside the ``quantlab`` package (an editable install)."""
    here = Path(__file__).resolve().parent
    packaged = here / "builtin_themes"
    return packaged if packaged.is_dir() else here.parent / "themes"


def user_theme_dir() -> Path:
    """Where a user drops their own theme files."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "quantlab" / "themes"


def theme_dirs() -> list[Path]:
    """Folders searched for ``*.toml`` themes, lowest precedence first."""
    return [builtin_theme_dir(), user_theme_dir()]


def parse_theme(data: dict[str, Any], where: str, default_name: str) -> ThemeSpec:
    """Check a parsed TOML document and turn it into a :class:`ThemeSpec`."""
    unknown = [k for k in data if k not in COLOR_KEYS and k not in _OTHER_KEYS]
    if unknown:
        known = ", ".join((*COLOR_KEYS, *_OTHER_KEYS))
        raise ThemeError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (known: {known})"
        )
    name = data.get("name", default_name)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ThemeError(
            f"{where}: name must be 1-64 letters, digits, '_', '.' or '-', not {name!r}"
        )
    if "primary" not in data:
        raise ThemeError(f"{where}: missing 'primary' (the one colour every theme needs)")
    colors: dict[str, str] = {}
    for key in COLOR_KEYS:
        if key in data:
            colors[key] = _color(data[key], f"{where}: {key}")
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ThemeError(f"{where}: dark must be true or false, not {dark!r}")
    variables_raw = data.get("variables", {})
    if not isinstance(variables_raw, dict):
        raise ThemeError(f'{where}: [variables] must be a table of name = "value"')
    variables: dict[str, str] = {}
    for k, v in variables_raw.items():
        if not _VARIABLE.match(k):
            raise ThemeError(f"{where}: variable name {k!r} must be lower-case words joined by '-'")
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            raise ThemeError(f"{where}: variable {k!r} must be a string, not {v!r}")
        variables[k] = str(v)
    spec = ThemeSpec(name=name, colors=colors, dark=dark, variables=variables)
    for key in ("luminosity_spread", "text_alpha"):
        if key in data:
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
                raise ThemeError(f"{where}: {key} must be a number from 0 to 1, not {v!r}")
            setattr(spec, key, float(v))
    return spec


def load_theme_file(path: str | os.PathLike[str]) -> ThemeSpec:
    """Read and check one theme file; raises :class:`ThemeError` with a clear message."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ThemeError(f"{p}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ThemeError(f"{p}: cannot read it: {exc}") from None
    spec = parse_theme(data, str(p), p.stem)
    spec.path = p
    return spec


def load_themes(dirs: list[Path] | None = None) -> tuple[dict[str, ThemeSpec], list[str]]:
    """Every theme file in ``dirs`` (default :func:`theme_dirs`), by name, and a message
    for each file that could not be used (those are skipped, never fatal)."""
    themes: dict[str, ThemeSpec] = {}
    problems: list[str] = []
    for d in theme_dirs() if dirs is None else dirs:
        try:
            files = sorted(d.glob("*.toml")) if d.is_dir() else []
        except OSError as exc:
            problems.append(f"{d}: cannot list themes: {exc}")
            continue
        for f in files:
            try:
                spec = load_theme_file(f)
            except ThemeError as exc:
                problems.append(str(exc))
                continue
            themes[spec.name] = spec
    return themes, problems


def _color(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _COLOR.match(value.strip()):
        raise ThemeError(
            f'{where} must be a colour like "#6cb6ff", "rgb(108,182,255)" or a colour '
            f"name, not {value!r}"
        )
    return value.strip()
