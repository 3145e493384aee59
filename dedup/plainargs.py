"""The command line's common case parsed without argparse: `dedup [FLAG...] PATH...`.

Importing argparse (with re, gettext and what they import), building the parser and its first
translation lookup (which imports locale) cost every run about 8 ms of a 40 ms start, before
the walk. A command line of paths and the flags below is parsed here into the same attributes
argparse gives (a test compares the two on many command lines); anything else — an option with
a value, an action, an abbreviation, `-` (paths from stdin), `--`, `-h`, a usage error — returns
None, and dedup.cli parses it with argparse, its errors and help included.
"""

from __future__ import annotations

# Options without a value that a report-only run takes, by each full spelling, and the attribute
# each sets to True (repeating one is allowed, as argparse allows it).
FLAGS = {
    "-0": "null", "--null": "null", "-q": "quiet", "--quiet": "quiet",
    "--one-file-system": "one_file_system", "--include-empty": "include_empty",
    "--follow-symlinks": "follow_symlinks", "--verify": "verify", "--dirs": "dirs",
    "--similar": "similar",
}


def defaults() -> dict[str, object]:
    """Return every option's value when it is not given, as dedup.cli.build_parser's has it."""
    return {
        "format": "text", "null": False, "min_size": 0, "max_size": None, "include": [],
        "exclude": [], "one_file_system": False, "include_empty": False,
        "follow_symlinks": False, "hash": "mmh3", "verify": False, "threads": None,
        "cache": None, "delete": False, "link": None, "dedupe": False, "apply": False,
        "dirs": False, "similar": False, "similar_min_size": 1024 * 1024,
        "similar_threshold": 50, "keep": "first", "keep_path": [], "quiet": False,
    }


class PlainArgs:
    """A parsed command line: the attributes of argparse's `Namespace` for it."""

    def __init__(self, values: dict[str, object]) -> None:
        self.__dict__.update(values)


def parse_plain(argv: list[str]) -> PlainArgs | None:
    """Return *argv* parsed as dedup.cli's argparse parser parses it, if it holds only `FLAGS`
    and one or more paths in one run (argparse takes the paths at once: `dedup a -q b` is its
    usage error), none of them starting with '-'; else None."""
    values = defaults()
    paths: list[str] = []
    ended = False  # the run of paths is over
    for arg in argv:
        flag = FLAGS.get(arg)
        if flag is not None:
            values[flag] = True
            ended = bool(paths)
        elif ended or arg.startswith("-"):
            return None
        else:
            paths.append(arg)
    if not paths:
        return None
    values["paths"] = paths
    return PlainArgs(values)
