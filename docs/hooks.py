"""MkDocs hook: the home page is README.md, with its links rewritten for the site.

README links `docs/x.md` become `x.md`. Links to files outside docs/ (README's `examples/`,
a guide's `../examples/x.py`) make sense in the repository but not on the site: they become
their plain text, on every page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"
_LINK = re.compile(r"\[([^\]]+)\]\((?!https?://|#|mailto:)([^)\s]+)\)")


def _rewrite(match: re.Match[str]) -> str:
    text, target = match.group(1), match.group(2)
    if target.startswith("docs/"):
        return f"[{text}]({target[len('docs/'):]})"
    return text


def _outside(match: re.Match[str]) -> str:
    text, target = match.group(1), match.group(2)
    return text if target.startswith("../") else match.group(0)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != "index.md":
        return _LINK.sub(_outside, markdown)
    return _LINK.sub(_rewrite, README.read_text(encoding="utf-8"))
