"""Markdown as the model writes it → Slack mrkdwn (pure, no I/O).

Headings become bold lines, **bold** *bold*, *italic* _italic_, ~~strike~~ ~strike~,
[text](url) <url|text>, list bullets •, and fenced code stays a ``` block on its own lines
(Slack ignores language tags, so they are dropped). Everything the model wrote is escaped
(&, <, >), so no text can form <!channel>, <!here>, <@user> or <!subteam^…> mentions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlparse

from bot.formatting import escape_slack, neutralise_mentions

FENCE = "```"
BULLET = "•"
RULE = "───"
_FENCE_OPEN = re.compile(r"^([ \t]*)(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_QUOTE = re.compile(r"^ {0,3}>[ \t]?(.*)$")
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+(.*)$")
_TASK = re.compile(r"^\[([ xX])\][ \t]+")
_NUMBERED = re.compile(r"^([ \t]*)(\d{1,9})[.)][ \t]+(.*)$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [label](url "title"); the URL may hold one level of balanced parentheses, as Markdown allows.
_LINK = re.compile(
    r"!?\[([^\]\n]*)\]\(\s*<?((?:[^()\s<>]|\([^()\s<>]*\))+)>?(?:\s+\"[^\"\n]*\")?\s*\)"
)
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
_BOLD_ITALIC = re.compile(r"\*\*\*(?=\S)(.+?)(?<=\S)\*\*\*")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_STAR_ITALIC = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")
_UNDERSCORE_ITALIC = re.compile(r"(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_EMPHASIS_MARKS = re.compile(r"(\*\*|__|~~)")
# Private-use characters stand in for finished links while the rest of a line is converted.
_SLOT = re.compile("\ue000(\\d+)\ue001")
_PRIVATE = re.compile("[\ue000\ue001\ue002]")
_BOLD_MARK = "\ue002"
_SAFE_SCHEMES = frozenset({"http", "https", "mailto"})


def to_mrkdwn(markdown: str) -> str:
    """Slack mrkdwn for `markdown`, with every character the model wrote escaped."""
    out: list[str] = []
    fence: tuple[str, int] | None = None  # the open fence's marker and indentation
    for line in _PRIVATE.sub("", markdown).split("\n"):
        if fence is not None:
            if _closes(line, fence[0]):
                out.append(FENCE)
                fence = None
            else:
                out.append(escape_slack(_dedent(line, fence[1])))
            continue
        opened = _FENCE_OPEN.match(line)
        if opened is not None and not (opened.group(2)[0] == "`" and "`" in opened.group(3)):
            # Slack cannot nest code in a list, so an indented fence starts at column 0.
            fence = (opened.group(2), len(opened.group(1)))
            out.append(FENCE)
            continue
        out.append(block_line(line))
    return "\n".join(out)


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence) and set(stripped) == {fence[0]}


def _dedent(line: str, indent: int) -> str:
    """Drop up to `indent` leading spaces: the code block's own indentation inside a list."""
    return line[min(indent, len(line) - len(line.lstrip(" "))):]


def block_line(line: str) -> str:
    """One line outside code: headings, rules, quotes and list items, then inline marks."""
    if (heading := _HEADING.match(line)) is not None:
        text = _EMPHASIS_MARKS.sub("", heading.group(1))
        return f"*{inline(text)}*" if text.strip() else ""
    if _RULE.match(line):
        return RULE
    if (quote := _QUOTE.match(line)) is not None:
        return "> " + block_line(quote.group(1))  # the one ">" Slack must see unescaped
    if (bullet := _BULLET.match(line)) is not None:
        indent, item = bullet.groups()
        task = _TASK.match(item)
        if task is not None:
            box = "☐" if task.group(1) == " " else "☑"
            return f"{indent}{BULLET} {box} {inline(item[task.end():])}"
        return f"{indent}{BULLET} {inline(item)}"
    if (numbered := _NUMBERED.match(line)) is not None:
        indent, number, item = numbered.groups()
        return f"{indent}{number}. {inline(item)}"
    return inline(line)


def inline(text: str) -> str:
    """Inline Markdown → mrkdwn: code spans kept verbatim (escaped), links and emphasis mapped."""
    parts: list[str] = []
    pos = 0
    for span in _CODE_SPAN.finditer(text):
        parts.append(_prose(text[pos : span.start()]))
        parts.append("`" + escape_slack(span.group(2)) + "`")
        pos = span.end()
    parts.append(_prose(text[pos:]))
    return "".join(parts)


def _prose(text: str) -> str:
    """Links, escaping and emphasis of text outside code. Each pattern runs only where the
    characters it needs are present: most lines of an answer hold none of them."""
    if not text:
        return ""
    links: list[str] = []
    if "](" in text:
        text = _LINK.sub(_keep(links, lambda m: link(m.group(2), m.group(1))), text)
    if "<" in text:
        text = _AUTOLINK.sub(_keep(links, lambda m: link(m.group(1), "")), text)
    text = neutralise_mentions(escape_slack(text))
    if "***" in text:
        text = _BOLD_ITALIC.sub(lambda m: f"{_BOLD_MARK}_{m.group(1)}_{_BOLD_MARK}", text)
    if "**" in text or "__" in text:
        text = _BOLD.sub(lambda m: _BOLD_MARK + m.group(2) + _BOLD_MARK, text)
    if "*" in text:
        text = _STAR_ITALIC.sub(r"_\1_", text)
    if "_" in text:
        text = _UNDERSCORE_ITALIC.sub(r"_\1_", text)
    if "~~" in text:
        text = _STRIKE.sub(r"~\1~", text)
    if _BOLD_MARK in text:
        text = text.replace(_BOLD_MARK, "*")
    return _SLOT.sub(lambda m: links[int(m.group(1))], text) if links else text


def _keep(links: list[str], make: Callable[[re.Match[str]], str]) -> Callable[[re.Match[str]], str]:
    """A substitution that stores the finished link and leaves a numbered slot in its place."""

    def slot(match: re.Match[str]) -> str:
        links.append(make(match))
        return f"\ue000{len(links) - 1}\ue001"

    return slot


def link(url: str, label: str) -> str:
    """<url|label> for http(s)/mailto URLs; anything else is shown as plain escaped text."""
    shown = neutralise_mentions(escape_slack(_EMPHASIS_MARKS.sub("", label).strip()))
    if _scheme(url) not in _SAFE_SCHEMES:
        return shown or escape_slack(url)
    target = escape_slack(url.replace("|", "%7C"))
    if not shown or shown == target:
        return f"<{target}>"
    return f"<{target}|{shown.replace('|', '¦')}>"


def _scheme(url: str) -> str:
    """The URL's scheme, or "" when it cannot be parsed (e.g. https://[your-domain]/)."""
    try:
        return urlparse(url).scheme.lower()
    except ValueError:
        return ""


_SPECIAL_START = re.compile(r"<(?=[!@](?:channel|here|everyone|subteam\^|[UW][A-Z0-9]))", re.I)


def defuse_markdown(markdown: str) -> str:
    """Markdown kept as Markdown (for native streaming) with mention syntax made inert."""
    return neutralise_mentions(_SPECIAL_START.sub("<\u200b", markdown))
