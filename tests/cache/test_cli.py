"""`python -m cache stats|verify|compact`: output, exit status, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cache import PersistentLRU
from cache.cli import main


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "c.lru"
    with PersistentLRU(path, capacity=10) as lru:
        for i in range(30):
            lru[f"k{i}"] = i
        lru["k25"]
    return path


def test_stats_shows_counts_and_recency_ends(store: Path, capsys) -> None:
    assert main(["stats", str(store)]) == 0
    out = capsys.readouterr().out
    assert "entries:       10" in out
    assert "least recent:  'k20', 'k21'" in out
    assert "most recent:   'k25', 'k29'" in out


def test_verify_passes_a_good_file_and_fails_a_damaged_one(store: Path, capsys) -> None:
    assert main(["verify", str(store)]) == 0
    assert "every record intact" in capsys.readouterr().out
    data = bytearray(store.read_bytes())
    data[len(data) // 2] ^= 0xFF
    store.write_bytes(bytes(data))
    assert main(["verify", str(store)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m cache: error: ") and "corrupt store at offset" in err
    assert err.count("\n") == 1


def test_compact_shrinks_and_keeps_entries(store: Path, capsys) -> None:
    before = store.stat().st_size
    assert main(["compact", str(store)]) == 0
    assert store.stat().st_size < before
    with PersistentLRU(store, capacity=10) as lru:
        assert len(lru) == 10 and list(lru)[-1] == "k25"


def test_compact_works_on_a_store_in_use_and_the_user_follows(store: Path) -> None:
    with PersistentLRU(store, capacity=10) as lru:
        before = list(lru)
        assert main(["compact", str(store)]) == 0
        assert list(lru) == before  # the open follows the new generation of the file
        lru["new"] = 1
        assert lru["k25"] is not None and list(lru)[-2:] == ["new", "k25"]


def test_compact_refuses_a_store_open_exclusively(store: Path, capsys) -> None:
    with PersistentLRU(store, capacity=10, exclusive=True):
        assert main(["compact", str(store)]) == 1
    assert "exclusive=True" in capsys.readouterr().err


def test_a_foreign_file_is_one_line_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    assert main(["stats", str(path)]) == 1
    assert "not a fanmill record log" in capsys.readouterr().err


def test_runs_as_a_module_and_usage_errors_exit_2(store: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "cache", "stats", str(store)], capture_output=True, text=True)
    assert run.returncode == 0 and "entries:" in run.stdout
    run = subprocess.run([sys.executable, "-m", "cache", "frobnicate"], capture_output=True, text=True)
    assert run.returncode == 2
    run = subprocess.run([sys.executable, "-m", "cache", "--help"], capture_output=True, text=True)
    assert "exit status" in run.stdout
