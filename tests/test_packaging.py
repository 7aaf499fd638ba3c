"""The built wheel carries the built-in themes (the repository's themes/ is their source),
and quantlab finds them from an installed, non-editable copy."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_THEMES = sorted(p.name for p in (ROOT / "themes").glob("*.toml"))

# Run from outside the checkout with only the installed copy on the path, so the source
# tree (and the editable install's finder) cannot answer instead of the copy.
FIND = (
    "import json, quantlab.themes as t;"
    "print(json.dumps([t.__file__, str(t.builtin_theme_dir()), sorted(t.load_themes()[0])]))"
)


def _installed_view(site: Path, cwd: Path) -> list[object]:
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run(
        [sys.executable, "-S", "-c", FIND],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def test_build_step_copies_the_themes_and_the_copy_finds_them(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    shipped = lib / "quantlab" / "builtin_themes"
    assert sorted(p.name for p in shipped.glob("*.toml")) == SOURCE_THEMES
    for name in SOURCE_THEMES:
        assert (shipped / name).read_bytes() == (ROOT / "themes" / name).read_bytes()
    module, folder, names = _installed_view(lib, tmp_path)
    assert Path(str(module)).is_relative_to(lib)
    assert Path(str(folder)) == shipped
    assert names == ["quantlab", "quantlab-light"]


@pytest.mark.slow
def test_wheel_lists_the_themes_and_every_package(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    if built.returncode != 0 and "setuptools" in built.stderr and "connection" in built.stderr:
        pytest.skip("pip could not fetch setuptools for the isolated build")
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("quantlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for theme in SOURCE_THEMES:
        assert f"quantlab/builtin_themes/{theme}" in names
    assert "tui/app.tcss" in names
    for pkg in ("chat", "runner", "telemetry", "common"):
        assert f"tui/widgets/{pkg}/__init__.py" in names
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)  # what a non-editable install puts in site-packages
    _, folder, themes = _installed_view(site, tmp_path)
    assert Path(str(folder)) == site / "quantlab" / "builtin_themes"
    assert themes == ["quantlab", "quantlab-light"]
