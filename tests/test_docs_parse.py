"""Docs files to passages: what a reader sees as a heading is one, code stays whole."""

from __future__ import annotations

import re

import pytest

from bot.docs_parse import (
    PASSAGE_CHARS,
    is_doc_name,
    parse_document,
    strip_jsx,
)
from bot.rst_docs import rst_to_markdown

GUIDE = """---
title: "Listeners guide"
url: https://docs.example.com/guide/listeners
description: How listeners work
---

# Listeners {#listeners}

Listeners react to events.

## Acknowledging requests {#ack}

Call ack() within three seconds.

```python
# this comment is not a heading
app.ack()
## neither is this
```

After the block, still acknowledging.

### Lazy listeners

Work that takes longer goes to a lazy listener.
"""


def test_front_matter_headings_anchors_and_fences() -> None:
    doc = parse_document("guide/listeners.md", GUIDE)
    assert doc.title == "Listeners guide"
    assert doc.url == "https://docs.example.com/guide/listeners"
    assert doc.description == "How listeners work"
    headings = [s.heading for s in doc.sections]
    assert headings == [
        "Listeners guide › Listeners",
        "Listeners guide › Listeners › Acknowledging requests",
        "Listeners guide › Listeners › Acknowledging requests › Lazy listeners",
    ]
    ack = doc.sections[1]
    assert ack.anchor == "ack"  # {#ack} kept for the link, gone from the title
    assert "# this comment is not a heading" in ack.text
    assert "After the block, still acknowledging." in ack.text
    assert doc.sections[2].anchor == "lazy-listeners"  # the generator's slug
    assert "title:" not in " ".join(s.text for s in doc.sections)  # front matter not indexed


def test_a_long_code_block_is_cut_into_closed_fences() -> None:
    code = "\n".join(f"line_{i} = compute({i})  # step {i}" for i in range(300))
    doc = parse_document("big.md", f"# Big\n\nIntro.\n\n```python\n{code}\n```\n\nOutro.\n")
    assert len(doc.sections) > 3
    for section in doc.sections:
        assert len(section.text) <= PASSAGE_CHARS
        assert section.text.count("```") % 2 == 0  # no passage ends inside a fence
    fenced = [s.text for s in doc.sections if "```python" in s.text]
    assert len(fenced) >= 3  # reopened with its language each time
    body = "".join(re.sub(r"```(python)?\n?", "", t) for t in fenced)
    assert all(f"line_{i} = compute({i})" in body for i in range(300))  # nothing lost


def test_an_unclosed_fence_runs_to_the_end_and_is_closed() -> None:
    doc = parse_document("x.md", "# X\n\ntext\n\n```\n# not a heading\ncode")
    assert [s.heading for s in doc.sections] == ["X"]
    assert doc.sections[0].text.count("```") == 2


def test_setext_headings_and_title_from_first_heading() -> None:
    doc = parse_document("s.md", "Setup\n=====\n\nInstall it.\n\nUsage\n-----\n\nRun it.\n")
    assert doc.title == "Setup"
    assert [s.heading for s in doc.sections] == ["Setup", "Setup › Usage"]


def test_mdx_keeps_children_of_components_and_drops_imports() -> None:
    mdx = (
        "import Tabs from '@theme/Tabs';\nexport const x = 1;\n\n# Install\n\n"
        "<Tabs>\n<TabItem value=\"pip\">\n\nRun pip install acme.\n\n</TabItem>\n</Tabs>\n\n"
        "```jsx\n<Tabs>kept in code</Tabs>\n```\n"
    )
    doc = parse_document("install.mdx", mdx)
    text = doc.sections[0].text
    assert "Run pip install acme." in text
    assert "import Tabs" not in text and "<TabItem" not in text
    assert "<Tabs>kept in code</Tabs>" in text
    assert strip_jsx("a <Note type=\"x\">b</Note> c") == "a b c"
    tabs = strip_jsx('<TabItem value="mac" label="macOS">\n~/Library/Caches\n</TabItem>')
    assert tabs == "**macOS**\n~/Library/Caches\n"  # which system the path is for


RST = """\
=========
User Guide
=========

Running pip
===========

pip is a command line program::

    # a shell comment in a literal block
    python -m pip install SomePackage

Proxies
-------

Use :ref:`the proxy option <proxy>` or set ``HTTP_PROXY``.

.. tab:: Unix

   .. code-block:: console

      $ pip show sphinx
      ---
      Name: Sphinx

.. note::

   Notes are prose.

.. _a-target:

Caching
=======

Cache lives in ~/.cache/pip.
"""


def test_restructuredtext_headings_literal_blocks_and_directives() -> None:
    doc = parse_document("user_guide.rst", RST)
    assert doc.title == "User Guide"
    headings = [s.heading for s in doc.sections]
    assert headings == ["User Guide › Running pip", "User Guide › Running pip › Proxies",
                        "User Guide › Caching"]
    running, proxies, caching = (s.text for s in doc.sections)
    assert "```\n# a shell comment in a literal block" in running  # code, not a heading
    assert "Use the proxy option or" in proxies and ":ref:" not in proxies
    assert "$ pip show sphinx\n---\nName: Sphinx" in proxies  # "---" in code is no heading
    assert "Notes are prose." in proxies
    assert "_a-target" not in caching and "~/.cache/pip" in caching


def test_rst_converter_handles_overlines_and_mixed_levels() -> None:
    md = rst_to_markdown("####\nTop\n####\n\nAlpha\n=====\n\ntext\n\nBeta\n----\n\nmore\n")
    assert re.findall(r"^#+ .*$", md, re.M) == ["# Top", "## Alpha", "### Beta"]


def test_a_role_inside_an_inline_literal_stays_text_and_never_opens_a_fence() -> None:
    # A changelog entry quoting a role: the literal is text, not a role with empty content
    # (which left an empty ```` at the start of a line, read as a fence that swallowed every
    # later heading of a real changelog).
    rst = ("Changes\n=======\n\n1.1\n---\n\n- The ``:issue:`` role was replaced with a\n"
           "  ``:gh:`` one, see :ref:`roles <role-docs>`.\n\n1.0\n---\n\nFirst release.\n")
    doc = parse_document("changelog.rst", rst)
    assert [s.heading for s in doc.sections] == ["Changes › 1.1", "Changes › 1.0"]
    assert "``:issue:``" in doc.sections[0].text and "``:gh:``" in doc.sections[0].text
    assert "see roles." in doc.sections[0].text  # a role outside a literal keeps its text


def test_described_objects_are_linkable_entries_under_their_section() -> None:
    rst = ("Reference\n=========\n\nOptions\n-------\n\n.. confval:: norecursedirs\n"
           "   :type: args\n   :default: build, dist\n\n"
           "   Directory patterns skipped while collecting.\n\n"
           ".. envvar:: APP_COLOR\n\n   Forces colored output.\n\n"
           "All of these can also be set in the config file.\n\n"
           ".. py:function:: approx(expected, rel=None)\n\n   Compare numbers approximately.\n"
           "\n   .. note:: Works on sequences too.\n\nHooks\n-----\n\nAfter the entries.\n")
    doc = parse_document("reference.rst", rst)
    found = [(s.heading, s.anchor) for s in doc.sections]
    assert found == [
        ("Reference › Options › norecursedirs", "confval-norecursedirs"),
        ("Reference › Options › APP_COLOR", "envvar-APP_COLOR"),
        ("Reference › Options", "options"),  # what follows an entry is the section's again
        ("Reference › Options › approx(expected, rel=None)", "approx"),
        ("Reference › Hooks", "hooks"),
    ]
    assert doc.sections[0].text.startswith("Type: args\nDefault: build, dist\n")
    assert doc.sections[2].text == "All of these can also be set in the config file."
    assert "Works on sequences too." in doc.sections[3].text
    # An entry before any title is not the page's title.
    loose = parse_document("fragment.rst",
                           ".. envvar:: FOO\n\n   Sets foo.\n\nIntro\n=====\n\nHi.\n")
    assert loose.title == "Intro" and "Sets foo." in loose.sections[0].text


def test_myst_roles_labels_tabs_versions_and_comments_read_as_text() -> None:
    md = ("(caching)=\n\n# Caching\n\nSee {doc}`topics/vcs-support` and {ref}`the index "
          "<index-urls>`, per {pep}`517`, in {file}`pip.conf`.\n<!-- TODO: say more\n"
          "about wheels -->\nKept.\n\n```{tab} Unix\n~/.cache/pip\n```\n\n"
          "```{versionadded} 23.1\nThe cache purge command.\n```\n")
    [section] = parse_document("caching.md", md).sections
    text = section.text
    assert text.startswith("See topics/vcs-support and the index, per PEP 517, in `pip.conf`.")
    assert "(caching)=" not in text and "TODO" not in text and "Kept." in text
    assert "**Unix**\n~/.cache/pip" in text  # which system the path is for
    assert "*New in version 23.1*.\nThe cache purge command." in text


def test_mkdocs_tabs_docusaurus_admonitions_and_fences_in_lists_keep_their_code_whole() -> None:
    md = ('# Middleware\n\n=== "Do"\n\n    ```python\n    class Good:\n\n'
          '        async def __call__(self):\n            pass\n    ```\n\n'
          ":::tip Retries\nRequests are retried twice.\n:::\n\n"
          "- Set the variable:\n\n    ```\n    export PIP_NO_CACHE_DIR=1\n    ```\n\n"
          "::: starlette.middleware\n    options:\n      show_bases: false\n\nAfter.\n")
    [section] = parse_document("middleware.md", md).sections
    text = section.text
    assert "**Do**\n\n```python\nclass Good:\n\n    async def __call__(self):\n" in text
    assert "        pass\n```" in text and '===' not in text
    assert "**Retries**\nRequests are retried twice." in text and "```tip" not in text
    assert "```\nexport PIP_NO_CACHE_DIR=1\n```" in text
    assert "options" not in text and "show_bases" not in text and "After." in text


def test_rst_links_wrapped_roles_fields_and_directive_arguments() -> None:
    rst = (":orphan:\n\nUsage\n=====\n\nRead the `guide <https://example.test/guide>`_ "
           "and `Tox`_.\nSee :ref:`the complete flag\nreference <flags>` too.\n\n"
           ".. pip-command-usage:: download\n\n.. versionadded:: 8.4 the ``-p`` flag.\n\n"
           ".. only:: not latex\n\n   Plugin pytest-django helps with Django.\n")
    [section] = parse_document("usage.rst", rst).sections
    text = section.text
    assert text.startswith("Read the guide and Tox.\nSee the complete flag reference too.")
    assert ":orphan:" not in text and "download" not in text and "<https" not in text
    assert "*New in version 8.4*: the ``-p`` flag." in text
    assert "Plugin pytest-django helps with Django." in text  # `.. only::` content is kept


def test_rst_blocks_end_where_their_indentation_does() -> None:
    rst = ("Temp dirs\n=======\n\n- Keep them:\n\n  .. code-block:: ini\n\n"
           "      [pytest]\n      tmp_path_retention_count = 3\n\n"
           "  Set it in the ini file.\n\n.. note::\n\n   :ref:`Fixtures <fixtures>` come first.\n"
           "\nExample::\n\n    Write this in README.md:\n\n        ```python\n        x = 1\n"
           "        ```\n\nSection two\n-----------\n\nText two.\n")
    doc = parse_document("tmp.rst", rst)
    assert [s.heading for s in doc.sections] == ["Temp dirs", "Temp dirs › Section two"]
    text = doc.sections[0].text  # a short underline is still a title
    assert "```ini\n[pytest]\ntmp_path_retention_count = 3\n```" in text
    assert "Set it in the ini file." in text and "```\n  Set it" not in text  # after the code
    assert "\nFixtures come first." in text  # a body line that starts with a role stays
    assert "````\nWrite this in README.md:\n\n    ```python" in text  # a longer fence


def test_containers_api_directives_and_odd_anchors() -> None:
    md = ("# Setup {#c++-support}\n\n::: tip Before you start\nInstall the CLI.\n:::\n\n"
          ":::warning[Careful]\nDeleting a project is permanent.\n:::\n\n!!! note\n\n"
          "    ::: acme.client\n        options:\n          show_bases: false\n\n"
          "    Admonition text after.\n\n## Next\n\nMore.\n")
    doc = parse_document("setup.md", md)
    assert [(s.heading, s.anchor) for s in doc.sections] == [
        ("Setup", "c++-support"), ("Setup › Next", "next")]
    text = doc.sections[0].text
    assert "**Before you start**\nInstall the CLI." in text  # VitePress container: prose
    assert "**Careful**\nDeleting a project is permanent." in text
    assert "Admonition text after." in text and "show_bases" not in text


def test_second_pass_over_real_docs_markup() -> None:
    rst = ("Plugins\n=======\n\nFixed :issue:`1316` (thanks :user:`nicoddemus`), see "
           ":pep:`517` and :class:`~_pytest.nodes.Node`; \\*_test.py files.\n\n"
           "- run it from the shell::\n\n    python -m pytest\n\n  or from Python.\n\n"
           "Layout like this:\n\n::\n\n    tests/\n\n#. First step\n\n"
           ".. only:: latex\n\n   PDF-only plugin list.\n\n"
           ".. only:: not latex\n\n   pytest-django       Django support       2024\n")
    text = parse_document("plugins.rst", rst).sections[0].text
    assert text.startswith("Fixed #1316 (thanks @nicoddemus), see PEP 517 and `Node`; *_test.py")
    assert "- run it from the shell:\n\n```\npython -m pytest\n```\n\nor from Python." in text
    assert "Layout like this:\n\n```\ntests/\n```" in text and "\n:\n" not in text
    assert "1. First step" in text and "PDF-only" not in text
    assert "pytest-django  Django support  2024" in text  # table padding collapsed
    nested = ("Changelog\n=========\n\n.. only:: html\n\n   Released\n   --------\n\n"
              "   All of them.\n\n1.0\n---\n\nFirst.\n")
    assert [s.heading for s in parse_document("changes.rst", nested).sections] == [
        "Changelog › Released", "Changelog › 1.0"]  # a title in a directive keeps its level
    md = ("(Requirement Specifiers)=\n\n# Configuration\n\n<p align=\"center\"><img src=\"x.png\">"
          "</p>\n\n## Environment _variables_\n\n- ```\n  PIP_FIND_LINKS=a b\n  ```\n\n"
          "  is the same as passing it twice.\n\n<details><summary>Why?</summary>Because.</details>"
          "\n\n```{toctree}\n---\nhidden:\n---\ninstallation\n```\n\n"
          "```{eval-rst}\n.. note:: From rst.\n```\n\n## Shells\n\n```{tab} Unix\n```\n")
    doc = parse_document("config.md", md)
    assert [s.heading for s in doc.sections] == ["Configuration › Environment variables"]
    text = doc.sections[0].text
    assert "```\nPIP_FIND_LINKS=a b\n```" in text and "is the same as passing it twice." in text
    assert "**Why?**Because." in text and "<" not in text and "Specifiers" not in text
    assert "installation" not in text and "hidden" not in text and "From rst." in text


def test_comment_markers_fences_and_placeholders_in_examples_lose_no_text() -> None:
    md = ("# HTML\n\nA comment starts with `<!--`.\n\n## Closing\n\nIt ends with `-->`.\n\n"
          "Put `<!--more-->` where the summary ends.\n\n"
          "```markdown\n1. Install:\n\n    ```bash\n    pip install x\n    ```\n```\n\n"
          "## Next\n\nUse `{host}` or `{port}`; pass --log-disable={logger_name} too.\n")
    doc = parse_document("html.md", md)
    assert [s.heading for s in doc.sections] == ["HTML", "HTML › Closing", "HTML › Next"]
    closing, following = doc.sections[1].text, doc.sections[2].text
    assert "It ends with `-->`." in closing and "Put `<!--more-->` where" in closing
    assert "    ```bash\n    pip install x\n    ```\n```" in closing  # one code block
    assert following == "Use `{host}` or `{port}`; pass --log-disable={logger_name} too."


def test_myst_directives_are_prose_and_code_block_directives_stay_code() -> None:
    md = ("# Cache\n\n```{note}\nThe cache can be disabled.\n```\n\n"
          "```{code-block} shell\n# not a heading\npip cache purge\n```\n\n"
          ":::{tip}\nUse --no-cache-dir.\n:::\n")
    text = parse_document("caching.md", md).sections[0].text
    assert "The cache can be disabled." in text and "{note}" not in text
    assert "```shell\n# not a heading\npip cache purge\n```" in text
    assert "Use --no-cache-dir." in text and ":::" not in text


def test_site_generator_markup_is_dropped() -> None:
    md = ("# Config\n\n{{% note %}}\nHugo note text.\n{{% /note %}}\n\n::: starlette.config\n\n"
          '!!! warning "Careful"\n    Indented admonition body.\n\nAfter.\n')
    text = parse_document("config.md", md).sections[0].text
    assert "{{%" not in text and "::: starlette" not in text
    assert "Hugo note text." in text and "**Careful**" in text
    assert "\nIndented admonition body." in text and "After." in text


@pytest.mark.parametrize("name", ["notes.txt", "README"])
def test_plain_text_is_paragraphs_titled_by_its_first_line(name: str) -> None:
    doc = parse_document(name, "Release notes\n\nVersion 2 adds exports.\n\n# not markdown here")
    assert doc.title == "Release notes"
    assert any("Version 2 adds exports." in s.text for s in doc.sections)


def test_a_page_without_a_title_is_named_after_its_file() -> None:
    doc = parse_document("getting-started.md", "## Install\n\nRun the installer.\n")
    assert doc.title == "Getting started"
    assert doc.sections[0].heading == "Getting started › Install"


@pytest.mark.parametrize(("name", "is_doc"), [
    ("guide.md", True), ("notes.txt", True), ("page.HTML", True), ("api.rst", True),
    ("requirements.txt", False), ("requirements-docs.txt", False), ("LICENSE.txt", False),
    ("robots.txt", False), ("image.png", False), ("conf.py", False),
])
def test_which_files_are_docs(name: str, is_doc: bool) -> None:
    assert is_doc_name(name) is is_doc


def test_a_list_item_over_a_lone_dash_is_not_a_heading() -> None:
    # pip's configuration page: an item, then an item that opens with a fence ("- ```").
    doc = parse_document("config.md", "# Config\n\n## Environment Variables\n\n"
                         "- `PIP_TIMEOUT=60` is the same as `--timeout=60`\n- ```\n"
                         "  PIP_FIND_LINKS=a\n  ```\n\n* item\n-\n")
    assert {s.heading for s in doc.sections} == {"Config › Environment Variables"}
    assert "PIP_TIMEOUT=60" in doc.sections[0].text


def test_code_in_a_heading_keeps_its_angle_brackets() -> None:
    # Scrapy's FAQ: "How to deal with ``<class 'ValueError'>: filedescriptor out of range
    # in select()`` exceptions?" lost the error's name when tags were stripped from code.
    rst = parse_document("faq.rst", "FAQ\n===\n\nWhy ``<class 'ValueError'>`` here?\n"
                                    "---------------------------------\n\nText.\n")
    md = parse_document("faq.md", "# FAQ\n\n## Why `<class 'X'>` fails <em>now</em>\n\nText.\n")
    assert rst.sections[-1].heading == "FAQ › Why <class 'ValueError'> here?"
    assert md.sections[-1].heading == "FAQ › Why <class 'X'> fails now"
