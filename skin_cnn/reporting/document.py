"""A report as an ordered list of blocks, rendered to Markdown and to self-contained HTML by the
Jinja2 templates in ``templates/`` (``report.md.j2``, ``report.html.j2``, ``report.css``).

Building the blocks once and rendering them twice keeps the two documents from disagreeing.
The HTML template escapes every text (``esc``: :func:`html.escape`; ``inline``: escaped, then
Markdown code, bold and in-page links turned into tags) and has autoescape on for anything else;
the Markdown template writes the text as given.
"""

from __future__ import annotations

import base64
import functools
import html
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from markupsafe import Markup

from skin_cnn.core.io import PathLike


class Report:
    """An ordered list of blocks rendered to Markdown and HTML.

    Parameters
    ----------
    title : str
    anchors : bool
        Write ``<a id>`` before the Markdown headings, so in-report links work in any viewer.
    banner : str, optional
        Shown under the title and under every section heading, and kept in view while scrolling
        the HTML page (the synthetic-data warning).
    """

    def __init__(self, title: str, anchors: bool = False, banner: str | None = None) -> None:
        self.title = title
        self.blocks: list[tuple] = []
        self.anchors = anchors
        self.banner = banner

    def heading(self, text: str, level: int = 2) -> str:
        """Add a heading; returns its anchor (``id``), which links in the report can point to."""
        anchor = slug(text)
        taken = {b[3] for b in self.blocks if b[0] == "h"}
        base, n = anchor, 2
        while anchor in taken:
            anchor, n = f"{base}-{n}", n + 1
        self.blocks.append(("h", level, text, anchor))
        return anchor

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> None:
        self.blocks.append(("table", list(header), [list(map(str, r)) for r in rows]))

    def items(self, items: Iterable[str]) -> None:
        self.blocks.append(("ul", list(items)))

    def image(self, path: PathLike, alt: str) -> None:
        self.blocks.append(("img", Path(path), alt))

    def markdown(self, folder: PathLike) -> str:
        """The Markdown document; figure links relative to ``folder`` (where it is written)."""
        return _render("report.md.j2", self, folder, embed=False)

    def html(self, folder: PathLike) -> str:
        """The HTML page with every figure embedded; captions name the files relative to ``folder``."""
        return _render("report.html.j2", self, folder, embed=True)


def _block(block: tuple, folder: PathLike, embed: bool) -> dict[str, Any]:
    """A block as the templates read it."""
    kind = block[0]
    if kind == "h":
        return {"kind": kind, "level": block[1], "text": block[2], "anchor": block[3]}
    if kind == "p":
        return {"kind": kind, "text": block[1]}
    if kind == "table":
        return {"kind": kind, "header": block[1], "rows": block[2]}
    if kind == "ul":
        return {"kind": kind, "entries": block[1]}
    path = Path(block[1])
    data = base64.b64encode(path.read_bytes()).decode("ascii") if embed else None
    return {"kind": kind, "alt": block[2], "src": _relative(path, folder), "data": data}


def _render(template: str, report: Report, folder: PathLike, embed: bool) -> str:
    text = _environment().get_template(template).render(
        title=report.title, banner=report.banner, anchors=report.anchors,
        blocks=[_block(b, folder, embed) for b in report.blocks],
    )
    # every template line ends in a newline; the documents end without one after their last line
    return text[:-1] if text.endswith("\n") else text


@functools.lru_cache(maxsize=1)
def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("skin_cnn.reporting", "templates"),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(esc=_escape, inline=inline, md_cell=_markdown_cell)
    return env


def _escape(text: Any) -> Markup:
    """``html.escape`` (quotes as ``&#x27;`` and ``&quot;``), marked safe for the template."""
    return Markup(html.escape(str(text)))


def inline(text: Any) -> Markup:
    """Escape text for HTML and turn Markdown ``code``, **bold** and ``[text](#anchor)`` links into tags."""
    s = html.escape(str(text))
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\[([^\]]+)\]\((#[a-z0-9-]+)\)", r"<a href='\2'>\1</a>", s)
    return Markup(re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", s))


def _markdown_cell(text: str) -> str:
    """A Markdown table cell: a ``|`` inside it is escaped so it does not split the cell."""
    return text.replace("|", "\\|")


def slug(text: str) -> str:
    """An anchor for a heading: lower case, letters, digits and hyphens (``2×2 tables`` ->
    ``2-2-tables``)."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "section"


def _relative(path: PathLike, folder: PathLike) -> str:
    try:
        return Path(path).resolve().relative_to(Path(folder).resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()
