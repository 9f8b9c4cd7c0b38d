"""Figures beside their references, and the table that shows them."""

import math
from dataclasses import asdict, dataclass, field


@dataclass
class Figure:
    """One row: our value, the reference measured in the same run, a target.

    :param name: what was measured, with its unit.
    :param ours: barbican-lab's value (``None`` when it could not be made).
    :param reference: the reference's value.
    :param ref_label: what the reference is, in a few words.
    :param target: the target in words, or ``""`` when there is none.
    :param met: whether the target is met (``None``: no target).
    :param note: a short remark shown under the table.
    """

    section: str
    name: str
    ours: float | None
    reference: float | None
    ref_label: str
    target: str = ""
    met: bool | None = None
    note: str = ""
    digits: int = 3
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self):
        if self.ours is None or not self.reference:
            return None
        return self.ours / self.reference

    def as_dict(self):
        data = asdict(self)
        data["ratio"] = self.ratio
        return data


def percentile(values, pct):
    """The ``pct`` percentile of ``values``, interpolated between ranks."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values):
    return percentile(values, 50)


def _number(value, digits):
    if value is None:
        return "-"
    if isinstance(value, int) or float(value).is_integer() and digits == 0:
        return f"{int(value)}"
    return f"{value:.{digits}f}"


def render(figures):
    """The table, as text: one line per figure, grouped by section."""
    header = ("figure", "ours", "reference", "ratio", "target", "met")
    rows, sections = [], []
    for fig in figures:
        ref = _number(fig.reference, fig.digits)
        ratio = "-" if fig.ratio is None else f"{fig.ratio:.2f}"
        met = {True: "yes", False: "MISSED", None: ""}[fig.met]
        if fig.ours is None and fig.note:
            ours = fig.note
        else:
            ours = _number(fig.ours, fig.digits)
        rows.append((fig.name, ours, f"{ref} {fig.ref_label}".strip(),
                     ratio, fig.target, met))
        sections.append(fig.section)
    widths = [max(len(str(row[i])) for row in rows + [header])
              for i in range(len(header))]

    def line(row):
        return "  ".join(str(cell).ljust(width) if i in (0, 2, 4, 5)
                         else str(cell).rjust(width)
                         for i, (cell, width) in enumerate(zip(row, widths))
                         ).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    previous = None
    for section, row in zip(sections, rows):
        if section != previous:
            out.append(f"[{section}]")
            previous = section
        out.append(line(row))
    return "\n".join(out)
