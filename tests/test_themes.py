"""Theme files: the default is loaded from themes/, users add their own, bad ones fall back."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantlab.records import Endpoint
from quantlab.themes import (
    DEFAULT_THEME,
    ThemeError,
    builtin_theme_dir,
    load_theme_file,
    load_themes,
)
from tui.app import QuantlabApp
from tui.theme import load_app_themes


@pytest.fixture
def user_themes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    folder = tmp_path / "quantlab" / "themes"
    folder.mkdir(parents=True)
    return folder


def test_default_theme_is_a_file_with_every_colour() -> None:
    spec = load_theme_file(builtin_theme_dir() / "quantlab.toml")
    assert spec.name == DEFAULT_THEME
    for key in ("primary", "secondary", "accent", "background", "surface", "panel"):
        assert key in spec.colors
    for key in ("success", "warning", "error"):
        assert key in spec.colors
    assert spec.dark is True
    assert spec.variables["footer-key-foreground"] == spec.colors["primary"]


def test_user_theme_is_found_and_selected(user_themes: Path) -> None:
    (user_themes / "mine.toml").write_text(
        'name = "mine"\nprimary = "#ff0000"\nbackground = "#000000"\ndark = true\n'
    )
    themes = load_app_themes("mine")
    assert themes.selected == "mine"
    assert themes.problems == []
    assert {t.name for t in themes.themes} >= {"mine", DEFAULT_THEME, "quantlab-light"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('name = "bad"\nprimary = "#ff0000\n', "not valid TOML"),
        ('name = "bad"\nbackground = "#000000"\n', "missing 'primary'"),
        ('name = "bad"\nprimary = "blue-ish!"\n', "must be a colour"),
        ('name = "bad"\nprimary = "#ff0000"\ncolour = "#000"\n', "unknown key(s) 'colour'"),
        ('name = "bad"\nprimary = "notacolour"\n', "is not a colour"),
    ],
)
def test_broken_theme_is_reported_and_default_used(
    user_themes: Path, body: str, message: str
) -> None:
    (user_themes / "bad.toml").write_text(body)
    themes = load_app_themes("bad")
    assert themes.selected == DEFAULT_THEME
    joined = "\n".join(themes.problems)
    assert message in joined
    assert "bad.toml" in joined
    assert "no theme named 'bad'" in joined


def test_parse_errors_name_the_file(tmp_path: Path) -> None:
    p = tmp_path / "x.toml"
    p.write_text("primary = 3\n")
    with pytest.raises(ThemeError, match=r"x\.toml: primary must be a colour"):
        load_theme_file(p)
    themes, problems = load_themes([tmp_path])
    assert themes == {} and len(problems) == 1


def test_unknown_theme_name_lists_the_known_ones() -> None:
    themes = load_app_themes("no-such-theme")
    assert themes.selected == DEFAULT_THEME
    assert "known:" in themes.problems[0] and "quantlab-light" in themes.problems[0]


async def test_app_starts_with_the_file_theme_and_warns_about_a_broken_one(
    user_themes: Path,
) -> None:
    (user_themes / "broken.toml").write_text("primary = \n")
    app = QuantlabApp(
        endpoints=[Endpoint("a", "http://127.0.0.1:9", role="reference")],
        themes=load_app_themes("broken"),
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.theme == DEFAULT_THEME
        assert app.current_theme.primary.lower() == "#6cb6ff"
        messages = [n.message for n in app._notifications]
        assert any("broken.toml" in m for m in messages)
