"""The command line's common case parsed without argparse (dedup.plainargs): the same attributes
as argparse's parser gives, or None wherever argparse has to decide."""

from __future__ import annotations

import pytest

from dedup.cli import build_parser, main
from dedup.plainargs import FLAGS, parse_plain

PLAIN = [
    ["t"],
    ["-0", "-q", "t"],
    ["t", "u", "-q"],
    ["--quiet", "--null", "a b", "c"],
    ["-q", "-q", "t", "-0", "-0"],
    [""],  # an empty path is a path to argparse too
    ["t", *FLAGS],
    [*FLAGS, "t"],
    ["--verify", "--dirs", "--similar", "--follow-symlinks", "t"],
]

NOT_PLAIN = [
    [],  # no path: argparse's usage error
    ["-q"],
    ["-"],  # paths from stdin
    ["--", "-a"],
    ["-a"],
    ["-0q", "t"],  # combined short flags
    ["--qui", "t"],  # an abbreviation
    ["--quiet=1", "t"],
    ["t", "-q", "u"],  # argparse takes the paths as one run: its usage error
    ["--threads", "2", "t"],
    ["--format", "json", "t"],
    ["--delete", "t"],
    ["--apply", "t"],
    ["-h"],
    ["t", "--help"],
    ["-5", "t"],
    ["-x y", "t"],  # a dash and a space: argparse's positional, left to it
]


@pytest.mark.parametrize("argv", PLAIN)
def test_a_plain_command_line_gets_what_argparse_gives(argv):
    plain = parse_plain(argv)
    assert plain is not None
    assert vars(plain) == vars(build_parser().parse_args(argv))


@pytest.mark.parametrize("argv", NOT_PLAIN)
def test_anything_else_is_left_to_argparse(argv):
    assert parse_plain(argv) is None


def test_every_flag_is_a_value_less_option_of_the_parser():
    parser = build_parser()
    for flag, dest in FLAGS.items():
        action = parser._option_string_actions[flag]
        assert action.dest == dest and action.nargs == 0 and action.const is True


def test_argparse_still_answers_what_the_plain_parser_leaves(capsys, tmp_path):
    assert main(["--qui", str(tmp_path)]) == 0  # an abbreviation, through argparse
    assert main([str(tmp_path), "-q", str(tmp_path)]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err
