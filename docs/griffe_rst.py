"""A griffe extension: the reST bits of our docstrings, as Markdown for mkdocstrings.

The package's docstrings use Sphinx roles (``:class:`~fto_async.X```) and ``::`` literal
blocks; mkdocstrings reads Markdown. This rewrites, per docstring, before rendering:

* ``:role:`~a.b.C``` and ``:role:`text <a.b.C>``` -> ``C`` / ``text`` in code;
* a paragraph ending in ``::`` followed by an indented block -> a fenced code block.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":[a-z]+:`(?:~?([^`<]*?)\s*<[^>]+>|~([\w.]+\.)?([^`]+)|([^`]+))`")


def _role(match: re.Match[str]) -> str:
    text = match.group(1) or match.group(3) or match.group(4) or ""
    return f"`{text.strip()}`"


def _literal_blocks(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and not line.strip().startswith(">>>"):
            head = line.rstrip()[:-2].rstrip()
            out.append(head + (":" if head and not head.endswith(":") else ""))
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            base = len(line) - len(line.lstrip())
            block: list[str] = []
            while j < len(lines) and (not lines[j].strip()
                                      or len(lines[j]) - len(lines[j].lstrip()) > base):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            if block:
                indent = min(len(b) - len(b.lstrip()) for b in block if b.strip())
                pad = " " * base
                code = re.search(r"\w\(|=|\bimport\b|\bawait\b|\$ ", "\n".join(block))
                lang = "python" if code and "──" not in "".join(block) else "text"
                out += ["", pad + "```" + lang, *(pad + b[indent:] for b in block),
                        pad + "```", ""]
                i = j
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


def markdown(text: str) -> str:
    """A docstring's reST roles and literal blocks as Markdown."""
    return _literal_blocks(_ROLE.sub(_role, text).replace("``", "`"))


class ReSTRoles(griffe.Extension):
    """Rewrite each docstring once it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **_: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
