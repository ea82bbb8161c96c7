"""Markdown → Slack mrkdwn, and what that means once a long answer is split into pages."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.mrkdwn import defuse_markdown, to_mrkdwn
from bot.streaming import TYPING_MARKER, open_fence, split_pages, utf8_size


def test_headings_become_bold_lines() -> None:
    assert to_mrkdwn("# Rotate your key\n### **Step** one ###") == "*Rotate your key*\n*Step one*"


def test_bold_italic_and_strike() -> None:
    text = "Use **bold**, __also bold__, *italic*, _italic_, ***both*** and ~~old~~."
    assert to_mrkdwn(text) == "Use *bold*, *also bold*, _italic_, _italic_, *_both_* and ~old~."


def test_words_with_underscores_and_lone_stars_stay_as_written() -> None:
    assert to_mrkdwn("set max_retry_count to 2 * 3 * 4") == "set max_retry_count to 2 * 3 * 4"


def test_links_and_autolinks() -> None:
    text = "See [the docs](https://example.com/a?b=1&c=2) or <https://example.com>."
    expected = "See <https://example.com/a?b=1&amp;c=2|the docs> or <https://example.com>."
    assert to_mrkdwn(text) == expected


def test_links_with_other_schemes_are_plain_text() -> None:
    assert to_mrkdwn("[click](javascript:alert(1))") == "click"
    assert "<" not in to_mrkdwn("[x](slack://channel?id=C1)")


def test_lists_and_quotes() -> None:
    text = "- one\n  * nested\n+ [ ] todo\n- [x] done\n3. third\n> quoted **word**"
    expected = "• one\n  • nested\n• ☐ todo\n• ☑ done\n3. third\n> quoted *word*"
    assert to_mrkdwn(text) == expected


def test_code_blocks_keep_their_text_and_lose_the_language_tag() -> None:
    text = "Run:\n```python\nif a < b and **not** c:\n    print('&')\n```\nthen `x < y`."
    expected = "Run:\n```\nif a &lt; b and **not** c:\n    print('&amp;')\n```\nthen `x &lt; y`."
    assert to_mrkdwn(text) == expected


def test_a_code_block_indented_in_a_list_starts_at_the_margin() -> None:
    text = "1. Run this:\n    ```bash\n    make run\n      --verbose\n    ```\n2. Done"
    assert to_mrkdwn(text) == "1. Run this:\n```\nmake run\n  --verbose\n```\n2. Done"


def test_mentions_written_by_the_model_are_escaped() -> None:
    text = "<!channel> <!here> <!everyone> <!subteam^S1|@team> <@U123> @here"
    shown = to_mrkdwn(text)
    assert "<!" not in shown and "<@" not in shown
    assert shown.startswith("&lt;!channel&gt; &lt;!here&gt;")
    assert "@\u200bhere" in shown


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>!@&|*_~`[]()#-\n hxtps:/.ceUW^")), max_size=200))
def test_no_model_text_can_form_a_mention(text: str) -> None:
    shown = to_mrkdwn(text)
    # The only "<" left are links we built: <http…> or <mailto…>.
    assert all(shown.startswith(("http", "mailto"), m.end()) for m in re.finditer("<", shown))
    assert not re.search(r"<[!@#]", shown)


def test_native_markdown_is_defused_but_not_escaped() -> None:
    text = "**Hi** <!here> <@U1> <!DOCTYPE html> a < b @channel"
    assert defuse_markdown(text) == (
        "**Hi** <\u200b!here> <\u200b@U1> <!DOCTYPE html> a < b @\u200bchannel"
    )


def test_long_code_block_split_into_pages_keeps_every_page_fenced() -> None:
    code = "\n".join(f"line_{n} = compute({n}) & mask" for n in range(400))
    shown = to_mrkdwn(f"Intro\n\n```js\n{code}\n```\nOutro")
    pages = split_pages(shown, 4_000, utf8_size(TYPING_MARKER), utf8_size)
    assert len(pages) >= 3
    for page in pages:
        assert utf8_size(page.text) <= 4_000
        assert open_fence(page.text) is None
    lines = [line for p in pages for line in p.text.split("\n") if line.startswith("line_")]
    assert lines == [f"line_{n} = compute({n}) &amp; mask" for n in range(400)]


def test_links_whose_url_cannot_be_parsed_are_plain_text() -> None:
    # urlparse raises on a bracketed host; the answer must still render, without a link.
    assert to_mrkdwn("[API](https://[your-domain]/api)") == "API"
    assert "<https://[" not in to_mrkdwn("<https://[tenant].example.com>")
