"""What a docs web page says: its title, canonical URL, description, links and main text.

Pure (no I/O) and built on the stdlib html.parser, so it copes with the broken HTML real sites
serve. The page is first read into a small tree, closing what authors leave open, because the
main content (<main>, else <article>, else role=main, else <body>) can only be chosen once the
whole page is read; only that part becomes Markdown, without the site's menus and footers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit

# Deeper elements are flattened into their parent, which bounds the renderer's recursion.
MAX_NESTING = 200
_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
# Site chrome and things that are not text. A <header> inside the main content is kept: there it
# holds the page's own title (<article><header><h1>), not the site's banner.
_DROPPED = frozenset(
    "script style nav header footer aside form noscript template head title svg button".split()
)
_PERMALINK_CLASSES = frozenset({"headerlink", "hash-link"})  # Sphinx/MkDocs, Docusaurus
_CONTENT = frozenset({"main", "article"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_BLOCKS = frozenset(
    "address article aside blockquote body caption center dd details dialog div dl dt fieldset "
    "figcaption figure hr html main p section summary table tbody thead tfoot tr".split()
)
# The open elements a start tag ends, as browsers do: <li>one<li>two, <h2>Unclosed<h3>Next
_ENDS = {"li": {"li"}, "dt": {"dt", "dd"}, "dd": {"dt", "dd"}, "tr": {"tr", "td", "th"},
         "td": {"td", "th"}, "th": {"td", "th"}, "option": {"option"},
         **{heading: _HEADINGS for heading in _HEADINGS}}
_SPACE = re.compile(r"\s+")
_LANGUAGE = re.compile(r"\b(?:language|lang)-([\w+#.-]+)")
_BREAK = "\x00"  # a <br> inside a paragraph, until the paragraph is written


@dataclass(frozen=True)
class HtmlDoc:
    title: str
    canonical: str | None
    description: str | None
    markdown: str
    links: tuple[str, ...]


def html_page(html: str, url: str) -> HtmlDoc:
    """The page at `url` (used to resolve relative links) as title, Markdown and links."""
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    tree = builder.root
    title = description = base_href = canonical_href = None
    for node in _walk(tree, skip_dropped=False):
        attrs = node.attrs
        if node.tag == "title" and title is None:
            title = _collapse(_raw_text(node)).strip()
        elif node.tag == "base" and base_href is None and "href" in attrs:
            base_href = attrs["href"]
        elif node.tag == "link" and "canonical" in attrs.get("rel", "").lower().split():
            canonical_href = canonical_href or attrs.get("href")
        elif node.tag == "meta" and attrs.get("name", "").lower() == "description":
            description = description or _collapse(attrs.get("content", "")).strip()
    base = (_absolute(base_href, url) if base_href else None) or url
    links = (_absolute(n.attrs["href"], base) for n in _walk(tree, False)
             if n.tag == "a" and "href" in n.attrs)
    writer = _Markdown()
    writer.element(_content_root(tree))
    writer.flush()
    return HtmlDoc(
        title=title or _first_h1(tree),
        canonical=_absolute(canonical_href, base) if canonical_href else None,
        description=description or None,
        markdown=writer.text(),
        links=tuple(dict.fromkeys(link for link in links if link)),
    )


class _Node:
    __slots__ = ("attrs", "children", "tag")

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.children: list[_Node | str] = []


class _TreeBuilder(HTMLParser):
    """Builds a _Node tree, closing unclosed elements and ignoring stray end tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = _Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for _ in range(len(self.stack) - 1):
            if self.stack[-1].tag not in _ENDS.get(tag, ()):
                break
            self.stack.pop()
        node = _Node(tag, {name: value or "" for name, value in reversed(attrs)})
        self.stack[-1].children.append(node)
        if tag not in _VOID and len(self.stack) < MAX_NESTING:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data.replace(_BREAK, ""))


class _Markdown:
    """Writes the main content as Markdown blocks: headings, paragraphs, list items, code."""

    def __init__(self, in_content: bool = False) -> None:
        self.blocks: list[tuple[str, bool]] = []  # (text, is a line of a list)
        self.pieces: list[str] = []  # the paragraph being read
        self.bullet = ""  # the "- " waiting for the first line of a list item
        self.indent = ""  # how the other lines of that list item start
        self.lists = 0
        self.in_content = in_content  # inside <main>/<article>, where <header> is content

    def element(self, node: _Node) -> None:
        outer = self.in_content
        self.in_content = outer or node.tag in _CONTENT or node.attrs.get("role") == "main"
        tag = node.tag
        if tag in _HEADINGS:
            self.heading(node, int(tag[1]))
        elif tag == "pre":
            self.code_block(node)
        elif tag == "code":
            self.inline_code(node)
        elif tag == "br":
            self.pieces.append(_BREAK)
        elif tag in ("ul", "ol"):
            self.flush()
            self.lists += 1
            self.children(node)
            self.flush()
            self.lists -= 1
        elif tag == "li":
            self.list_item(node)
        elif tag in ("td", "th"):
            if "".join(self.pieces).strip():
                self.pieces.append(" | ")  # cells of one row stay on one line
            self.children(node)
        elif tag in _BLOCKS:
            self.flush()
            self.children(node)
            self.flush()
        else:
            self.children(node)
        self.in_content = outer

    def children(self, node: _Node) -> None:
        for child in node.children:
            if isinstance(child, str):
                self.pieces.append(child)
            elif not _dropped(child, self.in_content) and not _permalink(child):
                self.element(child)

    def heading(self, node: _Node, level: int) -> None:
        self.flush()
        inside = _Markdown(self.in_content)  # a heading is one line, whatever it contains
        inside.children(node)
        inside.flush()
        text = _collapse(" ".join(block for block, _ in inside.blocks).replace("¶", "")).strip()
        if text:
            # The page's own anchor, in the {#id} form docs_parse reads, so a passage links
            # to its section: the heading's id, or where its permalink points; {#} when the
            # page has none, so no link points to an anchor that is not there.
            anchor = node.attrs.get("id") or _permalink_target(node)
            suffix = f" {{#{anchor}}}" if anchor and " " not in anchor else " {#}"
            self.blocks.append(("#" * level + " " + text + suffix, False))

    def code_block(self, node: _Node) -> None:
        self.flush()
        code = _raw_text(node).strip("\n").rstrip()
        if not code:
            return
        classes = " ".join(n.attrs.get("class", "") for n in _walk(node, skip_dropped=True))
        language = _LANGUAGE.search(classes)
        longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
        fence = "`" * max(3, longest + 1)
        self.blocks.append((f"{fence}{language[1] if language else ''}\n{code}\n{fence}", False))

    def inline_code(self, node: _Node) -> None:
        code = _collapse(_raw_text(node)).strip()
        if code:
            ticks = "``" if "`" in code else "`"
            pad = " " if "`" in code else ""
            self.pieces.append(f"{ticks}{pad}{code}{pad}{ticks}")

    def list_item(self, node: _Node) -> None:
        self.flush()
        outer = self.bullet, self.indent
        depth = max(self.lists, 1)
        self.bullet, self.indent = "  " * (depth - 1) + "- ", "  " * depth
        self.children(node)
        self.flush()
        self.bullet, self.indent = outer

    def flush(self) -> None:
        """Write the paragraph read so far (whitespace collapsed, <br> kept as line breaks)."""
        parts = (_collapse(part).strip() for part in "".join(self.pieces).split(_BREAK))
        lines = [line for line in parts if line]
        self.pieces.clear()
        if not lines:
            return
        first = self.bullet or self.indent
        self.bullet = ""
        text = first + lines[0] + "".join("\n" + self.indent + line for line in lines[1:])
        self.blocks.append((text, bool(self.indent)))

    def text(self) -> str:
        """The blocks with blank lines between them, but the lines of a list kept together."""
        out: list[str] = []
        for n, (block, in_list) in enumerate(self.blocks):
            if n:
                out.append("\n" if in_list and self.blocks[n - 1][1] else "\n\n")
            out.append(block)
        return "".join(out)


def _dropped(node: _Node, in_content: bool) -> bool:
    if "hidden" in node.attrs or node.attrs.get("aria-hidden", "").lower() == "true":
        return True
    return node.tag in _DROPPED and not (node.tag == "header" and in_content)


def _permalink(node: _Node) -> bool:
    """The "¶" anchor that Sphinx and MkDocs put after each heading."""
    classes = node.attrs.get("class", "").split()
    return node.tag == "a" and not _PERMALINK_CLASSES.isdisjoint(classes)


def _permalink_target(heading: _Node) -> str:
    """The anchor a heading's permalink points to ("" when it has none on this page)."""
    for child in heading.children:
        if isinstance(child, _Node) and _permalink(child):
            href = child.attrs.get("href", "")
            return href[1:] if href.startswith("#") else ""
    return ""


def _walk(root: _Node, skip_dropped: bool) -> Iterator[_Node]:
    """Every element under `root` (itself included) in document order."""
    pending = [root]
    while pending:  # bounded: each element of the (finite) tree is pushed once
        node = pending.pop()
        yield node
        kids = [c for c in node.children if isinstance(c, _Node)]
        pending.extend(k for k in reversed(kids) if not (skip_dropped and _dropped(k, False)))


def _raw_text(root: _Node) -> str:
    """The text under `root` exactly as written (for <pre>), without dropped elements."""
    out: list[str] = []
    pending: list[_Node | str] = [root]
    while pending:  # bounded by the size of the subtree
        item = pending.pop()
        if isinstance(item, str):
            out.append(item)
        elif item is root or not _dropped(item, True):
            pending.extend(reversed(item.children))
    return "".join(out)


def _content_root(tree: _Node) -> _Node:
    """<main>, else <article>, else [role=main], else <body>, else the whole document."""
    first: dict[str, _Node] = {}
    for node in _walk(tree, skip_dropped=True):
        first.setdefault(node.tag, node)
        if node.attrs.get("role") == "main":
            first.setdefault("[role=main]", node)
    for key in ("main", "article", "[role=main]", "body"):
        if key in first:
            return first[key]
    return tree


def _first_h1(tree: _Node) -> str:
    for node in _walk(tree, skip_dropped=True):
        if node.tag == "h1":
            inside = _Markdown(in_content=True)
            inside.heading(node, 1)
            line = inside.blocks[0][0].removeprefix("# ") if inside.blocks else ""
            return line.split(" {#", 1)[0]
    return ""


def _collapse(text: str) -> str:
    return _SPACE.sub(" ", text)


def _absolute(href: str, base: str) -> str | None:
    """`href` resolved against `base`, without its #fragment; None unless http(s)."""
    try:
        url = urldefrag(urljoin(base, href.strip())).url
        scheme = urlsplit(url).scheme
    except ValueError:  # e.g. "http://[::1" (an unclosed IPv6 bracket)
        return None
    return url if scheme in ("http", "https") else None
