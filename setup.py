"""Build step: copy the repository's ``themes/*.toml`` into the wheel as package data.

``themes/`` at the top of the repository stays the one source of the built-in themes;
this copies them to ``quantlab/builtin_themes/`` inside the built package, where
:func:`quantlab.themes.builtin_theme_dir` finds them once installed (not editable). An
editable install reads ``themes/`` in place, so nothing is copied then.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

THEMES = Path(__file__).resolve().parent / "themes"
TARGET = ("quantlab", "builtin_themes")


class build_py_with_themes(build_py):
    """``build_py`` plus the theme files, listed in the outputs so the wheel records them."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib, *TARGET)
        self.mkpath(str(target))
        for theme in self._themes():
            self.copy_file(str(theme), str(target / theme.name), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            target = Path(self.build_lib, *TARGET)
            outputs += [str(target / t.name) for t in self._themes()]
        return outputs

    @staticmethod
    def _themes() -> list[Path]:
        return sorted(THEMES.glob("*.toml"))


setup(cmdclass={"build_py": build_py_with_themes})
