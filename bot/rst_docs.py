"""reStructuredText as Markdown, for the docs parser: titles by their underline styles, code
directives and literal blocks as fences, described objects (confval, envvar, function…) as
entries with Sphinx's anchors, roles and hyperlinks as their text, and prose directives
(note, tab, only, versionadded…) as their content under a label. Pure functions.
"""

from __future__ import annotations

import re

_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:._])\1{2,}\s*$")
# Role names have at most one inner colon (:py:func:), so a line of "a:a:a:…" cannot make
# the match try every split; the text is taken greedily and stripped after, for the same
# reason (no lazy group beside \s*: both are linear on a line with no closing backtick).
_ROLE_NAME = r":[\w-]+(?::[\w-]+)?:"
_RST_ROLE = re.compile("(" + _ROLE_NAME + r")`([^`<]*)(?:<[^`>]*>)?`")
_SHOWN_AS = {"pep": "PEP ", "issue": "#", "pull": "#", "gh": "#", "user": "@"}
_PLAIN_ROLES = frozenset({"ref", "doc", "term", "any", "abbr", "sup", "sub", "numref"})
_RST_ESCAPE = re.compile(r"\\([^\w\s])")  # \* \, \_ : the character itself
_RST_LITERAL = re.compile(r"(``.+?``)")
# `text <https://…>`_ and `name`_ (hyperlinks and references): their text
_RST_REFERENCE = re.compile(r"`([^`<]+)<[^`>]*>`__?(?![\w`])|`([^`<]+)`__?(?![\w`])")
_RST_FIELD = re.compile(r"^:(orphan|tocdepth|nosearch|hide-toc|hide-navigation)\b.*$")
# A role or a hyperlink wrapped onto the next line of its paragraph
_RST_WRAPPED = re.compile(
    _ROLE_NAME + r"`[^`\n]+\n[^`\n]+`|(?<![`\w])`[^`\n]+\n[^`\n]*<[^`>\n]+>`_")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+•]|\d+[.)]|#\.)\s+")
_NOT_HTML = re.compile(r"^(?!.*\bnot\b).*\b(latex|texinfo|man|epub|text)\b")  # .. only::
_RST_OPTION = re.compile(r"^\s*:([\w-]+):(?=\s|$)")
_RST_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:-]+)::\s*(.*)$")
CODE_DIRECTIVES = frozenset({"code-block", "code", "sourcecode", "literalinclude", "prompt"})
SKIP_DIRECTIVES = frozenset({"toctree", "image", "figure", "include", "raw", "contents",
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


MAX_NESTING = 8  # directives inside directives deeper than this are read as plain text


def rst_to_markdown(
    text: str, level: int = 0, depth: int = 0, styles: list[str] | None = None
) -> str:
    """reStructuredText as Markdown: underlined (and overlined) titles become `#` headings in
    the order their styles first appear; literal blocks and code directives become fences;
    a described object (``.. confval:: name``, ``.. envvar::``, ``.. function::``…) becomes
    a heading one level down, with Sphinx's anchor; roles keep their text; directives that
    only point elsewhere are dropped. `level`: that of the title the text sits under; `depth`:
    how many directives the text is inside; `styles`: the title styles of the page so far
    (a title inside a directive keeps the page's levels)."""
    if depth > MAX_NESTING:
        return text
    text = _RST_WRAPPED.sub(lambda m: " ".join(m.group(0).split()), text)
    lines = [line for line in text.splitlines() if not _RST_FIELD.match(line)]
    styles = [] if styles is None else styles
    out: list[str] = []
    section = ""  # the last title, given back after a described object's entry
    i = 0
    while i < len(lines) and len(out) < 10 * len(lines) + 10:
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        over = _RST_UNDERLINE.match(line)
        if over and i + 2 < len(lines) and _RST_UNDERLINE.match(lines[i + 2]) and nxt.strip():
            level = _rst_level("o" + over.group(1), styles)  # titles start a new scale
            section = _markdown_heading(level, _rst_inline(nxt.strip(), code=False))
            out.append(section)
            i += 3
            continue
        under = _RST_UNDERLINE.match(nxt)
        # (docutils takes an underline shorter than its title too, with a warning)
        if line.strip() and under and not line.startswith(" ") and not _RST_UNDERLINE.match(
            line
        ) and not _RST_DIRECTIVE.match(line):
            level = _rst_level(under.group(1), styles)
            section = _markdown_heading(level, _rst_inline(line.strip(), code=False))
            out.append(section)
            i += 2
            continue
        directive = _RST_DIRECTIVE.match(line)
        if directive or line.rstrip().endswith("::") and not line.strip().startswith(".."):
            i = _rst_block(lines, i, directive, out, (level, section, depth, styles))
            continue
        if line.strip().startswith(".. ") or line.strip() == "..":
            i = _skip_indented(lines, i + 1, _indent(line))  # comments, targets, substitutions
            continue
        line = re.sub(r"^(\s*)#\.(\s)", r"\g<1>1.\2", line)  # an auto-numbered item
        out.append(re.sub(r"(?<=\S) {3,}", "  ", _rst_inline(line)))  # table padding
        i += 1
    return "\n".join(out)


def _rst_inline(text: str, code: bool = True) -> str:
    """Roles keep their text (as code, or plain in a title); an inline literal (``x``, also
    code in Markdown) is left as it is, so ``:issue:`` stays text and never turns into an
    empty ```` that would read as a code fence."""
    parts = _RST_LITERAL.split(text)
    for index in range(0, len(parts), 2):  # the even parts are outside literals
        part = _RST_ROLE.sub(lambda m: _role_text(m, code), parts[index])
        part = _RST_REFERENCE.sub(lambda m: (m.group(1) or m.group(2)).strip(), part)
        parts[index] = _RST_ESCAPE.sub(r"\1", part.replace("\\ ", ""))
    return "".join(parts)


def _role_text(match: re.Match[str], code: bool) -> str:
    """What a role shows: PEP 517, #1316 (an issue), @name (a user); ~a.b.C shows C."""
    role, text = match.group(1).strip(":").split(":")[-1], match.group(2).strip()
    if role in _SHOWN_AS:
        return _SHOWN_AS[role] + text
    if text.startswith("~"):
        text = text[1:].rsplit(".", 1)[-1]
    return f"`{text}`" if code and role not in _PLAIN_ROLES else text


def _rst_level(style: str, styles: list[str]) -> int:
    if style not in styles:
        styles.append(style)
    return styles.index(style) + 1


def _markdown_heading(level: int, title: str, anchor: str = "") -> str:
    mark = f" {{#{anchor}}}" if anchor else ""
    return "\n" + "#" * min(level, 6) + " " + title + mark + "\n"


def _rst_block(
    lines: list[str], i: int, directive: re.Match[str] | None, out: list[str],
    where: tuple[int, str, int, list[str]],
) -> int:
    """A directive or a `::` literal block at lines[i]; returns the index after it. `where`:
    the level and heading line of the section it is in, how deep in directives, and the
    page's title styles."""
    level, section, depth, styles = where
    end = _skip_indented(lines, i + 1, _content_indent(lines[i]))
    body = _dedent(lines[i + 1 : end])
    if directive is None:  # "text::" then an indented literal block
        intro = lines[i].rstrip()
        intro = intro[:-2].rstrip() if intro[:-2].endswith(" ") or not intro[:-2].strip() \
            else intro[:-1]
        if intro.strip():
            out.append(_rst_inline(intro))
        out.extend(["", _fence_for(body), *body, _fence_for(body), ""])
        return end
    options = options_end(body)  # ":linenos:", ":type: int": right under the directive line
    content = body[options:]
    name, argument = directive.group(2), directive.group(3).strip()
    kind = name.split(":")[-1]
    if kind in _OBJECT_DIRECTIVES and argument and level:
        target = argument.split("(")[0].split()[0] if kind in _ANCHORED_OBJECTS else ""
        anchor = f"{kind}-{target}" if kind in ("confval", "envvar") else target
        out.append(_markdown_heading(level + 1, argument, anchor))
        facts = [_RST_OPTION.sub(lambda m: f"{m.group(1).capitalize()}:", line)
                 for line in body[:options]
                 if _RST_OPTION.sub("", line).strip()]  # a setting's type and default
        out.extend([*facts, "", *rst_to_markdown("\n".join(content), level + 1,
                                                 depth + 1).splitlines(), ""])
        if section:  # what follows the entry's body belongs to the section again
            out.append(section)
    elif name == "only" and _NOT_HTML.match(argument):
        pass  # what only the PDF or man pages show; the HTML branch has the same
    elif name in CODE_DIRECTIVES and name != "literalinclude":
        fence = _fence_for(content)
        out.extend(["", fence + argument.split(" ")[0], *content, fence, ""])
    elif name not in SKIP_DIRECTIVES:  # note, tab, only, warning…: prose (and code) inside
        label = directive_label(name, _rst_inline(argument))
        out.extend(["", label, *rst_to_markdown("\n".join(content), level, depth + 1,
                                                styles).splitlines(), ""])
    return end


def options_end(body: list[str], start: int = 0) -> int:
    """Where a directive's body starts after its options (":key: value" lines from `start`
    on, in rst and in MyST alike); a line further down that starts with a role is text."""
    while start < len(body) and _RST_OPTION.match(body[start]):
        start += 1
    return start


def _fence_for(code: list[str]) -> str:
    """A fence longer than any run of backticks in the code, so the code cannot close it."""
    longest = max((len(run) for line in code for run in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _content_indent(line: str) -> int:
    """Where a line's text starts: after a list marker ("- ", "1. ") when it has one, so a
    literal block ending a list item's line is the block indented under the item's text."""
    marker = _LIST_MARKER.match(line)
    return len(marker.group(0)) if marker else _indent(line)


def _skip_indented(lines: list[str], start: int, indent: int = 0) -> int:
    """The index of the first line after the block starting at start: blank lines and lines
    indented deeper than `indent` (the directive's own indentation)."""
    i = start
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
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
