"""`dedup [OPTIONS] PATH...`: argparse → ScanOptions → find_duplicates → plan/apply → render, exit."""

from __future__ import annotations

import gc
import os
import sys

from dedup import report as render
from dedup.errors import DedupError
from dedup.model import Report
from dedup.options import HASH_NAMES, ScanOptions, parse_size
from dedup.pipeline import find_duplicates
from dedup.plainargs import PlainArgs, parse_plain
from dedup.warn import before_first

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    # argparse is imported where a command line needs it (dedup.plainargs says when).
    import argparse
    import logging
    from collections.abc import Sequence

    from dedup.actions import ActionResult
    from dedup.reflink import DedupeOutcome

PROG = "dedup"
EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_PROBLEMS, EXIT_PIPE, EXIT_INTERRUPTED = 0, 1, 2, 3, 141, 130

EPILOG = """\
exit status:
  0    finished; every file and directory could be read (and every action, if any, done)
  1    fatal error (e.g. the --cache file cannot be used); nothing reported
  2    usage error
  3    finished, but some files or directories could not be read, or some actions were skipped
  130  interrupted (Ctrl-C)
  141  stdout was closed early (broken pipe)

Actions (--delete, --link, --dedupe) are a dry run unless --apply is given. Right before acting,
dedup re-checks each file and compares it byte for byte with the kept copy; a file that changed is
skipped, and the kept copy is never touched. The dry run makes the same checks without acting,
so it prints exactly what --apply would do and skip (hard links across file systems included).

--dedupe removes and replaces nothing: the kernel (FIDEDUPERANGE) compares the bytes itself and
makes the duplicate share the kept copy's extents (btrfs; XFS with reflink=1). A file changed
after the scan comes back "differs" and is skipped; files already sharing their extents are
reported as such. A file system without the ioctl (ext4, tmpfs, ...) gets one error line and is
left unchanged (exit 3).
"""


def _size(text: str) -> int:
    import argparse

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        import argparse

        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return value


def _percent(text: str) -> int:
    try:
        value = int(text.rstrip("%"))
    except ValueError:
        value = -1
    if not 1 <= value <= 100:
        import argparse

        raise argparse.ArgumentTypeError(f"must be a whole percentage 1-100, not {text!r}")
    return value


def _formatter(prog: str) -> argparse.HelpFormatter:
    import argparse

    # The terminal's width as shutil.get_terminal_size finds it, without importing shutil (and
    # bz2, lzma, zlib with it: 0.5 MB of RSS in every run, for the help text only).
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 80
    return argparse.RawDescriptionHelpFormatter(prog, width=max(columns - 2, 20))


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the dedup command (every option documented)."""
    import argparse

    from dedup.plan import KEEP_POLICIES

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Find files with identical content under PATHs (report only, unless asked).",
        epilog=EPILOG,
        formatter_class=_formatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="files or directories to scan; '-' reads a list of paths from stdin "
                        "(one per line, or NUL-separated with -0)")
    p.add_argument("--format", choices=("text", "json", "csv"), default="text",
                   help="report format on stdout (default: text)")
    p.add_argument("-0", "--null", action="store_true",
                   help="NUL-separated paths: the text report lists only paths, each ended by NUL, "
                        "with an extra NUL after each group; the '-' list is read NUL-separated")
    p.add_argument("--min-size", type=_size, default=0, metavar="SIZE",
                   help="ignore files smaller than SIZE (bytes; K, M, G suffixes are binary)")
    p.add_argument("--max-size", type=_size, default=None, metavar="SIZE",
                   help="ignore files larger than SIZE")
    p.add_argument("--include", action="append", default=[], metavar="GLOB",
                   help="compare only files whose path matches GLOB (repeatable; '*' matches '/')")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="skip files and directories whose path matches GLOB (repeatable)")
    p.add_argument("--one-file-system", action="store_true",
                   help="do not cross into other file systems below each PATH")
    p.add_argument("--include-empty", action="store_true",
                   help="report empty files as duplicates of each other (ignored by default)")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="follow symbolic links below PATHs (loops are detected); by default "
                        "symlinks are skipped (PATHs themselves are always followed)")
    p.add_argument("--hash", choices=HASH_NAMES, default="mmh3",
                   help="content hash: mmh3 (128-bit, fast; default), or sha256 / blake2b "
                        "(cryptographic)")
    p.add_argument("--verify", action="store_true",
                   help="prove every group byte for byte (files read side by side, in the same "
                        "pass) instead of trusting the hash")
    p.add_argument("--threads", type=_positive, default=None, metavar="N",
                   help="I/O threads (default: by device — 4 per CPU on solid-state and virtual "
                        "disks, up to 16, one on a rotating disk — for the walk and small files, "
                        "and min(4, CPUs) for large files); the walk and small files are also "
                        "shared among min(N, CPUs, 4) processes (1: one process, one thread)")
    p.add_argument("--cache", metavar="PATH", default=None,
                   help="keep digests in a persistent cache file so a rerun over an unchanged tree "
                        "reads almost nothing (keyed by device, inode, size, mtime)")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--delete", action="store_true",
                        help="remove every duplicate but the kept copy of each group (dry run "
                             "unless --apply)")
    action.add_argument("--link", choices=("hard", "sym"), default=None,
                        help="replace duplicates by hard or symbolic links to the kept copy "
                             "(dry run unless --apply)")
    action.add_argument("--dedupe", action="store_true",
                        help="share each duplicate's extents with the kept copy through the "
                             "FIDEDUPERANGE ioctl: the kernel compares the bytes, every path, "
                             "inode, owner, mode and mtime stays (btrfs, XFS with reflink=1; "
                             "dry run unless --apply)")
    p.add_argument("--apply", action="store_true",
                   help="really perform --delete, --link or --dedupe (default is a dry run)")
    p.add_argument("--dirs", action="store_true",
                   help="also report duplicate directories: whole subtrees with the same relative "
                        "paths and identical contents (topmost only; file groups inside them are "
                        "folded in); actions still act file by file")
    p.add_argument("--similar", action="store_true",
                   help="also report pairs of large files sharing regions (content-defined "
                        "chunks, FastCDC); chunk lists are kept in the --cache file")
    p.add_argument("--similar-min-size", type=_size, default=1024 * 1024, metavar="SIZE",
                   help="--similar: only files of at least SIZE (default 1M)")
    p.add_argument("--similar-threshold", type=_percent, default=50, metavar="PERCENT",
                   help="--similar: report pairs sharing at least PERCENT of the smaller file's "
                        "bytes (default 50)")
    p.add_argument("--keep", choices=KEEP_POLICIES, default="first",
                   help="which copy of a group to keep: first (by PATH order, then path), "
                        "oldest, newest (mtime) or shortest-path (default: first)")
    p.add_argument("--keep-path", action="append", default=[], metavar="PREFIX",
                   help="files under PREFIX are never touched and are preferred as the kept copy "
                        "(repeatable)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no warnings, progress or summary on stderr (the report is unchanged)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the dedup command with *argv* (default: sys.argv[1:]) and return its exit status.

    Without *argv* (the command itself: `python -m dedup`, the `dedup` script) a run that
    finished ends the process here (`os._exit`, its output flushed); one that did not freezes
    the objects left out of the collector (`gc.freeze`), as the process exits next."""
    args = parse_plain(sys.argv[1:] if argv is None else argv)
    if args is None:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help (0) or a usage error (2, message already printed)
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        if args.apply and not (args.delete or args.link or args.dedupe):
            parser.print_usage(sys.stderr)
            print(f"{PROG}: error: --apply needs --delete, --link or --dedupe", file=sys.stderr)
            return EXIT_USAGE
    # The handler is made at the first warning (dedup.warn): most runs have none.
    handlers: list[logging.Handler] = []
    forget = before_first(lambda: handlers.append(_log_to_stderr(args.quiet)))
    # A one-shot command making no reference cycles: without this, the first collection after
    # the scan traverses every per-file object (0.1-0.2 s on 100,000 files) to free nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        code = _run(args)
        if argv is None and sys.gettrace() is None and sys.getprofile() is None:
            # Nothing is left to do: no thread or child alive, the cache file closed, warnings
            # written as they came. The interpreter's shutdown (every module and object freed)
            # took 5.6 ms of a /usr/lib run after the report was out, 1.7 ms with this (from
            # main's end to the parent's wait4, 11 alternated runs each); it ends both the
            # script and `python -m dedup`. A broken pipe at the flush is handled below. Not
            # under a tracer or profiler (coverage run, python -m cProfile -o): they write
            # their results as the interpreter exits.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except DedupError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_FATAL
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Like json.tool: stop quietly; point stdout at /dev/null so the final flush cannot fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_PIPE
    finally:
        forget()
        if handlers:
            import logging

            logging.getLogger("dedup").removeHandler(handlers[0])
        if gc_was_enabled:
            gc.enable()
        if argv is None:
            # The interpreter's shutdown runs full collections over every object left (the
            # modules', about 12,000) to free no cycle: 5-6 ms of a 0.4 s /usr/lib run, after
            # the report is out (exit 11.8 -> 3.8 ms: python -m bench.dedup.phases, 11 rounds).
            gc.freeze()


def _log_to_stderr(quiet: bool) -> logging.Handler:
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: warning: %(message)s"))
    handler.setLevel(logging.ERROR if quiet else logging.WARNING)
    logger = logging.getLogger("dedup")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    return handler


def _read_path_list(null: bool) -> list[str]:
    data = sys.stdin.buffer.read()
    parts = data.split(b"\0") if null else data.split(b"\n")
    return [os.fsdecode(p) for p in parts if p]


def _run(args: argparse.Namespace | PlainArgs) -> int:
    paths: list[str] = []
    for path in args.paths:
        paths.extend(_read_path_list(args.null) if path == "-" else [path])
    options = ScanOptions(
        follow_symlinks=args.follow_symlinks, one_file_system=args.one_file_system,
        include_empty=args.include_empty, min_size=args.min_size, max_size=args.max_size,
        include=tuple(args.include), exclude=tuple(args.exclude), hash_name=args.hash,
        verify=args.verify, threads=args.threads or min(4, os.cpu_count() or 1),
        io_threads=args.threads, cache_path=args.cache,
    )
    progress = None
    if sys.stderr.isatty() and not args.quiet:
        from dedup.progress import ProgressLine

        progress = ProgressLine(sys.stderr)
    extras = proof = None
    if args.dedupe and not args.verify and args.cache is None:
        from dedup.kernelproof import KernelProof  # the kernel's compare proves large groups

        proof = KernelProof(dry_run=not args.apply, keep=args.keep, keep_paths=args.keep_path)
    if args.dirs or args.similar:
        from dedup.extras import Extras  # lazy: only --dirs / --similar need it

        extras = Extras(paths, options, dirs=args.dirs, similar=args.similar,
                        min_size=args.similar_min_size, threshold=args.similar_threshold)
    try:
        report = find_duplicates(paths, options, on_progress=progress,
                                 cache=extras.cache if extras is not None else None, extras=extras,
                                 prove=proof)
        if extras is not None:
            report = extras.finish(report)
    finally:
        if progress is not None:
            progress.finish()
        if extras is not None:
            extras.close()
    results: list[ActionResult] = []
    dedupe: DedupeOutcome | None = None
    # Actions are imported only when asked for: a report-only run starts about 30 ms sooner.
    if args.delete or args.link:
        from dedup.actions import apply_actions
        from dedup.plan import plan_actions

        op = "delete" if args.delete else ("hardlink" if args.link == "hard" else "symlink")
        plan = plan_actions(report.groups, op=op, keep=args.keep, keep_paths=args.keep_path)
        results = apply_actions(plan, dry_run=not args.apply)
    elif proof is not None:
        dedupe = proof.finish(report.groups)
    elif args.dedupe:
        from dedup.plan import plan_actions
        from dedup.reflink import apply_dedupe

        plan = plan_actions(report.groups, op="dedupe", keep=args.keep, keep_paths=args.keep_path)
        dedupe = apply_dedupe(plan, dry_run=not args.apply)
    if dedupe is not None:
        for fs, why in dedupe.unsupported.items():
            print(f"{PROG}: error: {fs} cannot share extents: {why}", file=sys.stderr)
    _write_output(args, report, results, dedupe)
    failed = any(r.status in ("skipped", "failed") for r in results)
    if dedupe is not None:
        # An inline (tiny btrfs) file has no extent to share: nothing failed, nothing to do.
        from dedup.reflink import INLINE

        failed = any(r.status in ("skipped", "failed") and r.detail != INLINE
                     for r in dedupe.results)
    return EXIT_PROBLEMS if report.problems or failed else EXIT_OK


def _write_output(args: argparse.Namespace | PlainArgs, report: Report, results: list[ActionResult],
                  dedupe: DedupeOutcome | None = None) -> None:
    acting = bool(args.delete or args.link or args.dedupe)
    if dedupe is not None:
        from dedup.reflink import dedupe_dict, dedupe_lines, summarize
    lines_of = (lambda dry_run: dedupe_lines(dedupe, dry_run=dry_run)) if dedupe is not None \
        else (lambda dry_run: action_lines(results, dry_run=dry_run))
    if args.format == "json":
        import json  # lazy: only this format needs it

        doc = json.loads(render.to_json(report))
        if dedupe is not None:
            doc["actions"] = [dedupe_dict(r) for r in dedupe.results]
            doc["dedupe"] = summarize(dedupe)
            doc["dry_run"] = not args.apply
        elif acting:
            doc["actions"] = [_action_dict(r) for r in results]
            doc["dry_run"] = not args.apply
        data = (json.dumps(doc, ensure_ascii=True, indent=2) + "\n").encode("ascii")
    elif args.format == "csv":
        data = render.to_csv(report)
    elif args.null:
        data = render.iter_null_separated(report)
    else:
        text = render.to_text(report)
        if acting:
            text += "\n" + "\n".join(lines_of(not args.apply)) + "\n"
        data = text.encode("utf-8", "surrogateescape")
    sys.stdout.flush()
    out = sys.stdout.buffer
    if isinstance(data, bytes):
        out.write(data)
    else:  # a stream of chunks: the whole output is never one object in memory
        for chunk in data:
            out.write(chunk)
    out.flush()
    if not args.quiet and (args.format != "text" or args.null):
        if acting and args.format == "csv" or acting and args.null:
            for line in lines_of(not args.apply):
                print(line, file=sys.stderr)
        print(f"{PROG}: {render.summary_line(report)}", file=sys.stderr)


_VERBS = {"delete": ("would delete", "deleted"), "hardlink": ("would hard-link", "hard-linked"),
          "symlink": ("would symlink", "symlinked")}


def action_lines(results: Sequence[ActionResult], *, dry_run: bool) -> list[str]:
    """Return one line per action result, then a line saying whether anything was changed."""
    lines = []
    for r in results:
        target = render.quote_path(r.action.target.path)
        keep = render.quote_path(r.action.keep.path)
        planned, done = _VERBS[r.action.op]
        if r.status == "planned":
            lines.append(f"{planned} {target} (same as {keep})")
        elif r.status == "done":
            lines.append(f"{done} {target} (same as {keep})")
        else:
            lines.append(f"{r.status} {target}: {r.detail}")
    done_count = sum(r.status == "done" for r in results)
    if dry_run:
        planned = sum(r.status == "planned" for r in results)
        lines.append(f"# dry run: {planned} of {len(results)} actions would be done (each file "
                     "re-checked and compared), nothing changed; repeat with --apply to act")
    else:
        lines.append(f"# {done_count} of {len(results)} actions done")
    return lines


def _action_dict(r: ActionResult) -> dict[str, str]:
    return {"op": r.action.op, "path": r.action.target.path, "keep": r.action.keep.path,
            "status": r.status, "detail": r.detail}
