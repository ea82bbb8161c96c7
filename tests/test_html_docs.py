"""HTML docs pages to title, canonical URL, links and the main content as Markdown."""

import base64
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bot.docs_parse import parse_document
from bot.html_docs import MAX_NESTING, html_page

DOCS = Path(__file__).parent / "data" / "site" / "docs"
BASE = "https://acme.example/docs/"


def page(name: str) -> str:
    """A page of the test site, its placeholders filled as the test server fills them."""
    text = (DOCS / name).read_text()
    return text.replace("{{site}}", "https://acme.example").replace(
        "{{elsewhere}}", "https://blog.example"
    )


def test_only_the_main_content_becomes_markdown() -> None:
    doc = html_page(page("index.html"), BASE + "index.html")
    # the heading's id comes along as {#id}, for links straight to the section
    assert doc.markdown.startswith(
        "# Acme Widgets documentation {#acme-widgets}\n\nAcme Widgets turns any")
    for chrome in ("Getting started", "Search the docs", "© 2026", "Release feed", "analytics",
                   "display: flex"):
        assert chrome not in doc.markdown  # nav, header, footer, form, script, style
    assert "Start by installing the CLI, then tune your configuration." in doc.markdown


def test_title_description_and_canonical() -> None:
    doc = html_page(page("index.html"), BASE + "index.html")
    assert doc.title == "Acme Widgets documentation"
    assert doc.description == "Everything you need to install, configure and run Acme Widgets."
    assert doc.canonical == "https://acme.example/docs/"  # href="/docs/", resolved
    widgets = html_page(page("api/widgets.html"), BASE + "api/widgets.html")
    assert widgets.canonical == "https://acme.example/docs/api/widgets.html"
    assert html_page(page("configuration.html"), BASE).canonical is None
    untitled = html_page("<body><h1>Reset <code>passwords</code> <a class=headerlink>¶</a></h1>",
                         BASE)
    assert untitled.title == "Reset `passwords`" and untitled.description is None


def test_headings_keep_their_levels_without_permalinks() -> None:
    markdown = html_page(page("getting-started.html"), BASE).markdown
    lines = markdown.splitlines()
    assert [line for line in lines if line.startswith("#")] == [
        "# Getting started {#}", "## Install {#install}",
        "### Your first dashboard {#first-dashboard}"]
    assert "¶" not in markdown
    docusaurus = '<main><h6>Deep<a class="hash-link" href="#deep">#</a></h6><h4>Less</h4>'
    # the permalink itself is dropped; where it points becomes the heading's anchor
    assert html_page(docusaurus, BASE).markdown == "###### Deep {#deep}\n\n#### Less {#}"


def test_code_blocks_are_fenced_verbatim_and_inline_code_gets_backticks() -> None:
    markdown = html_page(page("configuration.html"), BASE).markdown
    assert (
        "```yaml\nwidgets:\n  - kind: gauge\n    source: sales.csv\n    refresh: 30s\n\n"
        "  - kind: sparkline\n    source: signups.csv\n```"
    ) in markdown
    assert "- `refresh` takes seconds (`30s`) or minutes (`5m`).\n- The shortest" in markdown
    api = html_page(page("api/widgets.html"), BASE).markdown
    assert '    def render(self, value: float) -> str:\n        return f"{value:.0%}"' in api
    fenced = html_page("<pre>a ``` b</pre><p>x <code>a`b</code></p>", BASE).markdown
    assert fenced == "````\na ``` b\n````\n\nx `` a`b ``"


def test_article_and_role_main_are_the_content_and_hidden_text_is_dropped() -> None:
    config = html_page(page("configuration.html"), BASE).markdown
    assert config.startswith("# Configuration {#}\n\nUpdated for version 2.4")  # <article><header>
    assert "helpful" not in config and "On this page" not in config  # its footer, the aside
    trouble = html_page(page("troubleshooting.html"), BASE).markdown
    assert trouble.startswith("# Troubleshooting {#}\n\n## The dashboard stays blank {#}")
    assert "reinstall" not in trouble and "Decorative" not in trouble
    assert "Changelog" not in trouble  # the nav, outside role=main
    changelog = html_page(page("changelog.html"), BASE).markdown  # no landmark: the <body>
    assert changelog.startswith(
        "# Changelog {#}\n\n## 2.4.0 {#v2-4}\n\n- Dark mode for every widget.\n- ")
    assert "Troubleshooting" not in changelog


def test_lists_nest_and_tables_keep_rows() -> None:
    html = "<ul><li>one<li>two<ul><li>inner</ul><li>three</ul><table><tr><th>Key<th>Default"
    html += "<tr><td>size<td>3</table><p>a<br>b"
    assert html_page(html, BASE).markdown == (
        "- one\n- two\n  - inner\n- three\n\nKey | Default\n\nsize | 3\n\na\nb")


def test_links_are_absolute_without_fragments() -> None:
    doc = html_page(page("configuration.html"), BASE + "configuration.html")
    assert "https://blog.example/blog/dashboards-that-refresh" in doc.links
    assert "https://acme.example/docs/internal.html" in doc.links
    assert "https://acme.example/" in doc.links  # the logo in the header counts too
    assert all(link.startswith("https://") and "#" not in link for link in doc.links)
    assert len(doc.links) == len(set(doc.links))
    index = html_page(page("index.html"), BASE)
    assert "https://acme.example/docs/getting-started.html" in index.links  # was #install
    based = html_page(
        '<base href="/v2/"><a href="a.html#x">a</a><a href="mailto:x@y">m</a><a>no href</a>'
        '<a href="javascript:void(0)">j</a><a href="http://[::1">bad</a><a href="#top">top</a>',
        "https://acme.example/docs/page.html",
    )
    assert based.links == ("https://acme.example/v2/a.html", "https://acme.example/v2/")


def test_broken_html_survives() -> None:
    broken = html_page(
        "<html><title>Broken</title><main><h2>Unclosed<h3>Next</h3><p>first <b>bold<p>second"
        "</div></span><ul><li>item<pre>  x = 1\n  y = 2</main></i><p>after <a href='next.html'>",
        BASE,
    )
    assert broken.title == "Broken"
    assert broken.markdown == (
        "## Unclosed {#}\n\n### Next {#}\n\nfirst bold\n\nsecond\n\n- item\n\n"
        "```\n  x = 1\n  y = 2\n```")
    assert broken.links == (BASE + "next.html",)
    deep = html_page("<div>" * (MAX_NESTING * 20) + "deep text", BASE)
    assert deep.markdown == "deep text"
    truncated = html_page("<main><p>cut off <a hr", BASE)
    assert truncated.markdown.startswith("cut off")
    assert html_page("", BASE) == html_page("</p></div>", BASE)


@given(st.text(alphabet=st.sampled_from(list("<>/=\"'! -abpre&;#x\n")), max_size=200))
def test_any_text_parses(text: str) -> None:
    doc = html_page(text, BASE)
    assert isinstance(doc.markdown, str) and all(link.startswith("https://") for link in doc.links)


def test_scripts_and_megabytes_of_inline_data_leave_only_the_text() -> None:
    blob = base64.b64encode(b"\x89PNG" + bytes(600_000)).decode()  # 800 KB, four times over
    page = (f"<html><head><title>Reset</title><script>steal('{'A' * 200_000}')</script>"
            f"<style>.a{{background:url(data:image/png;base64,{blob})}}</style></head><body>"
            "<main><h1>Reset your password</h1><p>Open Settings and press Reset.</p>"
            f'<img src="data:image/png;base64,{blob}" alt="the button">'
            f'<a href="data:text/html;base64,{blob}">download</a>'
            f'<p style="background:url(data:image/png;base64,{blob})">Then check your email.</p>'
            "</main></body></html>")
    assert len(page) > 3_000_000
    doc = parse_document("reset.html", page, "https://docs.example/reset")
    text = " ".join(section.text for section in doc.sections)
    assert "Open Settings and press Reset." in text and "Then check your email." in text
    assert len(text) < 200 and "base64" not in text and "steal" not in text
