"""SQL scripts (``query_artifacts.sql``): split into statements, keeping each one's comments.

A statement's comment block is its title in `meshinsights sql` output; a ``-- requires: a, b``
line names the views it needs, so a script written for every pipeline still runs on a store
that has only some of them (the statement is skipped with a note).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

__all__ = ["Statement", "StatementResult", "split_statements"]

_REQUIRES = re.compile(r"^\s*--\s*requires\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Statement:
    """One statement of a script, with the comment lines before it and its ``requires``."""

    sql: str
    comment: str = ""
    requires: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        """The comment block right above the statement (directives left out), on one line, or ""."""
        block: list[str] = []
        for line in self.comment.splitlines():
            text = line.strip().lstrip("-").strip()
            if not text:
                block = []  # a blank comment line ends a block; keep the last one
            elif not text.lower().startswith("requires:"):
                block.append(text)
        title = " ".join(block)
        return title if len(title) <= 160 else title[:157] + "..."

    @property
    def label(self) -> str:
        """The title, or the statement's first line when it has no comment."""
        return self.title or self.sql.splitlines()[0][:80]


def split_statements(text: str) -> list[Statement]:
    """Split a script on ``;`` outside quotes and comments; keep each statement's comments.

    A ``-- requires: a, b`` line before a statement names the views it needs; the runner skips
    the statement, with a note, when one of them is not in the store.
    """
    chunks: list[str] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in ("'", '"'):
            j = text.find(ch, i + 1)
            while j != -1 and j + 1 < n and text[j + 1] == ch:  # doubled quote = escaped
                j = text.find(ch, j + 2)
            j = n - 1 if j == -1 else j
            buf.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j == -1 else j
            buf.append(text[i:j])
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j == -1 else j + 2
            buf.append(text[i:j])
            i = j
        elif ch == ";":
            chunks.append("".join(buf))
            buf = []
            i += 1
        else:
            buf.append(ch)
            i += 1
    chunks.append("".join(buf))
    return [s for s in (_statement(c) for c in chunks) if s is not None]


def _statement(chunk: str) -> Statement | None:
    lines = chunk.strip("\n").splitlines()
    comment: list[str] = []
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        comment.append(lines.pop(0))
    sql = "\n".join(lines).strip()
    if not sql:
        return None
    requires = tuple(
        name.strip()
        for match in _REQUIRES.findall("\n".join(comment))
        for name in match.split(",")
        if name.strip()
    )
    # Blank lines become empty comment lines: they separate a file header from a title.
    text = "\n".join(c.strip() if c.strip() else "--" for c in comment).strip()
    return Statement(sql=sql, comment=text, requires=requires)


@dataclass
class StatementResult:
    """What running one statement gave: a table, nothing (DDL), or a skip with its reason."""

    statement: Statement
    table: pa.Table | None = None
    skipped: str | None = None
