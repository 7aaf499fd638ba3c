"""Turn theme files (checked by :mod:`quantlab.themes`) into Textual themes.

A file that parses but whose colours Textual cannot use is reported like a parse error,
so a broken theme never stops the app: it is skipped and the default is used instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.app import App
from textual.color import Color, ColorParseError
from textual.theme import BUILTIN_THEMES, Theme

from quantlab.themes import DEFAULT_THEME, ThemeError, ThemeSpec, load_themes

#: Used only when the default theme file itself is missing or broken.
FALLBACK = Theme(
    name=DEFAULT_THEME,
    primary="#6cb6ff",
    secondary="#c49bff",
    accent="#ffb86b",
    background="#0b0f14",
    surface="#10161d",
    panel="#18212c",
    foreground="#d3dae3",
    success="#6fd08c",
    warning="#e9c46a",
    error="#ff6b7a",
    dark=True,
)


def to_textual(spec: ThemeSpec) -> Theme:
    """A Textual :class:`Theme` for ``spec``; raises ThemeError on a colour Textual refuses."""
    where = str(spec.path) if spec.path else spec.name
    for key, value in spec.colors.items():
        try:
            Color.parse(value)
        except ColorParseError:
            raise ThemeError(f"{where}: {key} = {value!r} is not a colour") from None
    extra: dict[str, float] = {}
    if spec.luminosity_spread is not None:
        extra["luminosity_spread"] = spec.luminosity_spread
    if spec.text_alpha is not None:
        extra["text_alpha"] = spec.text_alpha
    fields: dict[str, Any] = {**spec.colors, **extra}
    theme = Theme(name=spec.name, dark=spec.dark, variables=dict(spec.variables), **fields)
    try:
        theme.to_color_system().generate()
    except (ColorParseError, ValueError) as exc:
        raise ThemeError(f"{where}: Textual cannot build this theme: {exc}") from None
    return theme


@dataclass
class ThemeSet:
    """The themes to register, the one to start with, and what went wrong on the way."""

    themes: list[Theme]
    selected: str
    problems: list[str] = field(default_factory=list)


def load_app_themes(wanted: str | None = None) -> ThemeSet:
    """Load every theme file and choose ``wanted`` (a file theme or one of Textual's own),
    falling back to the default with a message when it is unknown or broken."""
    specs, problems = load_themes()
    themes: dict[str, Theme] = {}
    for spec in specs.values():
        try:
            themes[spec.name] = to_textual(spec)
        except ThemeError as exc:
            problems.append(str(exc))
    if DEFAULT_THEME not in themes:
        themes[DEFAULT_THEME] = FALLBACK
    selected = DEFAULT_THEME
    if wanted:
        if wanted in themes or wanted in BUILTIN_THEMES:
            selected = wanted
        else:
            known = sorted(set(themes) | set(BUILTIN_THEMES))
            problems.append(
                f"no theme named {wanted!r}; using {DEFAULT_THEME!r} (known: {', '.join(known)})"
            )
    return ThemeSet(list(themes.values()), selected, problems)


def apply_themes(app: App[Any], themes: ThemeSet | None) -> ThemeSet:
    """Register every loaded theme on ``app`` and select the chosen one (the default set
    when ``themes`` is None). Every quantlab app starts this way."""
    themes = themes or load_app_themes(None)
    for theme in themes.themes:
        app.register_theme(theme)
    app.theme = themes.selected
    return themes


class UnknownTheme(ValueError):
    """``--theme NAME`` names no usable theme; the message lists the ones there are."""


def choose_themes(flag: str | None, remembered: str | None, configured: str | None) -> ThemeSet:
    """The themes, starting with ``--theme`` (which must exist: :class:`UnknownTheme`
    otherwise), else the one chosen in the app last time (quietly skipped when its file is
    gone), else the config file's ``[ui] theme``, else the default."""
    if flag:
        themes = load_app_themes(flag)
        if themes.selected != flag:
            ours = sorted(t.name for t in themes.themes)
            textual = sorted(set(BUILTIN_THEMES) - set(ours))
            why = [p for p in themes.problems if not p.startswith("no theme named")]
            detail = f" ({why[0]})" if why else ""
            raise UnknownTheme(
                f"--theme {flag!r}: no such theme{detail}. quantlab's: {', '.join(ours)}; "
                f"Textual's: {', '.join(textual)}"
            )
        return themes
    if remembered:
        themes = load_app_themes(remembered)
        if themes.selected == remembered:
            return themes
    return load_app_themes(configured)
