"""CompareView: one exchange's lanes side by side, the first divergence from the reference
lane highlighted (or, with :meth:`CompareView.toggle_word_diff`, each candidate's words
against the reference's: added ones underlined, removed ones struck through), the
detectors' findings listed (confirm with ``c``, dismiss with ``d``, reopen with ``o``;
offered only while a verdict can be saved) and the exchange's annotations shown.

The view only draws and reports: a verdict on a finding is posted as
:class:`CompareView.FindingVerdict`, and whoever owns the session saves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from quantlab.records import Annotation, Exchange, Finding, LaneResult
from quantlab.suite_results import first_difference
from quantlab.textdiff import counts, word_diff
from quantlab.textsafe import safe_line, safe_same_length, safe_text

SEVERITY_MARK = {"fail": "✗", "warn": "!", "info": "·"}
STATUS_MARK = {"open": "", "confirmed": " [confirmed]", "dismissed": " [dismissed]"}


def lane_header(
    result: LaneResult, divergence: int | None, is_reference: bool, diff: str | None = None
) -> str:
    """``q4_0 · diverges at char 17 · stop · TTFT 81 ms · 24 tok``: how the lane compares
    with the reference first (``diff``, the word diff's counts, when shown), as a narrow
    terminal cuts the line's end."""
    t = result.timing
    parts = [result.lane + (" (reference)" if is_reference else "")]
    if not is_reference:
        parts.append(
            diff or ("identical" if divergence is None else f"diverges at char {divergence}")
        )
    parts.append(result.finish_reason or ("error" if result.error else "–"))
    if t.ttft_ms is not None:
        parts.append(f"TTFT {t.ttft_ms:.0f} ms")
    if t.output_tokens is not None:
        parts.append(f"{t.output_tokens} tok")
    if t.tokens_per_s is not None:
        parts.append(f"{t.tokens_per_s:.1f} tok/s")
    return " · ".join(parts)


def highlighted_text(text: str, divergence: int | None) -> Content:
    """The answer with everything from the first differing character on highlighted (the
    character itself reversed), so the eye lands where the lanes part."""
    content = Content(safe_same_length(text) if text else "(no text)")
    if divergence is None or not text:
        return content
    if divergence >= len(text):  # this lane stopped where the reference went on
        return content + Content.styled(" ⟂ (ends here)", "$text-warning")
    return content.stylize("reverse", divergence, divergence + 1).stylize(
        "$text-warning", divergence + 1
    )


#: Theme variables, never colours: the diff reads on the dark and the light themes.
DIFF_STYLE = {"same": "", "added": "$text-success underline", "removed": "$text-error strike"}


def diff_content(reference: str, candidate: str) -> Content:
    """The candidate against the reference, word by word (:func:`quantlab.textdiff.word_diff`).
    Each span's text is made safe first and styled as a span, never read as markup."""
    spans = word_diff(reference, candidate)
    if not spans:
        return Content("(no text)")
    return Content.assemble(*((safe_text(s.text), DIFF_STYLE[s.kind]) for s in spans))


def diff_header(reference: str, candidate: str) -> str:
    """``word diff: +3 −2 of 40 words``"""
    c = counts(word_diff(reference, candidate))
    return f"word diff: +{c.added} −{c.removed} of {c.same + c.removed} words"


def finding_line(f: Finding) -> str:
    mark = SEVERITY_MARK.get(f.severity, "?")
    evidence = f.evidence.replace("\n", " ")
    if len(evidence) > 110:
        evidence = evidence[:109] + "…"
    return f"{mark} {f.lane} {f.detector} ({f.score:g}){STATUS_MARK.get(f.status, '')}: {evidence}"


def annotation_line(a: Annotation) -> str:
    lane = "all lanes" if a.lane == "*" else a.lane
    note = f" — {a.note}" if a.note else ""
    return f"✎ {lane}: {', '.join(a.tags)} (severity {a.severity}){note}"


class CompareView(Vertical):
    """Shows one exchange (``show``); empty until then."""

    DEFAULT_CSS = """
    CompareView {
        height: 1fr;
    }
    CompareView #compare-title {
        height: 1;
        color: $text-muted;
        padding: 0 1;
    }
    CompareView #compare-lanes {
        height: 1fr;
    }
    CompareView .compare-lane {
        width: 1fr;
        margin: 0 1 0 0;
        border-left: outer $primary 60%;
    }
    CompareView .compare-lane-head {
        height: auto;
        text-style: bold;
        padding: 0 1;
        background: $boost;
    }
    CompareView .compare-lane-text {
        padding: 0 1;
        height: auto;
    }
    /* The answers come first: the findings get at most a third of the view (they
       scroll), so the lanes' text shows at 120x40 too, not only their heads. */
    CompareView #compare-findings {
        height: auto;
        max-height: 33%;
        border: none;
    }
    CompareView #compare-notes {
        height: auto;
        max-height: 4;
        color: $text-muted;
        padding: 0 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "verdict('confirmed')", "Confirm finding"),
        Binding("d", "verdict('dismissed')", "Dismiss finding"),
        Binding("o", "verdict('open')", "Reopen finding", show=False),
    ]

    class FindingVerdict(Message):
        """A person confirmed, dismissed or reopened a finding."""

        def __init__(self, exchange_id: str, lane: str, detector: str, status: str) -> None:
            super().__init__()
            self.exchange_id = exchange_id
            self.lane = lane
            self.detector = detector
            self.status = status

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.exchange: Exchange | None = None
        self.reference: str | None = None
        self._findings: list[Finding] = []
        self._lane_widgets: list[tuple[Static, Static]] = []  # (head, text) per lane
        #: False while nothing can save a verdict (a followed session still being
        #: written): the confirm/dismiss keys are not offered then.
        self._writable = True
        #: Word diff of each candidate against the reference instead of the highlighted
        #: first difference (toggled by the owner's key).
        self.word_diff = False
        self._annotations: list[Annotation] = []
        self._lane: str | None = None

    @property
    def writable(self) -> bool:
        return self._writable

    @writable.setter
    def writable(self, value: bool) -> None:
        self._writable = value
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "verdict":
            return self._writable
        return True

    def compose(self) -> ComposeResult:
        yield Static("select a row to compare its lanes", id="compare-title")
        yield Horizontal(id="compare-lanes")
        yield OptionList(id="compare-findings")
        notes = Static("", id="compare-notes")
        notes.display = False
        yield notes

    def show(
        self,
        exchange: Exchange | None,
        reference: str | None = None,
        annotations: Sequence[Annotation] = (),
        *,
        lane: str | None = None,
    ) -> None:
        """Draw ``exchange`` (None clears). ``lane`` puts that lane's findings first."""
        same = (
            exchange is not None and self.exchange is not None and exchange.id == self.exchange.id
        )
        self.exchange = exchange
        self.reference = reference
        self._annotations = list(annotations)
        self._lane = lane
        title = self.query_one("#compare-title", Static)
        lanes_box = self.query_one("#compare-lanes", Horizontal)
        if exchange is None:
            title.update("select a row to compare its lanes")
            lanes_box.remove_children()
            self._lane_widgets = []
            self._set_findings([])
            self._set_notes("")
            return
        prompt = exchange.prompt.replace("\n", " ")
        title.update(Content(safe_line(f"{exchange.source} · {exchange.id} · {prompt[:120]}")))
        ref = exchange.results.get(reference) if reference else None
        ref_text = ref.text if ref is not None and ref.ok else None
        columns = []
        for name, result in exchange.results.items():
            is_ref = name == reference
            div = None if is_ref or ref_text is None else first_difference(ref_text, result.text)
            if self.word_diff and not is_ref and ref_text is not None:
                body = diff_content(ref_text, result.text)
                head = lane_header(result, div, is_ref, diff_header(ref_text, result.text))
            else:
                body = highlighted_text(result.text, div)
                head = lane_header(result, div, is_ref)
            if result.error is not None:
                error = safe_text(str(result.error))
                body = body + Content.styled(f"\n\nERROR {error}", "$text-error")
            columns.append((name, head, body))
        # The lane widgets are kept by reference: right after a rebuild they are not
        # mounted yet, and a second show() (the next row of the same exchange) must
        # update them rather than query for them.
        if same and len(self._lane_widgets) == len(columns):
            for (head_w, body_w), (_name, head, body) in zip(
                self._lane_widgets, columns, strict=True
            ):
                head_w.update(Content(head))
                body_w.update(body)
        else:
            lanes_box.remove_children()
            self._lane_widgets = [
                (
                    Static(Content(head), classes="compare-lane-head"),
                    Static(body, classes="compare-lane-text"),
                )
                for _name, head, body in columns
            ]
            lanes_box.mount_all(
                VerticalScroll(head_w, body_w, classes="compare-lane")
                for head_w, body_w in self._lane_widgets
            )
        findings = [f for r in exchange.results.values() for f in r.findings]
        if lane is not None:
            findings.sort(key=lambda f: f.lane != lane)
        self._set_findings(findings)
        notes = "\n".join(annotation_line(a) for a in annotations)
        self._set_notes(notes)

    def _set_notes(self, notes: str) -> None:
        """The annotations' lines; hidden when there are none (an empty line would take a
        row from the answers)."""
        box = self.query_one("#compare-notes", Static)
        box.update(Content(safe_text(notes)))
        box.display = bool(notes)

    def toggle_word_diff(self) -> bool:
        """Switch between the first-difference view and the word diff; redraws the shown
        exchange and returns the new state."""
        self.word_diff = not self.word_diff
        if self.exchange is not None:
            self.show(self.exchange, self.reference, self._annotations, lane=self._lane)
        return self.word_diff

    def _set_findings(self, findings: list[Finding]) -> None:
        self._findings = findings
        ol = self.query_one("#compare-findings", OptionList)
        highlighted = ol.highlighted
        ol.clear_options()
        if findings:
            # Content, not markup: "[confirmed]" would be read as a style tag and vanish.
            ol.add_options(Option(Content(safe_line(finding_line(f)))) for f in findings)
            if highlighted is not None:
                ol.highlighted = min(highlighted, len(findings) - 1)
        else:
            ol.add_option(Option("no findings", disabled=True))

    @property
    def selected_finding(self) -> Finding | None:
        ol = self.query_one("#compare-findings", OptionList)
        i = ol.highlighted
        if i is None or not self._findings or i >= len(self._findings):
            return None
        return self._findings[i]

    def action_verdict(self, status: str) -> None:
        f = self.selected_finding
        if f is None or self.exchange is None:
            self.notify("highlight a finding first (Tab to the list)", severity="warning")
            return
        self.post_message(self.FindingVerdict(self.exchange.id, f.lane, f.detector, status))

    @on(OptionList.OptionSelected, "#compare-findings")
    def _toggle(self, event: OptionList.OptionSelected) -> None:
        """Enter on a finding: open -> confirmed -> dismissed -> open."""
        f = self.selected_finding
        if f is None or self.exchange is None:
            return
        nxt = {"open": "confirmed", "confirmed": "dismissed", "dismissed": "open"}[f.status]
        self.post_message(self.FindingVerdict(self.exchange.id, f.lane, f.detector, nxt))
