"""README.md is the front door: short, no dated figures, its first two commands the set-up ones, and
every link it gives to a file of this repository (the docs pages, the changelog) is there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_the_readme_opens_with_the_two_set_up_commands():
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert first_block[0].startswith("./lab/bootstrap.sh && .venv/bin/python -m lab demo")
    assert first_block[1].startswith("./lab/bootstrap.sh && .venv/bin/pytest")


def test_the_readme_is_short_and_holds_no_dated_figure():
    assert len(README.splitlines()) <= 300
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", README), "dated figures live in docs/benchmarks.md"
    assert not re.search(r"\d\.\d+×", README), "ratios live in docs/benchmarks.md"


def test_every_link_to_a_repository_file_is_there():
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README)
    assert "docs/getting-started.md" in links
    missing = [link for link in links if not (ROOT / link).exists()]
    assert missing == []


def test_every_docs_page_the_readme_links_to_is_in_the_site_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {link.removeprefix("docs/") for link in re.findall(r"\]\((docs/[^)#]+)", README)}
    assert pages and all(page in nav for page in pages), pages
