"""Go's ``text/tabwriter`` column algorithm (the docker CLI and ctr print tables with it).

Cells are tab-terminated; the text after a line's last tab is not part of a column. Columns are sized per
block of consecutive lines that have a cell there: ``max(minwidth, widest cell + padding)``.
"""

from __future__ import annotations

import unicodedata


def _width(text: str) -> int:
    return sum(0 if unicodedata.combining(ch) else 1 for ch in text)


class TabWriter:
    def __init__(self, minwidth: int, tabwidth: int, padding: int, padchar: str = " ") -> None:
        self.minwidth = minwidth
        self.tabwidth = tabwidth
        self.padding = padding
        self.padchar = padchar
        self.lines: list[list[str]] = []

    def write(self, text: str) -> None:
        """Add text; like Go's writer, a newline ends a line."""
        for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
            self.lines.append(line.split("\t"))

    def render(self) -> str:
        out: list[str] = []
        self._format(out, [], 0, len(self.lines))
        return "".join(out)

    def _format(self, out: list[str], widths: list[int], line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(self.lines[this]) - 1:
                this += 1
                continue
            self._write_lines(out, widths, line0, this)
            line0 = this
            width = self.minwidth
            while this < line1 and column < len(self.lines[this]) - 1:
                width = max(width, _width(self.lines[this][column]) + self.padding)
                this += 1
            self._format(out, [*widths, width], line0, this)
            line0 = this
        self._write_lines(out, widths, line0, line1)

    def _write_lines(self, out: list[str], widths: list[int], line0: int, line1: int) -> None:
        for cells in self.lines[line0:line1]:
            for j, cell in enumerate(cells):
                out.append(cell)
                if j < len(widths):
                    out.append(self.padchar * max(0, widths[j] - _width(cell)))
            out.append("\n")


def docker_table(rows: list[list[str]]) -> str:
    """The docker CLI's table writer: ``tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)``."""
    tw = TabWriter(10, 1, 3)
    for row in rows:
        tw.write("\t".join(row) + "\n")
    return tw.render()
