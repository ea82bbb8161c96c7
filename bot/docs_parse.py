"""Docs files to passages (pure): front matter, headings, code fences, MDX, reStructuredText.

A passage is a section of a few hundred tokens titled by its heading path ("Guide › Listeners
› Acknowledging requests"). What a docs site shows as a heading is a heading; what a code
block shows is code: a `# comment` inside a fence never starts a section, and no passage ends
inside a fence (a block longer than a passage is cut into fences closed and reopened).
HTML pages and reStructuredText arrive here already turned into Markdown (see html_docs.py
and rst_docs.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from bot.formatting import visible_text
from bot.rst_docs import (
    CODE_DIRECTIVES,
    SKIP_DIRECTIVES,
    directive_label,
    options_end,
    rst_to_markdown,
)

PASSAGE_CHARS = 2000  # about 450 tokens of English prose (tuned on the pip set, see bench/kb.py)
PATH_SEPARATOR = " › "
MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdx")
DOC_SUFFIXES = (*MARKDOWN_SUFFIXES, ".rst", ".txt", ".html", ".htm")
_NOT_DOCS = ("requirements", "constraints", "robots", "license", "licence", "cmakelists")

# A fence may be indented (inside a list item or an admonition); its body loses as much.
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,}|:{3,})(.*)$")
_ATX = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_ANCHOR = re.compile(r"\s*\{\s*#([^\s{}]*)[^}]*\}\s*$")  # {#id}; {#} says "no anchor"
_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
# A list item or a quote is never a setext heading's text ("- `A=1`" then "-": two items).
_BLOCK_START = re.compile(r"^\s*(?:[-*+>]|\d+[.)])(?:\s|$)")
_SHORTCODE = re.compile(r"\{\{[<%].*?[%>]\}\}")
_JSX_LINE = re.compile(r"^\s*(import\s.+\sfrom\s|export\s)")
_JSX_LABEL = re.compile(r'<TabItem\b[^<>]*?\blabel=["\']([^"\']+)["\'][^<>]*>')
_JSX_TAG = re.compile(r"</?[A-Z][\w.]*(\s[^<>]*)?/?>")
# mkdocstrings: "::: package.module" (VitePress's "::: tip" is a container, read as prose)
_MKDOCS_DIRECTIVE = re.compile(r"^\s*:::\s+[\w]+(?:\.[\w]+)+\s*$")
# MkDocs admonitions (!!! note "Title", ??? collapsible) and content tabs (=== "Label").
_ADMONITION = re.compile(
    r'^(\s*)(?:(?:!!!|\?\?\?\+?)\s*[\w-]+(?:\s+"([^"]*)")?|===\+?\s+"([^"]*)")\s*$')
_MYST_LABEL = re.compile(r"^\s*\([^()\n]+\)=\s*$")  # (wheel-caching)=, (vcs support)=
# What is left of a passage that only labels what is not there ("**Unix**\n\n**Windows**",
# "---"): no passage of its own.
_LABELS_ONLY = re.compile(r"\*\*[^*\n]*\*\*|[\s*_`#:.-]")
# A list item that opens with a code fence ("- ```"): the marker, then the fence under it.
_LIST_FENCE = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+((?:`{3,}|~{3,}).*)$")
# Inline HTML left in Markdown: tags go, their text stays (autolinks <https://…> stay).
_HTML_TAG = re.compile(r"</?(?!https?:)[A-Za-z][\w-]*(?:\s[^<>]*)?/?>")
# {doc}`text <target>`; not `{host}` in code nor --opt={name}
_MYST_ROLE = re.compile(r"(?<![`\w=])\{([a-z]+(?::[a-z-]+)?)\}`([^`<]*)(?:<[^`>]*>)?`")
_SLUG_DROP = re.compile(r"[^\w\- ]")


@dataclass(frozen=True)
class Section:
    """One passage: where it sits in the document, and its text."""

    path: tuple[str, ...]  # the heading path, document title first
    anchor: str  # the deepest heading's anchor ("" for text before any heading)
    text: str

    @property
    def heading(self) -> str:
        return PATH_SEPARATOR.join(self.path)


@dataclass(frozen=True)
class ParsedDoc:
    title: str
    url: str | None  # from front matter (`url`, `permalink`) or the HTML canonical link
    description: str | None
    sections: list[Section] = field(default_factory=list)


@dataclass
class _Block:
    """A paragraph or a code fence, under the heading path it belongs to."""

    path: tuple[str, ...]
    anchor: str
    text: str
    fence: str = ""  # the opening line when the block is code ("```python")


def parse_document(name: str, text: str, url: str | None = None) -> ParsedDoc:
    """A docs file by its name's suffix; plain text for anything unknown."""
    text = visible_text(text)  # a hidden instruction or a soft hyphen is not part of the docs
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in (".html", ".htm"):
        from bot.html_docs import html_page  # a module of its own: HTML is a parser's job

        page = html_page(text, url or name)
        doc = parse_markdown(page.markdown, page.title, page.description)
        return ParsedDoc(doc.title, page.canonical or url, doc.description, doc.sections)
    meta, body = front_matter(text)
    stem = PurePosixPath(name).stem
    if suffix == ".mdx":
        body = strip_jsx(body)
    if suffix == ".rst":
        body = rst_to_markdown(body)
    if suffix in (*MARKDOWN_SUFFIXES, ".rst"):
        title, blocks = markdown_blocks(body, meta.get("title"))
    else:
        title, blocks = meta.get("title") or _first_line(body) or stem, _paragraphs(body)
    title = title or title_from_name(stem)
    sections = passages(blocks, title)
    page_url = meta.get("url") or meta.get("permalink") or url
    return ParsedDoc(title, page_url, meta.get("description"), sections)


def title_from_name(stem: str) -> str:
    """A title for a page that has none: "getting-started" → "Getting started"."""
    words = stem.replace("-", " ").replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else "Untitled"


def is_doc_name(name: str) -> bool:
    """Whether a file is docs by its name: a docs suffix, and not one of the plain-text files
    that live beside docs without being any (pinned requirements, robots rules, licences)."""
    path = PurePosixPath(name.lower())
    if path.suffix not in DOC_SUFFIXES:
        return False
    return not (path.suffix == ".txt" and any(word in path.stem for word in _NOT_DOCS))


def decode_doc(raw: bytes) -> str | None:
    """A docs file's text: UTF-8 (with or without BOM), UTF-16 with a BOM (as some Windows
    editors save), else Windows-1252/Latin-1 as older editors write; None for a binary file
    (NUL bytes), which is not docs whatever its name."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with its byte order mark
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError:
            return None
        return None if "\x00" in text[:4096] else text
    if b"\x00" in raw[:8192]:
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError:
            return raw.decode("latin-1")


def parse_markdown(markdown: str, title: str, description: str | None = None) -> ParsedDoc:
    """A page already turned into Markdown (an HTML page of a docs site)."""
    doc_title, blocks = markdown_blocks(markdown, None)
    # The page's own heading, not <title>, which sites suffix with their name ("… | Acme").
    title = doc_title or title or "Untitled page"
    return ParsedDoc(title, None, description, passages(blocks, doc_title or title))


def front_matter(text: str) -> tuple[dict[str, str], str]:
    """YAML (---) or TOML (+++) front matter's top-level scalars, and the text after it."""
    text = text.lstrip("\ufeff")
    for mark, sep in (("---", ":"), ("+++", "=")):
        if not text.startswith(mark + "\n"):
            continue
        end = text.find("\n" + mark, len(mark))
        if end < 0:
            break
        meta: dict[str, str] = {}
        for line in text[len(mark) + 1 : end].splitlines():
            key, found, value = line.partition(sep)
            if found and key and not key[0].isspace():
                meta[key.strip().lower()] = value.strip().strip("'\"")
        rest = text[end + len(mark) + 1 :]
        return {k: v for k, v in meta.items() if v}, rest.lstrip("\n")
    return {}, text


def strip_jsx(text: str) -> str:
    """MDX as Markdown: import/export lines and component tags go, their children stay."""
    out: list[str] = []
    for line, in_code in _lines_with_fences(text):
        if in_code:
            out.append(line)
        elif not _JSX_LINE.match(line):
            line = _JSX_LABEL.sub(lambda m: f"**{m.group(1)}**", line)  # a tab's name stays
            out.append(_JSX_TAG.sub("", line))
    return "\n".join(out)


def heading_text(raw: str) -> tuple[str, str]:
    """A heading's words and its anchor: `{#anchor}` is kept for the link, not the title;
    without one, the anchor generators give the title, but `{#}` (an HTML heading with no
    id) means the page has none to link to."""
    match = _ANCHOR.search(raw)
    title = _ANCHOR.sub("", raw).strip()
    title = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", title)  # [text](link) → text
    # Tags go, but not from `code` ("Why does `<class 'X'>` fail?" keeps its words); then
    # the title names the code in plain words.
    title = _without_tags(title).replace("`", "")
    title = re.sub(r"(\*\*|__)(.+?)\1|(?<!\w)([*_])(\S(?:.*?\S)?)\3(?!\w)", r"\2\4", title)
    title = re.sub(r"\[([^\]]+)\]\[[^\]]*\]", r"\1", title).strip()  # [text][ref] → text
    if match:
        return title, match.group(1)
    return title, slug(title)


def slug(title: str) -> str:
    """The anchor most docs generators give a heading (lower case, hyphens)."""
    return "-".join(_SLUG_DROP.sub("", title.lower().replace("`", "")).split())


def markdown_blocks(text: str, title: str | None) -> tuple[str, list[_Block]]:
    """The document title and its paragraphs and code blocks, each with its heading path."""
    stack: list[tuple[int, str, str]] = []  # (level, title, anchor)
    blocks: list[_Block] = []
    para: list[str] = []
    code: list[str] | None = None
    fence = ""
    doc_title = title

    def path() -> tuple[str, ...]:
        return tuple(t for _, t, _ in stack)

    def anchor() -> str:
        return stack[-1][2] if stack else ""

    def flush() -> None:
        joined = "\n".join(para).strip()
        if joined:
            blocks.append(_Block(path(), anchor(), joined))
        para.clear()

    def heading(level: int, raw: str) -> None:
        nonlocal doc_title
        flush()
        words, mark = heading_text(raw)
        if not words:
            return
        if doc_title is None and level == 1:
            doc_title = words
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, words, mark))

    lines = _clean_lines(text)
    indent = 0  # of the open fence's opening line
    for index, line in enumerate(lines):
        opened = _FENCE.match(line)
        if code is not None:
            code.append(_unindent(line, indent))
            if opened and _closes(fence, opened, indent):
                blocks.extend(_fence_blocks(path(), anchor(), fence, code))
                code = None
            continue
        if opened:
            flush()
            fence, code, indent = line.strip(), [], len(opened.group(1))
            continue
        atx = _ATX.match(line)
        if atx:
            heading(len(atx.group(1)), atx.group(2))
        elif _SETEXT.match(line) and para and index > 0 and lines[index - 1].strip() \
                and not _BLOCK_START.match(para[-1]):
            raw = para.pop()
            heading(1 if line.strip()[0] == "=" else 2, raw)
        elif not line.strip():
            flush()
        else:
            para.append(line)
    if code is not None:  # an unclosed fence runs to the end of the file
        code.append(fence[: _fence_mark_length(fence)])
        blocks.extend(_fence_blocks(path(), anchor(), fence, code))
    flush()
    return doc_title or "", blocks


def _unindent(line: str, width: int) -> str:
    """The line without up to `width` leading spaces."""
    return line[min(width, len(line) - len(line.lstrip(" "))) :]


def _clean_lines(text: str) -> list[str]:
    """Lines without site-generator markup: Hugo shortcodes, HTML comments, MyST labels and
    roles, MkDocs API directives (with their options), and admonition and content-tab
    openers (their indented content stays, dedented, code included)."""
    out: list[str] = []
    indent: str | None = None  # of an admonition's or a content tab's body
    skip: str | None = None  # of a mkdocstrings directive's options
    for line, in_code in _lines_with_fences(_list_fences(_strip_comments(text))):
        if skip is not None:
            if not line.strip() or line.startswith(skip):
                continue
            skip = None
        if indent is not None:
            if line.startswith(indent):
                line = line[len(indent) :]
            elif line.strip():
                indent = None
        if in_code:
            out.append(line)
            continue
        line = _SHORTCODE.sub("", line)
        if _MKDOCS_DIRECTIVE.match(line):
            skip = (indent or "") + line[: len(line) - len(line.lstrip())] + " "
            continue
        if _MYST_LABEL.match(line):
            continue
        admonition = _ADMONITION.match(line)
        if admonition:
            indent = admonition.group(1) + "    "
            label = admonition.group(2) or admonition.group(3)
            out.append(f"**{label}**" if label else "")
            continue
        line = _MYST_ROLE.sub(_myst_role, line)
        if "<" in line:
            line = _without_tags(line)
        out.append(line)
    return out


def _list_fences(text: str) -> str:
    """"- ```yaml" as a list item whose content is a fence: the fence on its own line, at
    the item's content indent, so it is read as code (and its closing line closes it)."""
    if "```" not in text and "~~~" not in text:
        return text
    out: list[str] = []
    for line in text.splitlines():
        match = _LIST_FENCE.match(line)
        if match:
            lead, marker, fence = match.groups()
            out += [f"{lead}{marker}", " " * (len(lead) + len(marker) + 1) + fence]
        else:
            out.append(line)
    return "\n".join(out)


def _without_tags(line: str) -> str:
    """A prose line without inline HTML tags (outside `code`): <summary>Why</summary> reads
    as **Why**, other tags as nothing."""
    parts = re.split(r"(`+[^`]*`+)", line)
    for index in range(0, len(parts), 2):
        part = re.sub(r"<summary>(.*?)</summary>", r"**\1**", parts[index])
        parts[index] = _HTML_TAG.sub("", part)
    return "".join(parts)


def _strip_comments(text: str) -> str:
    """Markdown without HTML comment blocks (a line starting `<!-- TODO …` up to its `-->`).
    A `<!--` inside a line (`<!--more-->` quoted in prose) or one never closed is text."""
    if "<!--" not in text:
        return text
    lines = list(_lines_with_fences(text))
    out: list[str] = []
    index = 0
    while index < len(lines):
        line, in_code = lines[index]
        start = line.lstrip()
        if in_code or not start.startswith("<!--"):
            out.append(line)
            index += 1
            continue
        end = next((j for j in range(index, len(lines))
                    if "-->" in (lines[j][0] if j > index else start[4:])), None)
        if end is None:
            out.append(line)
            index += 1
            continue
        rest = lines[end][0].split("-->", 1)[1] if end > index else start[4:].split("-->", 1)[1]
        if rest.strip():
            out.append(rest)
        index = end + 1
    return "\n".join(out)


def _myst_role(match: re.Match[str]) -> str:
    role, text = match.group(1), match.group(2).strip()
    if role == "pep":
        return f"PEP {text}"
    return f"`{text}`" if role in ("file", "code", "command", "kbd", "samp") else text


def _lines_with_fences(text: str) -> Iterator[tuple[str, bool]]:
    """Each line, and whether it is inside a code fence (fence lines count as inside)."""
    fence, indent = "", 0
    for line in text.splitlines():
        opened = _FENCE.match(line)
        if fence:
            if opened and _closes(fence, opened, indent):
                fence = ""
            yield line, True
        elif opened and not opened.group(2).startswith(":"):
            fence, indent = line.strip(), len(opened.group(1))
            yield line, True
        else:
            yield line, False


def _fence_mark_length(fence: str) -> int:
    return len(fence) - len(fence.lstrip(fence[0]))


def _closes(fence: str, line: re.Match[str], indent: int) -> bool:
    """Whether the fence line closes `fence` (opened `indent` spaces in): the same mark, as
    long, nothing after it, and no deeper than the opener's body (an indented ``` inside the
    block is an example of a fence, not the end of this one)."""
    mark = line.group(2)
    long_enough = len(mark) >= _fence_mark_length(fence)
    shallow = len(line.group(1)) <= indent + 3
    return mark[0] == fence[0] and long_enough and shallow and not line.group(3).strip()


def _fence_blocks(
    path: tuple[str, ...], anchor: str, fence: str, lines: list[str]
) -> list[_Block]:
    """A fenced block: code stays code; a MyST directive such as ```{note} or :::{tip}, or a
    Docusaurus :::tip, is prose, so its content joins the text under its label (a tab's
    name, an admonition's title, "New in version 2.1"); code-block directives stay code."""
    body = lines[:-1] if lines else []
    info = fence.lstrip(fence[0]).strip()
    directive = re.match(r"\{([\w:-]+)\}\s*(.*)", info)
    if fence[0] == ":" and not directive and info:  # :::tip Title, :::tip[Title], ::: tip
        directive = re.match(r"([\w-]+)\s*\[?([^\]]*)\]?", info)
    if directive and directive.group(1) in SKIP_DIRECTIVES:
        return []  # {toctree}, {image}, {include}…: they point elsewhere
    if directive and directive.group(1) == "eval-rst":
        _, inner = markdown_blocks(rst_to_markdown("\n".join(body)), "")
        return [_Block(path + b.path, b.anchor or anchor, b.text, b.fence) for b in inner]
    if directive and directive.group(1) not in CODE_DIRECTIVES:
        content = _without_options(body)
        label = directive_label(directive.group(1), directive.group(2).strip())
        _, inner = markdown_blocks("\n".join([label, ""] if label else []) + "\n".join(content), "")
        return [_Block(path + b.path, b.anchor or anchor, b.text, b.fence) for b in inner]
    if directive:
        fence = fence[: _fence_mark_length(fence)] + directive.group(2).strip()
    if fence[0] == ":":
        fence = "```" + fence.lstrip(":")
    return [_Block(path, anchor, "\n".join(body), fence=fence)]


def _without_options(body: list[str]) -> list[str]:
    """A MyST directive's content without its options: ":key: value" lines right under the
    opening line, or a "---"-fenced YAML block there."""
    start = 0
    if body and body[0].strip() == "---":
        end = next((i for i in range(1, len(body)) if body[i].strip() == "---"), None)
        start = end + 1 if end is not None else 0
    return body[options_end(body, start):]


def _paragraphs(text: str) -> list[_Block]:
    return [_Block((), "", p.strip()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:100]


def passages(blocks: Sequence[_Block], title: str) -> list[Section]:
    """Blocks packed into passages of about PASSAGE_CHARS, never across a heading, never
    ending inside a fence."""
    out: list[Section] = []
    parts: list[str] = []
    size = 0
    current: tuple[tuple[str, ...], str] | None = None

    def emit() -> None:
        nonlocal size
        text = "\n\n".join(parts)
        if parts and current is not None and _LABELS_ONLY.sub("", text):
            out.append(Section(_full_path(current[0], title), current[1], text))
        parts.clear()
        size = 0

    for block in blocks:
        if current != (block.path, block.anchor):
            emit()
            current = (block.path, block.anchor)
        for piece in _pieces(block):
            if parts and size + len(piece) + 2 > PASSAGE_CHARS:
                emit()
            parts.append(piece)
            size += len(piece) + 2
    emit()
    return out


def _full_path(path: tuple[str, ...], title: str) -> tuple[str, ...]:
    return path if path and path[0] == title else (title, *path)


def _pieces(block: _Block) -> list[str]:
    """The block as pieces no longer than a passage: prose by sentences, code by lines with
    each piece fenced on its own."""
    if not block.fence:
        if len(block.text) <= PASSAGE_CHARS:
            return [block.text]
        sentences = re.split(r"(?<=[.!?])\s+", block.text)
        return _packed(sentences, " ", PASSAGE_CHARS)
    close = block.fence[: _fence_mark_length(block.fence)]
    room = PASSAGE_CHARS - len(block.fence) - len(close) - 2
    chunks = _packed(block.text.split("\n"), "\n", room) or [""]
    return [f"{block.fence}\n{chunk}\n{close}" for chunk in chunks]


def _packed(items: Sequence[str], joiner: str, limit: int) -> list[str]:
    """Items joined into strings of at most `limit` characters; an over-long item is cut."""
    out: list[str] = []
    current = ""
    for item in items:
        while len(item) > limit:
            if current:
                out.append(current)
                current = ""
            out.append(item[:limit])
            item = item[limit:]
        candidate = f"{current}{joiner}{item}" if current else item
        if current and len(candidate) > limit:
            out.append(current)
            candidate = item
        current = candidate
    if current:
        out.append(current)
    return out
