"""Screenshots that render the same everywhere, saved where a server has room for them.

Textual writes SVG with each run of equal style as one ``<text>``; a run that starts or ends
with spaces (``"  45 °C"``) loses them in renderers that collapse white space, such as
librsvg's ``rsvg-convert``: the PNG then shows "H20045 °C". ``xml:space="preserve"`` on
the root keeps every space, in every renderer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def preserve_spaces(svg: str) -> str:
    """The SVG with ``xml:space="preserve"`` on its root element (once)."""
    if 'xml:space="preserve"' in svg[:400]:
        return svg
    return svg.replace("<svg ", '<svg xml:space="preserve" ', 1)


class ScreenshotMixin:
    """For quantlab's apps: SVGs that keep their spaces, saved into the current folder."""

    def export_screenshot(self, *, title: str | None = None, simplify: bool = False) -> str:
        return preserve_spaces(super().export_screenshot(title=title, simplify=simplify))  # type: ignore[misc]

    def deliver_screenshot(
        self,
        filename: str | None = None,
        path: str | None = None,
        time_format: str | None = None,
    ) -> str | None:
        """Save an SVG of the screen into the current folder and say where it went.

        Textual's default delivery saves to the Downloads folder, which a server (the
        usual place quantlab runs) often lacks: the palette's Screenshot then just fails.
        """
        app: Any = self
        try:
            saved = app.save_screenshot(filename, path or ".", time_format)
        except OSError as exc:
            app.notify(f"could not save the screenshot: {exc}", severity="error")
            return None
        app.notify(f"saved {Path(saved).resolve()}", title="Screenshot")
        return str(saved)
