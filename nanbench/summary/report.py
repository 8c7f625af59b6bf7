"""A report as a list of blocks (headings, paragraphs, lists, tables, figures), rendered twice:
Markdown beside its PNG files, and one self-contained HTML page (figures embedded as base64 data
URIs, CSS inline, no script, nothing fetched from elsewhere).

Inline markup in text: `code`, **bold** and links to a heading of the same report,
[text](#anchor), in both renderings; a heading given an anchor carries it as its id (HTML) and as
an `<a id>` just before it (Markdown, where renderers make their own ids from the text).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd


class Report:
    """Blocks appended in reading order; markdown() and html() render them."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, object]] = []

    def heading(self, level: int, text: str, anchor: str | None = None) -> None:
        self.blocks.append((f"h{level}", (text, anchor)))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", items))

    def numbered(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ol", items))

    def code(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def table(self, frame: pd.DataFrame) -> None:
        """`frame` holds display strings already; its columns are the header."""
        if not frame.empty:
            self.blocks.append(("table", frame))

    def image(self, path: Path | None, alt: str) -> None:
        if path is not None:
            self.blocks.append(("img", (Path(path), alt)))

    def markdown(self) -> str:
        out = []
        for kind, content in self.blocks:
            if kind.startswith("h"):
                text, anchor = content
                out.append((f'<a id="{anchor}"></a>\n\n' if anchor else "") + "#" * int(kind[1]) + " " + text)
            elif kind == "p":
                out.append(content)
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in content))
            elif kind == "ol":
                out.append("\n".join(f"{i}. {item}" for i, item in enumerate(content, 1)))
            elif kind == "pre":
                out.append(f"```\n{content}\n```")
            elif kind == "table":
                out.append(_md_table(content))
            elif kind == "img":
                path, alt = content
                out.append(f"![{alt}]({path.name})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        body = []
        for kind, content in self.blocks:
            if kind.startswith("h"):
                text, anchor = content
                ident = f' id="{html.escape(anchor)}"' if anchor else ""
                body.append(f"<{kind}{ident}>{_inline(text)}</{kind}>")
            elif kind == "p":
                body.append(f"<p>{_inline(content)}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in content) + "</ul>")
            elif kind == "ol":
                body.append("<ol>" + "".join(f"<li>{_inline(i)}</li>" for i in content) + "</ol>")
            elif kind == "pre":
                body.append(f"<pre>{html.escape(content)}</pre>")
            elif kind == "table":
                body.append(_html_table(content))
            elif kind == "img":
                path, alt = content
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                body.append(f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{html.escape(alt)}</figcaption></figure>")
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
                + "\n".join(body) + "\n</body></html>\n")


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
        "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
        "code,pre{background:#f6f6f6;font-size:13px}pre{padding:.8em;overflow-x:auto}"
        "img{max-width:100%}figcaption{font-size:12px;color:#555}")


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\[([^\]]+)\]\(#([\w-]+)\)", r'<a href="#\2">\1</a>', text)  # same-page links only
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def _md_table(frame: pd.DataFrame) -> str:
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{_inline(str(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
