"""One self-contained HTML page: inline CSS, figures as data URIs, no script and no request."""

import base64
import html
import json
from dataclasses import dataclass

from onnxcar.htmlreport.facts import Table


@dataclass(frozen=True)
class Figure:
    """A PNG figure with the name it is saved under (``--png``) and a caption."""

    name: str
    png: bytes
    caption: str


@dataclass(frozen=True)
class Note:
    """A sentence shown as it is; ``problem`` marks something the page could not show."""

    text: str
    problem: bool = False


@dataclass(frozen=True)
class Code:
    """Settings shown as a table of dotted keys and JSON values under a heading."""

    title: str
    value: object


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple  # Figure, Table, Note or Code


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1180px;padding:16px 24px;
color:#1d1d1f;background:#fff;line-height:1.45}
h1{font-size:1.6em;margin:0.2em 0}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.8em}
h3{font-size:1.02em;margin:1em 0 0.3em}
figure{margin:12px 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:0.9em;color:#555}
table{border-collapse:collapse;font-size:0.9em;margin:8px 0}th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f6}td:first-child,th:first-child{text-align:left}
.scroll{max-height:420px;overflow:auto;display:inline-block}
.problem{background:#fff4e5;border-left:4px solid #e8a33d;padding:6px 10px;margin:6px 0}
table.settings td{text-align:left;font-family:ui-monospace,monospace;font-size:0.85em}
nav a{margin-right:12px}
"""


def render_page(title: str, intro: tuple[str, ...], sections: list[Section]) -> str:
    """The whole page as text."""
    anchors = [f"s{i}" for i in range(len(sections))]
    nav = " ".join(f'<a href="#{a}">{html.escape(s.title)}</a>' for a, s in zip(anchors, sections))
    body = "\n".join(_section(a, s) for a, s in zip(anchors, sections))
    lines = "".join(f"<p>{html.escape(line)}</p>" for line in intro)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head>\n<body><h1>{html.escape(title)}</h1>{lines}<nav>{nav}</nav>\n{body}\n</body></html>\n"
    )


def _section(anchor: str, section: Section) -> str:
    blocks = "\n".join(_BLOCKS[type(block)](block) for block in section.blocks)
    return f'<section id="{anchor}"><h2>{html.escape(section.title)}</h2>\n{blocks}</section>'


def _figure(figure: Figure) -> str:
    data = base64.b64encode(figure.png).decode()
    caption = html.escape(figure.caption)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'


def _table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    wrap = ' class="scroll"' if len(table.rows) > 16 else ""
    return f"<h3>{html.escape(table.title)}</h3><div{wrap}><table><tr>{head}</tr>{rows}</table></div>"


def _note(note: Note) -> str:
    return f'<p class="problem">{html.escape(note.text)}</p>' if note.problem else f"<p>{html.escape(note.text)}</p>"


def _code(code: Code) -> str:
    rows = "".join(f"<tr><td>{html.escape(key)}</td><td>{html.escape(value)}</td></tr>"
                   for key, value in _flatten(code.value))
    return f'<h3>{html.escape(code.title)}</h3><table class="settings">{rows}</table>'


def _flatten(value, prefix: str = "") -> list[tuple[str, str]]:
    """Nested settings as (dotted key, compact JSON value) rows."""
    if isinstance(value, dict) and value:
        return [row for key, item in value.items() for row in _flatten(item, f"{prefix}.{key}" if prefix else str(key))]
    return [(prefix, json.dumps(value, default=str))]


_BLOCKS = {Figure: _figure, Table: _table, Note: _note, Code: _code}
