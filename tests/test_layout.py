"""The project's layout rules that can be checked mechanically (the core never imports textual…)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_textual_or_tui() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "quantlab").rglob("*.py")
        if {"textual", "tui", "rich"} & _imports(p)
    ]
    assert offenders == [], f"quantlab/ must not import textual/tui: {offenders}"


def test_importing_the_core_does_not_load_textual() -> None:
    code = (
        "import sys, importlib, pkgutil, quantlab\n"
        "for m in pkgutil.walk_packages(quantlab.__path__, 'quantlab.'):\n"
        "    if m.name != 'quantlab.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "print('textual' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is part of the test extra"
    dirs = [d for d in ("quantlab", "tui", "tests", "benchmarks") if (ROOT / d).exists()]
    res = subprocess.run([ruff, "check", *dirs], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
