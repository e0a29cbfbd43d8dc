"""``mfrec COMMAND --help`` as a new user reads it (issue 18): every option explained, fixed
values listed, no reStructuredText markup, and pointers to docs that exist."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from mfrec.cli import build_parser
from mfrec.train.ingest.options import CHOICES

DOCS = Path(__file__).resolve().parents[2] / "docs"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


COMMANDS = sorted(subcommands())


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_text(command):
    parser = subcommands()[command]
    missing = [
        "/".join(action.option_strings) or action.dest
        for action in parser._actions
        if not (action.help and action.help.strip())
    ]
    assert missing == [], f"`mfrec {command}` options without help: {missing}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_no_restructuredtext_and_names_docs_that_exist(command):
    text = subcommands()[command].format_help()
    assert "``" not in text and ":mod:" not in text and ":data:" not in text
    for name in ("README's serving section",):
        assert name not in text
    for doc in {word.strip(".,;:()") for word in text.split() if word.startswith("docs/")}:
        assert (DOCS.parent / doc).is_file(), f"`mfrec {command} --help` names {doc}"


@pytest.mark.parametrize("command", ["validate", "import", "train"])
def test_fixed_value_options_show_their_choices(command):
    text = " ".join(subcommands()[command].format_help().split())
    for name, values in CHOICES.items():
        flag = "--" + name.replace("_", "-")
        assert f"{flag} {{{','.join(values)}}}" in text


def test_serve_help_points_to_the_serving_doc():
    assert "docs/serving.md" in subcommands()["serve"].format_help()


def test_synth_options_are_explained():
    text = " ".join(subcommands()["synth"].format_help().split())
    assert "--num-interactions N rows to write" in text
    assert "the same seed gives the same bytes" in text
