"""The `crawl` command: usage errors, fatal errors, records and exit status."""

from __future__ import annotations

import asyncio
import functools
import json

import pytest

from crawler.cli import main
from tests.crawler.loopback_site import Page, links, serve


def test_help_lists_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "130" in out and "exit status" in out and "--state" in out


def test_usage_errors_exit_2(capsys) -> None:
    for argv in ([], ["http://a/", "--per-host", "0"], ["http://a/", "--delay", "x"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_damaged_state_exits_1_with_one_line(tmp_path, capsys) -> None:
    # (a bad seed is a usage error, exit 2: tests/crawler/test_unreachable.py)
    bad = tmp_path / "state.db"
    bad.write_bytes(b"this is not a database" * 100)
    assert main(["http://127.0.2.1:9/", "--state", str(bad), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("crawl: error:") and "Traceback" not in err


async def test_records_on_stdout_and_exit_3_when_fetches_fail(tmp_path, capsys) -> None:
    pages = {(0, "/"): Page(body=links("/gone", "/boom")), (0, "/gone"): Page(status=410),
             (0, "/boom"): Page(status=500)}
    async with serve(pages, hosts=1) as site:
        # main() runs its own event loop: run it in a thread while this loop serves the site
        code = await asyncio.to_thread(
            main, [site.url(0, "/"), "--delay", "0", "--out", "-", "--max-retries", "0"])
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert sorted(r["status"] for r in records) == [200, 410, 500]
    assert code == 3 and "statuses: 200: 1, 410: 1, 500: 1" in captured.err


async def test_ctrl_c_exits_130_with_records_and_state_consistent(tmp_path) -> None:
    import signal
    import sqlite3
    import sys
    from pathlib import Path

    pages = {(0, "/"): Page(body=links(*[f"/p{i}" for i in range(40)]))}
    pages.update({(0, f"/p{i}"): Page(body="x") for i in range(40)})
    out, state = tmp_path / "o.jsonl", tmp_path / "s.db"
    def records_written() -> int:
        return out.read_text().count("\n") if out.exists() else 0

    async with serve(pages, hosts=1) as site:
        # Requests after the 5th record are held: Ctrl-C lands mid-crawl on a machine of any speed.
        site.hold_when = lambda: records_written() >= 5
        # SIGINT back to its default in the child, as at a terminal: a shell without job control
        # starts `cmd &` with SIGINT ignored, and the crawl (rightly) inherits that; this test
        # failed whenever the suite ran in the background (a CI runner, `make test &`)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "crawler", site.url(0, "/"), "--delay", "0.1", "--out", str(out),
            "--state", str(state), cwd=Path(__file__).resolve().parents[2],
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL))
        while records_written() < 3:
            assert proc.returncode is None, "the crawl ended before Ctrl-C"
            await asyncio.sleep(0.01)  # a poll: the held server keeps the crawl from ending
        proc.send_signal(signal.SIGINT)
        site.released.set()  # Ctrl-C must stop the crawl without waiting for a held answer
        _, err = await asyncio.wait_for(proc.communicate(), 300)  # a guard against a hang only
    assert proc.returncode == 130 and b"Traceback" not in err, err.decode()[-1500:]
    records = out.read_text().splitlines()
    with sqlite3.connect(state) as conn:
        done = conn.execute("SELECT count(*) FROM urls WHERE status = 'fetched'").fetchone()[0]
    conn.close()
    assert 3 <= len(records) < 41 and done == len(records)



async def test_broken_pipe_on_stdout_exits_quietly() -> None:
    import sys
    from pathlib import Path

    pages = {(0, "/"): Page(body=links(*[f"/p{i}" for i in range(200)]))}
    pages.update({(0, f"/p{i}"): Page(body="x" * 5000) for i in range(200)})
    async with serve(pages, hosts=1) as site:
        # Requests after robots.txt, "/" and one page are held until our end of the pipe is
        # closed: the crawl writes its later records into a closed pipe on a machine of any speed.
        site.hold_when = lambda: len(site.hits) > 3
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "crawler", site.url(0, "/"), "--delay", "0", "--out", "-", "-q",
            cwd=Path(__file__).resolve().parents[2],
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        await proc.stdout.readline()
        proc.stdout.feed_eof()
        transport = proc._transport  # close our end of the pipe, as `head` does  # noqa: SLF001
        transport.get_pipe_transport(1).close()
        site.released.set()
        err = await asyncio.wait_for(proc.stderr.read(), 300)  # guards against a hang only
        await asyncio.wait_for(proc.wait(), 300)
    assert proc.returncode == 0 and b"Traceback" not in err, err


@pytest.mark.parametrize("argv", [["--warc-max-size", "lots"], ["--warc-max-size", "0"],
                                  ["--recrawl", "-1h", "--state", "s.db"],
                                  ["--recrawl", "7y", "--state", "s.db"], ["--recrawl", "1d"]])
def test_sizes_and_ages_that_do_not_parse_are_usage_errors(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["http://127.0.0.1:9/", *argv])
    assert exc.value.code == 2 and "crawl: error:" in capsys.readouterr().err


def test_sizes_and_ages_parse_with_their_units() -> None:
    from crawler.cli import _age, _size

    assert [_size(t) for t in ("1G", "512k", "100MiB", "4096")] == [1 << 30, 512 << 10, 100 << 20,
                                                                    4096]
    assert [_age(t) for t in ("0", "90", "30m", "6h", "7d", "2w")] == [0, 90, 1800, 21600,
                                                                       604800, 1209600]
