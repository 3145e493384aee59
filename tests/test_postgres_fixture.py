"""The throwaway PostgreSQL of fixtures.postgres: unprivileged, socket-only, fresh databases, restartable."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import psycopg
import pytest

from fixtures import postgres

ROOT = Path(__file__).resolve().parents[1]


def query(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def test_server_runs_as_unprivileged_user(pg_url: str) -> None:
    [(data_dir, backend_pid)] = query(pg_url, "SELECT current_setting('data_directory'), pg_backend_pid()")
    expected = pwd.getpwnam(postgres.RUN_AS).pw_uid if os.geteuid() == 0 else os.geteuid()
    assert os.stat(data_dir).st_uid == expected
    assert os.stat(f"/proc/{backend_pid}").st_uid == expected


def test_listens_on_unix_socket_only(pg_cluster: postgres.Cluster, pg_url: str) -> None:
    [(listen, socket_dirs, server_addr)] = query(
        pg_url, "SELECT current_setting('listen_addresses'), "
                "current_setting('unix_socket_directories'), inet_server_addr()")
    assert listen == ""
    assert socket_dirs == str(pg_cluster.socket_dir)
    assert server_addr is None  # NULL: this connection came through the Unix socket


async def test_both_drivers_accept_the_url(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT current_user") == "fanmill"
    finally:
        await conn.close()
    async with await psycopg.AsyncConnection.connect(pg_url) as aconn:
        cur = await aconn.execute("SELECT current_database()")
        assert (await cur.fetchone())[0] == pg_url.split("/")[3].split("?")[0]


def test_each_database_is_distinct_and_empty(pg_url: str, make_pg_url: Callable[[], str]) -> None:
    other = make_pg_url()
    assert other != pg_url
    user_tables = "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
    assert query(pg_url, user_tables) == query(other, user_tables) == [(0,)]
    query(pg_url, "CREATE TABLE t (x int)")
    assert query(pg_url, user_tables) == [(1,)]
    assert query(other, user_tables) == [(0,)]


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_stop_then_start_keeps_the_data(pg_cluster: postgres.Cluster, pg_url: str, mode: str) -> None:
    query(pg_url, "CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
    # A checkpoint makes the row durable however the server stops (the tests' cluster commits
    # asynchronously: an immediate stop may lose the last commits, as a crash would).
    query(pg_url, "CHECKPOINT")
    pg_cluster.stop(mode)
    try:
        assert not pg_cluster.running()
        with pytest.raises(psycopg.OperationalError):
            query(pg_url, "SELECT 1")
    finally:
        pg_cluster.start()
    assert query(pg_url, "SELECT x FROM t") == [(42,)]


def run_cli(*cmd: str, **kwargs) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANMILL_TEST_PG")}
    return subprocess.Popen([sys.executable, "-m", "fixtures.postgres", "run", "--", *cmd],
                            cwd=ROOT, env=env, text=True, **kwargs)


def test_cli_runs_command_with_a_cluster_and_removes_it() -> None:
    script = ("import os, psycopg, sys; "
              "print(os.environ['FANMILL_TEST_PG_DIR']); "
              "psycopg.connect(os.environ['FANMILL_TEST_PG']).close(); sys.exit(3)")
    child = run_cli(sys.executable, "-c", script, stdout=subprocess.PIPE)
    out, _ = child.communicate()
    assert child.returncode == 3
    assert out.strip() and not Path(out.strip()).exists()


def test_cli_forwards_sigterm_and_cleans_up() -> None:
    script = "import os, sys, time; print(os.environ['FANMILL_TEST_PG_DIR'], flush=True); time.sleep(3600)"
    child = run_cli(sys.executable, "-c", script, stdout=subprocess.PIPE)
    base_dir = Path(child.stdout.readline().strip())  # the command runs: the cluster is up
    assert (base_dir / "data").is_dir()
    child.send_signal(signal.SIGTERM)
    child.wait()
    child.stdout.close()
    assert child.returncode == 128 + signal.SIGTERM
    assert not base_dir.exists()
