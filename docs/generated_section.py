"""One generated section of a Markdown page, between two markers: rewrite it, or check that it is current.

Shared by docs/recipe_reference.py (README's recipe reference) and docs/cli_reference.py
(docs/cli.md's command reference), so "generated from the code" means the same in both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence


def replace_section(text: str, start: str, end: str, rendered: str, page: str) -> str:
    """``text`` with everything from ``start`` to ``end`` (markers included) replaced by ``rendered``."""
    if start not in text or end not in text:
        raise SystemExit(f"{page} has no generated-section markers ({start!r} ... {end!r})")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + rendered + tail


def main(page: Path, update: Callable[[str], str], stale: str, description: str,
         argv: Sequence[str] | None = None) -> int:
    """``--check``: exit 1 (printing ``stale``) when ``page`` differs from ``update(page)``; else rewrite it."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help=f"only compare; exit 1 when {page.name} is stale")
    args = parser.parse_args(argv)
    text = page.read_text(encoding="utf-8")
    new = update(text)
    if args.check:
        if new != text:
            print(stale, file=sys.stderr)
            return 1
        return 0
    page.write_text(new, encoding="utf-8")
    return 0
