"""The README's CLI table names only commands and options the `accord` command has."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from cli.main import main

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parents[2] / "README.md"
_SPAN = re.compile(r"`([^`]+)`")
_WORD = re.compile(r"[a-z][a-z-]*")


def _table_commands() -> list[str]:
    """First cell of every table row that starts with `accord …`."""
    cells = []
    for line in README.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("| `accord "):
            cells.append(stripped.split(" | ")[0].removeprefix("| "))
    return cells


def _leading_words(tokens: list[str]) -> list[str]:
    """The command path: the words before the first argument (CASE_ID) or option."""
    words: list[str] = []
    for token in tokens:
        if not _WORD.fullmatch(token):
            break
        words.append(token)
    return words


def _resolve(group: click.Group, words: list[str]) -> list[click.Command]:
    """The chain of commands ``words`` walk down from ``group``."""
    chain: list[click.Command] = [group]
    command: click.Command = group
    for word in words:
        if not isinstance(command, click.Group) or word not in command.commands:
            break
        command = command.commands[word]
        chain.append(command)
    return chain


def _options(chain: list[click.Command]) -> set[str]:
    return {
        name
        for command in chain
        for param in command.params
        for name in (*param.opts, *param.secondary_opts)  # --inbound/--outbound: both
    }


CELLS = _table_commands()


def test_the_table_is_found() -> None:
    assert len(CELLS) >= 15


@pytest.mark.parametrize("cell", CELLS)
def test_every_command_and_option_in_the_table_exists(cell: str) -> None:
    segments: list[str] = []
    for span in _SPAN.findall(cell):
        segments.extend(part.strip() for part in span.split(" / "))
    first = segments[0].split()
    assert first[0] == "accord"
    words = _leading_words(first[1:])
    chain = _resolve(main, words)
    assert len(chain) == len(words) + 1, f"{cell}: no such command"
    parent_chain = chain[:-1]
    for index, segment in enumerate(segments):
        if index > 0 and segment.startswith("accord "):
            words = _leading_words(segment.split()[1:])
            chain = _resolve(main, words)
            assert len(chain) == len(words) + 1, f"{cell}: no such command {segment}"
            parent_chain = chain[:-1]
        elif index > 0:
            word = segment.split()[0]
            parent = parent_chain[-1]
            assert isinstance(parent, click.Group)
            assert word in parent.commands, f"{cell}: {word} is not a command of {parent.name}"
            chain = [*parent_chain, parent.commands[word]]
        names = " ".join(c.name or "" for c in chain)
        for flag in re.findall(r"--[a-z][a-z-]*", segment):
            assert flag in _options(chain), f"{cell}: {names} has no {flag}"
