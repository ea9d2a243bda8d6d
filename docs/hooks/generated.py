"""MkDocs hook: the pages that come from the code rather than from docs/.

- ``<!-- commands -->`` in a page becomes every command's ``--help``, run from its argument
  parser at build time, so the reference cannot drift from the options;
- the committed figures (``figures/``, ``studies/*/figures/``) are added to the site at their
  repository paths, so pages show the very files the README and reports show;
- ``CONTRIBUTING.md`` and ``CHANGELOG.md`` become pages of the site;
- the Sphinx roles of the docstrings (``:func:`x```) are shown as their code alone, with
  ``~a.b.c`` shortened to ``c`` as Sphinx does.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

from repsim.figures import FIGURES

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- commands -->"
HELP_WIDTH = 88  # columns of the generated help: the same on every machine
# (how it is typed, the module whose main(argv) parses it)
COMMANDS = [
    ("repsim", "repsim.commands"),
    ("python -m repsim.train", "repsim.train.cli"),
    ("python -m repsim.extract", "repsim.extract"),
    ("python -m repsim.record", "repsim.record.cli"),
    ("python -m repsim.report", "repsim.report"),
    ("python -m repsim.data", "repsim.data.__main__"),
    ("python -m repsim.study", "repsim.study.cli"),
    ("python -m repsim.figures", "repsim.figures.__main__"),
    *[(f"python -m repsim.figures {name}", f"repsim.figures.{name}") for name in FIGURES],
]
SPHINX_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj):<code>(~?)([^<]*)</code>")
ROOT_PAGES = {"CONTRIBUTING.md": "contributing.md", "CHANGELOG.md": "changelog.md"}


def help_text(module: str) -> str:
    """What ``--help`` prints for a command, from its own parser."""
    main = importlib.import_module(module).main
    out = io.StringIO()
    width = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(HELP_WIDTH)  # argparse wraps to it, not to the terminal
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main(["--help"])
    finally:
        if width is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = width
    return out.getvalue().rstrip()


def commands_reference() -> str:
    """Every command's help, one section each, for the commands page."""
    sections = []
    for typed, module in COMMANDS:
        sections.append(f"## `{typed}`\n\n```text\n{help_text(module)}\n```\n")
    return "\n".join(sections)


def on_files(files: Files, config: Any) -> Files:
    for source, page in ROOT_PAGES.items():
        text = (ROOT / source).read_text()
        for other, other_page in ROOT_PAGES.items():  # links between them, as pages
            text = text.replace(f"({other})", f"({other_page})")
        files.append(File.generated(config, page, content=text))
    figures = [*ROOT.glob("figures/*.png"), *ROOT.glob("studies/*/figures/*.png")]
    for path in sorted(figures):
        files.append(File(str(path.relative_to(ROOT)), str(ROOT), config["site_dir"],
                          config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, commands_reference())
    return markdown


def _role_as_code(match: re.Match) -> str:
    shorten, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if shorten else target}</code>"


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    return SPHINX_ROLE.sub(_role_as_code, html)
