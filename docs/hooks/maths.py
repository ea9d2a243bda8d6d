"""MkDocs hook: the pages' mathematics, rendered at build time as MathML.

``pymdownx.arithmatex`` (in its generic mode) marks ``$...$`` and ``$$...$$`` in pages and
docstrings as ``<span class="arithmatex">\\(...\\)</span>`` and
``<div class="arithmatex">\\[...\\]</div>``; this hook replaces each by the MathML that
``latex2mathml`` makes of it. Browsers draw MathML themselves, so the built site needs no
script, no font and no network to show an equation. A formula that does not convert fails
the build, naming the page, and so does one that uses a command latex2mathml does not
know (it would show the command as text).
"""

from __future__ import annotations

import html
import re
from typing import Any

from latex2mathml.converter import convert

INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.DOTALL)
BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.DOTALL)
UNKNOWN_COMMAND = re.compile(r"\\[A-Za-z{}]+")


def mathml(latex: str, display: str, page: str) -> str:
    """``latex`` (as arithmatex escaped it) as a MathML element; an error names ``page``."""
    source = html.unescape(latex).strip()
    try:
        rendered = convert(source, display=display)
    except Exception as error:  # latex2mathml raises several types for malformed input
        raise ValueError(f"{page}: cannot render the formula {source!r}: {error}") from error
    unknown = UNKNOWN_COMMAND.search(rendered)
    if unknown:  # latex2mathml shows a command it does not know as text
        raise ValueError(f"{page}: the formula {source!r} uses {unknown[0]}, which latex2mathml "
                         f"does not render")
    return rendered


def on_page_content(content: str, page: Any, config: Any, files: Any) -> str:
    name = page.file.src_uri
    content = BLOCK.sub(lambda m: f'<div class="math">{mathml(m[1], "block", name)}</div>',
                        content)
    return INLINE.sub(lambda m: mathml(m[1], "inline", name), content)
