"""reStructuredText as Markdown, for the docs parser: titles by their underline styles, code
directives and literal blocks as fences, described objects (confval, envvar, function…) as
entries with Sphinx's anchors, roles and hyperlinks as their text, and prose directives
(note, tab, only, versionadded…) as their content under a label. Pure functions.
"""

from __future__ import annotations

import re

_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:._])\1{2,}\s*$")
_RST_ROLE = re.compile(r":[\w:-]+:`([^`<]*?)\s*(?:<[^`>]*>)?`")
_RST_LITERAL = re.compile(r"(``.+?``)")
# `text <https://…>`_ and `name`_ (hyperlinks and references): their text
_RST_REFERENCE = re.compile(r"`([^`<]+?)\s*<[^`>]*>`__?(?![\w`])|`([^`<]+)`__?(?![\w`])")
_RST_FIELD = re.compile(r"^:(orphan|tocdepth|nosearch|hide-toc|hide-navigation)\b.*$")
# A role or a hyperlink wrapped onto the next line of its paragraph
_RST_WRAPPED = re.compile(
    r":[\w:-]+:`[^`\n]+\n[ \t]*[^`\n]+`|(?<![`\w])`[^`\n]+\n[ \t]*[^`\n]*<[^`>\n]+>`_")
_RST_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:-]+)::\s*(.*)$")
CODE_DIRECTIVES = frozenset({"code-block", "code", "sourcecode", "literalinclude", "prompt"})
_SKIP_DIRECTIVES = frozenset({"toctree", "image", "figure", "include", "raw", "contents",
                              "automodule", "autoclass", "autofunction", "autodata", "meta",
                              "tab-set-code", "literalinclude", "highlight", "currentmodule",
                              "module", "index"})
# Sphinx object descriptions: each is a titled, linkable entry of its page (std and Python
# domains; a domain prefix such as "py:" is allowed).
_OBJECT_DIRECTIVES = frozenset({
    "confval", "envvar", "option", "cmdoption", "describe", "object", "function", "class",
    "method", "attribute", "data", "exception", "decorator", "property"})
_ANCHORED_OBJECTS = _OBJECT_DIRECTIVES - {"option", "cmdoption", "describe", "object"}


_VERSION_NOTES = {"versionadded": "New in version", "versionchanged": "Changed in version",
                  "deprecated": "Deprecated since version", "versionremoved": "Removed in version"}
# Directives whose argument names what follows (a title, a tab's name); other directives'
# arguments are targets or options (``.. pip-command-usage:: download``), not text.
_LABELLED = frozenset({"admonition", "tab", "tab-item", "topic", "sidebar", "rubric",
                       "dropdown", "card", "note", "tip", "warning", "important", "caution",
                       "attention", "danger", "error", "hint", "seealso", "info", "success",
                       "question", "example", "quote", "abstract", "bug", "failure", "todo"})


def directive_label(name: str, argument: str) -> str:
    """The line a prose directive's content is shown under, or "" when it has none."""
    name = name.split(":")[-1]
    if name in _VERSION_NOTES and argument:
        version, _, note = argument.partition(" ")
        return f"*{_VERSION_NOTES[name]} {version}*" + (f": {note}" if note else ".")
    return f"**{argument}**" if argument and name in _LABELLED else ""


def rst_to_markdown(text: str, level: int = 0) -> str:
    """reStructuredText as Markdown: underlined (and overlined) titles become `#` headings in
    the order their styles first appear; literal blocks and code directives become fences;
    a described object (``.. confval:: name``, ``.. envvar::``, ``.. function::``…) becomes
    a heading one level down, with Sphinx's anchor; roles keep their text; directives that
    only point elsewhere are dropped. `level`: that of the title the text sits under."""
    text = _RST_WRAPPED.sub(lambda m: " ".join(m.group(0).split()), text)
    lines = [line for line in text.splitlines() if not _RST_FIELD.match(line)]
    styles: list[str] = []
    out: list[str] = []
    i = 0
    while i < len(lines) and len(out) < 10 * len(lines) + 10:
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        over = _RST_UNDERLINE.match(line)
        if over and i + 2 < len(lines) and _RST_UNDERLINE.match(lines[i + 2]) and nxt.strip():
            level = _rst_level("o" + over.group(1), styles)  # titles start a new scale
            out.append(_markdown_heading(level, _rst_inline(nxt.strip(), code=False)))
            i += 3
            continue
        under = _RST_UNDERLINE.match(nxt)
        if line.strip() and under and not line.startswith(" ") and len(nxt.rstrip()) >= len(
            line.rstrip()
        ) and not _RST_UNDERLINE.match(line):
            level = _rst_level(under.group(1), styles)
            out.append(_markdown_heading(level, _rst_inline(line.strip(), code=False)))
            i += 2
            continue
        directive = _RST_DIRECTIVE.match(line)
        if directive or line.rstrip().endswith("::") and not line.strip().startswith(".."):
            i = _rst_block(lines, i, directive, out, level)
            continue
        if line.strip().startswith(".. ") or line.strip() == "..":
            i = _skip_indented(lines, i + 1)  # comments, link targets, substitutions
            continue
        out.append(_rst_inline(line))
        i += 1
    return "\n".join(out)


def _rst_inline(text: str, code: bool = True) -> str:
    """Roles keep their text (as code, or plain in a title); an inline literal (``x``, also
    code in Markdown) is left as it is, so ``:issue:`` stays text and never turns into an
    empty ```` that would read as a code fence."""
    parts = _RST_LITERAL.split(text)
    for index in range(0, len(parts), 2):  # the even parts are outside literals
        part = _RST_ROLE.sub(lambda m: f"`{m.group(1)}`" if code else m.group(1), parts[index])
        parts[index] = _RST_REFERENCE.sub(lambda m: m.group(1) or m.group(2), part)
    return "".join(parts)


def _rst_level(style: str, styles: list[str]) -> int:
    if style not in styles:
        styles.append(style)
    return styles.index(style) + 1


def _markdown_heading(level: int, title: str, anchor: str = "") -> str:
    mark = f" {{#{anchor}}}" if anchor else ""
    return "\n" + "#" * min(level, 6) + " " + title + mark + "\n"


def _rst_block(
    lines: list[str], i: int, directive: re.Match[str] | None, out: list[str], level: int
) -> int:
    """A directive or a `::` literal block at lines[i]; returns the index after it."""
    end = _skip_indented(lines, i + 1)
    body = lines[i + 1 : end]
    content = _dedent([line for line in body if not re.match(r"^\s+:[\w-]+:", line)])
    if directive is None:  # "text::" then an indented literal block
        out.append(_rst_inline(lines[i].rstrip()[:-1]))
        out.extend(["", "```", *content, "```", ""])
        return end
    name, argument = directive.group(2), directive.group(3).strip()
    kind = name.split(":")[-1]
    if kind in _OBJECT_DIRECTIVES and argument:
        target = argument.split("(")[0].split()[0] if kind in _ANCHORED_OBJECTS else ""
        anchor = f"{kind}-{target}" if kind in ("confval", "envvar") else target
        out.append(_markdown_heading(level + 1, argument, anchor))
        out.extend([*rst_to_markdown("\n".join(content), level + 1).splitlines(), ""])
    elif name in CODE_DIRECTIVES and name != "literalinclude":
        out.extend(["", "```" + argument.split(" ")[0], *content, "```", ""])
    elif name not in _SKIP_DIRECTIVES:  # note, tab, only, warning…: prose (and code) inside
        label = directive_label(name, _rst_inline(argument))
        out.extend(["", label, *rst_to_markdown("\n".join(content), level).splitlines(), ""])
    return end


def _skip_indented(lines: list[str], start: int) -> int:
    """The index of the first line after the indented (or blank) block starting at start."""
    i = start
    while i < len(lines) and (not lines[i].strip() or lines[i][:1] in (" ", "\t")):
        i += 1
    while i > start and not lines[i - 1].strip():
        i -= 1
    return i


def _dedent(lines: list[str]) -> list[str]:
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents) if indents else 0
    body = [line[cut:] for line in lines]
    while body and not body[0].strip():
        body.pop(0)
    while body and not body[-1].strip():
        body.pop()
    return body
