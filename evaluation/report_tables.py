"""A small table model for the report and its Markdown and LaTeX (booktabs) renderings.

Cells are already-formatted strings, or None for a missing value (rendered "–" in Markdown and "--"
in LaTeX). Text is written once, in Markdown flavour with Greek letters (α₁, β); `latex_escape` turns
it into LaTeX, so the two renderings can never disagree on a number.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

MISSING = "–"

_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
# Applied in this order after the specials: "--" first so that flags like --weight keep two hyphens.
_LATEX_SYMBOLS = {"--": "-{}-", "|": r"\textbar{}", "α₁": r"$\alpha_1$", "α₂": r"$\alpha_2$", "α": r"$\alpha$",
                  "β": r"$\beta$", "–": "--", "·": r"$\cdot$", "<": r"$<$"}


@dataclass
class Row:
    label: str
    cells: list[Optional[str]]


@dataclass
class Table:
    """title: one line; groups: [(group name, sub-column names)]; notes: lines printed under the table."""

    title: str
    caption: str
    row_header: str
    groups: list[tuple[str, tuple[str, ...]]]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        return sum(len(subs) for _, subs in self.groups)


def percent(value: Optional[float]) -> Optional[str]:
    """A fraction as a percentage with one decimal: 0.849 -> "84.9"."""
    return None if value is None else f"{100 * value:.1f}"


def with_delta(value: Optional[float], baseline: Optional[float]) -> Optional[str]:
    """ "84.9 (+24.6)": the delta is taken between the displayed (rounded) numbers, so it always equals
    what a reader gets by subtracting the two printed values."""
    shown = percent(value)
    if shown is None or baseline is None:
        return shown
    return f"{shown} ({float(shown) - float(percent(baseline)):+.1f})"


def render_markdown(table: Table) -> str:
    header = [table.row_header] + [f"{group} {sub}".strip() for group, subs in table.groups for sub in subs]
    lines = [f"**{table.title}.** {table.caption}", "",
             _markdown_line(header), _markdown_line(["---"] + ["---:"] * table.width)]
    lines += [_markdown_line([row.label] + [MISSING if cell is None else cell for cell in row.cells])
              for row in table.rows]
    lines += [""] + [f"- {note}" for note in table.notes] if table.notes else []
    return "\n".join(lines) + "\n"


def _markdown_line(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def render_latex(table: Table) -> str:
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{\textbf{{{latex_escape(table.title)}.}} {latex_escape(table.caption)}}}",
             r"\begin{tabular}{l" + "c" * table.width + "}", r"\toprule"]
    if any(len(subs) > 1 or subs[0] for _, subs in table.groups):
        lines += _latex_group_header(table)
        subs = [sub for _, group_subs in table.groups for sub in group_subs]
    else:
        subs = [group for group, _ in table.groups]
    lines += [" & ".join([latex_escape(table.row_header)] + [latex_escape(sub) for sub in subs]) + r" \\",
              r"\midrule"]
    lines += [" & ".join([latex_escape(row.label)] + ["--" if cell is None else latex_escape(cell)
                                                      for cell in row.cells]) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines += [r"\par\smallskip\footnotesize"] + [latex_escape(note) + r"\par" for note in table.notes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _latex_group_header(table: Table) -> list[str]:
    spans, rules, column = [""], [], 2
    for group, subs in table.groups:
        spans.append(rf"\multicolumn{{{len(subs)}}}{{c}}{{{latex_escape(group)}}}")
        rules.append(rf"\cmidrule(lr){{{column}-{column + len(subs) - 1}}}")
        column += len(subs)
    return [" & ".join(spans) + r" \\", " ".join(rules)]


def latex_escape(text: str) -> str:
    """Plain text (with the Greek letters and dashes the report uses) as LaTeX source."""
    out = "".join(_LATEX_SPECIALS.get(char, char) for char in text)
    for symbol, latex in _LATEX_SYMBOLS.items():
        out = out.replace(symbol, latex)
    return out
