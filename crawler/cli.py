"""`crawl [OPTIONS] SEED_URL...`: argparse -> CrawlConfig -> `asyncio.run(crawl(...))`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import logging
import os
import signal
import sys
from typing import Any

from crawler.config import DEFAULT_MAX_BODY, CrawlConfig
from crawler.errors import CrawlError, InvalidURL
from crawler.urls import normalize_url

EPILOG = """exit status:
  0   the crawl finished and every fetched URL got a response
  1   fatal error (bad state file, unusable output path, ...)
  2   usage error
  3   the crawl finished but some fetches failed (no response, a final 5xx, or a host whose
      robots.txt could not be fetched: each such host is named in the summary)
  130 interrupted (Ctrl-C); what was fetched is recorded and --state resumes it

sharing a crawl:
  crawl --workers N --state FILE ...        N processes on this machine, one SQLite state
  crawl --state postgresql://USER@HOST/DB   run it on any number of machines: they cooperate
  crawl status --state FILE_OR_URL          progress across workers (--json for a JSON object)
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crawl", description="Crawl sites politely and concurrently; resumable with --state.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("seeds", nargs="+", metavar="SEED_URL", help="absolute http(s) URLs to start from")
    p.add_argument("--out", metavar="FILE.jsonl", help="append one JSON record per fetched URL ('-': stdout)")
    p.add_argument("--state", metavar="DB", help="crawl state file; rerunning with it resumes the crawl")
    p.add_argument("--delay", type=float, default=1.0, metavar="SECONDS",
                   help="minimum gap between two requests sent to one host (default 1.0; robots.txt "
                        "Crawl-delay wins when longer)")
    p.add_argument("--per-host", type=int, default=1, metavar="N",
                   help="requests in flight to one host at most (default 1)")
    p.add_argument("--concurrency", type=int, default=16, metavar="N",
                   help="requests in flight overall at most (default 16)")
    p.add_argument("--max-pages", type=int, metavar="N",
                   help="stop after N fetched URLs (each worker, with several)")
    p.add_argument("--max-depth", type=int, metavar="N", help="follow links at most N hops from a seed")
    p.add_argument("--user-agent", default="fanmill", metavar="UA",
                   help="User-Agent sent and matched against robots.txt groups (default fanmill)")
    p.add_argument("--allow-host", action="append", default=[], metavar="GLOB",
                   help="also crawl hosts matching GLOB (repeatable; e.g. '*.example.com')")
    p.add_argument("--allow-private", action="store_true",
                   help="allow private, loopback, link-local and multicast targets beyond the seeds")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="time limit of one request, body included (default 30)")
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, metavar="BYTES",
                   help="bodies are cut off beyond this size, recorded as an error (default 10 MiB)")
    p.add_argument("--max-redirects", type=int, default=5, metavar="N",
                   help="redirect hops followed from one URL (default 5)")
    p.add_argument("--max-retries", type=int, default=2, metavar="N",
                   help="retries of a transient failure: timeout, connection, 429, 5xx (default 2)")
    p.add_argument("--recrawl", type=_age, metavar="AGE",
                   help="with an existing --state: fetch again every URL fetched more than AGE ago "
                        "(e.g. 30m, 6h, 7d; 0 = all), asking If-None-Match / If-Modified-Since; a 304 "
                        "is recorded as unchanged")
    p.add_argument("--sitemaps", action="store_true",
                   help="also start from each in-scope host's sitemaps: robots.txt Sitemap: lines, "
                        "else /sitemap.xml (indexes and gzip read; 50,000 URLs and 50 MB a file)")
    p.add_argument("--warc", metavar="DIR",
                   help="archive every exchange (robots.txt included) as WARC/1.1 request and "
                        "response records, gzip per record, in DIR (a resumed crawl adds a new file)")
    p.add_argument("--warc-max-size", type=_size, default=1 << 30, metavar="SIZE",
                   help="start a new WARC file once one passes SIZE (bytes, or with K/M/G; "
                        "default 1G, as wget and Heritrix)")
    p.add_argument("--handler", type=_handler, metavar="MODULE:FUNCTION",
                   help="call FUNCTION(page) for every fetched page; it may return or yield URLs "
                        "to follow and dicts (items, written to --items)")
    p.add_argument("--items", metavar="FILE.jsonl",
                   help="append the handler's items, one JSON object per line ('-': stdout)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="run N worker processes sharing the crawl through --state (default 1: "
                        "one process; each worker writes its own --out, --items and WARC files, "
                        "its id in their names)")
    p.add_argument("--lease", type=float, default=30.0, metavar="SECONDS",
                   help="with several workers: how long a worker's claim on a host lasts without "
                        "a heartbeat; a dead worker's hosts pass to another after this (default 30)")
    p.add_argument("--worker-id", help=argparse.SUPPRESS)  # set by --workers for its children
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line and no summary")
    return p


def _loop_factory() -> Any:
    """uvloop's event loop when installed (about 10% less CPU per page in the bench), else
    asyncio's; FANMILL_ASYNCIO=1 asks for asyncio's."""
    if os.environ.get("FANMILL_ASYNCIO") == "1":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _quantity(text: str, units: dict[str, float], kind: str, example: str) -> float:
    """A number with an optional one-letter unit suffix (case-insensitive), times that unit."""
    clean = text.strip().lower()
    factor = units.get(clean[-1:], 1)
    number = clean[:-1] if clean[-1:] in units else clean
    try:
        value = float(number) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {kind}: {text!r} (e.g. {example})") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{kind} cannot be negative")
    return value


def _size(text: str) -> int:
    """'1073741824', '512K', '100M', '1G' (a trailing B or iB is allowed) -> bytes."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    value = int(_quantity(text.strip().upper().removesuffix("B").removesuffix("I"), units,
                          "a size", "1G, 500M"))
    if value < 1:
        raise argparse.ArgumentTypeError("a size must be at least 1 byte")
    return value


def _age(text: str) -> float:
    """'0', '90', '45s', '30m', '6h', '7d', '2w' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    return _quantity(text, units, "an age", "30m, 6h, 7d")


def _handler(spec: str) -> Any:
    """'package.module:function' -> the function (the current directory is importable)."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise argparse.ArgumentTypeError(f"expected MODULE:FUNCTION, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module's own error at import
        raise argparse.ArgumentTypeError(
            f"cannot import {module_name}: {exc.__class__.__name__}: {exc}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise argparse.ArgumentTypeError(f"{module_name} has no function {name!r}")
    return function


class _Progress:
    """The live progress line on a terminal (stderr)."""

    def __init__(self) -> None:
        self.last_pages = 0

    def __call__(self, snap: dict[str, Any]) -> None:
        rate = (snap["pages"] - self.last_pages) / 0.5
        self.last_pages = snap["pages"]
        sys.stderr.write(
            f"\r{snap['pages']} pages, {rate:.0f}/s, {snap['hosts']} hosts, "
            f"{snap['in_flight']} in flight, {snap['queued']} queued, {snap['errors']} errors\x1b[K")
        sys.stderr.flush()


def _check_sharing(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bool:
    """Whether this process is one worker of a shared crawl; refuse what sharing cannot do."""
    from crawler.state import is_postgres_url

    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.lease <= 0:
        parser.error("--lease must be > 0")
    shared = args.workers > 1 or bool(args.worker_id) or is_postgres_url(args.state)
    if args.workers > 1 and not args.state:
        parser.error("--workers needs --state (the file or database the workers share)")
    if shared:
        for name in ("out", "items"):
            if getattr(args, name) == "-":
                parser.error(f"--{name} - cannot be shared by several workers: give a file name "
                             "(each worker writes its own)")
        if args.recrawl is not None:
            parser.error("--recrawl is not supported with several workers or PostgreSQL yet")
    return shared


def main(argv: list[str] | None = None) -> int:
    """Run the crawl command; return the exit status (see EPILOG)."""
    # NumPy (SimHash) loads with the first page; its OpenBLAS would start a thread per core for
    # nothing (SimHash does no linear algebra): ~80 ms of CPU at every start
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # The collector's young generation at 20,000 tracked objects, not 700: a crawl keeps few
    # cycles, yet the default threshold ran ~250 collections over a 20,000-page crawl, 0.12-0.19 s
    # of its ~5 s of CPU; at 20,000, 3 collections and 0.015 s (5 alternated runs, scratch). The
    # command's own process only: crawler.crawl() embedded in an application leaves its GC alone.
    gc.set_threshold(20_000, *gc.get_threshold()[1:])
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["status"]:
        from crawler.cli_workers import status_main

        return status_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    shared = _check_sharing(parser, args)
    try:
        config = CrawlConfig(
            delay=args.delay, per_host=args.per_host, concurrency=args.concurrency,
            max_pages=args.max_pages, max_depth=args.max_depth, user_agent=args.user_agent,
            allow_hosts=tuple(args.allow_host), allow_private=args.allow_private,
            timeout=args.timeout, max_body=args.max_body, max_redirects=args.max_redirects,
            max_retries=args.max_retries, state=args.state, out=args.out, warc=args.warc,
            warc_max_size=args.warc_max_size, items=args.items, sitemaps=args.sitemaps,
            recrawl=args.recrawl, lease=args.lease)
        if shared:
            from dataclasses import replace

            from crawler.cli_workers import tagged
            from crawler.state.shared import worker_id

            wid = args.worker_id or worker_id()
            config = replace(config, worker=wid, out=tagged(args.out, wid),
                             items=tagged(args.items, wid), warc_prefix=f"fanmill-{wid}")
    except ValueError as exc:
        parser.error(str(exc))
    if args.recrawl is not None and not args.state:
        parser.error("--recrawl needs --state (the crawl to fetch again)")
    if args.items and not args.handler:
        parser.error("--items needs --handler (the items are what the handler gives)")
    for seed in args.seeds:
        try:
            normalize_url(seed)
        except InvalidURL as exc:
            parser.error(f"seed {seed!r}: {exc}")
    logging.basicConfig(level=logging.WARNING, format="crawl: %(message)s")
    if args.worker_id:
        # started by a --workers parent, which passes Ctrl-C on: honour it even if the parent
        # itself was started with SIGINT ignored (a background job), which we would inherit
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.workers > 1 and not args.worker_id:
        from crawler.cli_workers import run_workers

        try:
            return run_workers(argv, args.workers, args.state, args.quiet)
        except CrawlError as exc:
            print(f"crawl: error: {exc}", file=sys.stderr)
            return 1
    from crawler.engine import crawl  # here: a --workers parent (above) never needs it

    progress = _Progress() if not args.quiet and sys.stderr.isatty() else None
    lock = contextlib.nullcontext()
    if args.state and not shared:
        from crawler.cli_workers import crawl_lock

        lock = crawl_lock(args.state)  # no --workers crawl may share the file meanwhile
    try:
        with lock, asyncio.Runner(loop_factory=_loop_factory()) as runner:
            summary = runner.run(crawl(args.seeds, config, on_progress=progress,
                                       on_page=args.handler))
    except BrokenPipeError:
        # the reader of --out - went away (e.g. `| head`): stop quietly, as json.tool does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("\ncrawl: interrupted", file=sys.stderr)
        return 130
    except CrawlError as exc:
        print(f"crawl: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"crawl: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if progress is not None:
            sys.stderr.write("\n")
    if not args.quiet:
        for line in summary.lines():
            print(line, file=sys.stderr)
    return 3 if summary.failed else 0
