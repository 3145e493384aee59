"""Issue 19 bench: --dedupe vs duperemove, --dirs vs rmlint -D, FastCDC packages' MB/s per core.

`.venv/bin/python -m bench.dedup.beyond` (as root: it loop-mounts a btrfs image). Writes the
"dedup-beyond" block inside the dedup section of bench/RESULTS.md (`make bench-dedup` keeps it).
FANMILL_BENCH_ROUNDS=N sets rounds (default 3); the median is reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench.dedup import cdc_speed
from bench.dedup.peers import REPO
from bench.results import RESULTS, machine_line

PY = os.path.join(REPO, ".venv", "bin", "python")
DEDUP = [PY, "-m", "dedup"]
MiB = 1024 * 1024


def sh(argv: list[str], **kw) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    """Run *argv*, fail loudly."""
    return subprocess.run(argv, check=True, capture_output=True, **kw)


def ensure_tools() -> None:
    """Install duperemove, rmlint and btrfs-progs from Debian when missing."""
    if all(shutil.which(t) for t in ("duperemove", "rmlint", "mkfs.btrfs")):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "duperemove",
                    "rmlint", "btrfs-progs"], check=True, env=env)


# ------------------------------------------------------------------ --dedupe vs duperemove


def build_extent_tree(root: str) -> tuple[dict[str, str], int]:
    """Write copies with write() (never reflinked); return sha256 per path and the ideal savings."""
    rng = random.Random(1919)
    digests, ideal = {}, 0
    os.makedirs(root)
    for i in range(24):
        size = int(256 * 1024 * (96 ** rng.random())) + rng.randrange(4096)  # 256 KiB .. 24 MiB
        data = b"".join(rng.randbytes(min(MiB, size - o)) for o in range(0, size, MiB))
        copies = 1 + rng.randrange(3) if i < 18 else 0
        digest = hashlib.sha256(data).hexdigest()
        for c in range(copies + 1):
            path = os.path.join(root, f"d{c}", f"f{i}.bin")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            digests[path] = digest
        ideal += copies * size
    os.sync()
    return digests, ideal


def shared_savings(mount: str, root: str) -> int:
    """Return bytes the tree no longer occupies thanks to sharing (btrfs filesystem du)."""
    sh(["btrfs", "filesystem", "sync", mount])
    out = sh(["btrfs", "filesystem", "du", "-s", "--raw", root]).stdout.decode().splitlines()[-1]
    total, exclusive, set_shared = (int(x) for x in out.split()[:3])
    return total - exclusive - set_shared


def check_tree(digests: dict[str, str]) -> bool:
    """Return True when every file still holds its bytes."""
    for path, digest in digests.items():
        with open(path, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != digest:
                return False
    return True


def bench_dedupe(rounds: int) -> str:
    """Time --dedupe --apply and duperemove -dr on the same loop-mounted btrfs tree."""
    work = tempfile.mkdtemp(prefix="fanmill-bench-btrfs-")
    image, mount = os.path.join(work, "img"), os.path.join(work, "mnt")
    os.mkdir(mount)
    with open(image, "wb") as f:
        f.truncate(1536 * MiB)
    sh(["mkfs.btrfs", "-q", "-f", image])
    device = sh(["losetup", "--find", "--show", image]).stdout.decode().strip()
    try:
        sh(["mount", device, mount])
        try:
            return _dedupe_rounds(mount, rounds)
        finally:
            sh(["umount", mount])
    finally:
        sh(["losetup", "-d", device])
        shutil.rmtree(work, ignore_errors=True)


def _dedupe_rounds(mount: str, rounds: int) -> str:
    tools = {"dedup --dedupe --apply": lambda root: DEDUP + ["--dedupe", "--apply", "-q", root],
             "duperemove -dr": lambda root: ["duperemove", "-dr", root]}
    walls: dict[str, list[float]] = {t: [] for t in tools}
    saved: dict[str, list[int]] = {t: [] for t in tools}
    intact: dict[str, bool] = dict.fromkeys(tools, True)
    ideal = files = total = 0
    for r in range(rounds):
        order = list(tools) if r % 2 == 0 else list(reversed(tools))
        for name in order:
            root = os.path.join(mount, "tree")
            shutil.rmtree(root, ignore_errors=True)
            digests, ideal = build_extent_tree(root)
            files, total = len(digests), sum(os.path.getsize(p) for p in digests)
            before = shared_savings(mount, root)
            started = time.perf_counter()
            subprocess.run(tools[name](root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            walls[name].append(time.perf_counter() - started)
            saved[name].append(shared_savings(mount, root) - before)
            intact[name] &= check_tree(digests)
    lines = [f"**--dedupe vs duperemove** — {files} files, {total / MiB:,.0f} MiB on a loop-mounted "
             f"btrfs image (copies written with write(), nothing shared before a run); ideal "
             f"savings {ideal / MiB:,.1f} MiB; tree rebuilt before every run, warm page cache; "
             f"{rounds} interleaved rounds; reclaimed = `btrfs filesystem du` total − (exclusive "
             "+ set shared).", "",
             "| tool | median wall s | reclaimed MiB | of ideal | contents intact |",
             "|---|---:|---:|---:|---|"]
    for name in tools:
        got = statistics.median(saved[name])
        lines.append(f"| {name} | {statistics.median(walls[name]):.2f} | {got / MiB:,.1f} | "
                     f"{got / ideal:.1%} | {'yes' if intact[name] else 'NO'} |")
    lines += ["", NOTE_DEDUPE]
    return "\n".join(lines)


NOTE_DEDUPE = ("Where the time goes: dedup first proves each group byte for byte in user space (the "
               "report must hold only identical files), then the kernel compares the same bytes "
               "again while sharing; duperemove (multithreaded) hashes blocks and leaves the only "
               "comparison to the kernel. Both reclaim the same bytes.")


# ------------------------------------------------------------------ --dirs vs rmlint -D


def build_dir_tree(root: str, projects: int) -> None:
    """Projects with subtrees, then whole, nested, partial and renamed copies of some of them."""
    rng = random.Random(7)
    for p in range(projects):
        for s in range(3):
            for f in range(5):
                path = os.path.join(root, "src", f"p{p}", f"s{s}", f"f{f}.dat")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as out:
                    out.write(rng.randbytes(rng.randrange(1, 20_000)))
    src = os.path.join(root, "src")
    for p in range(0, projects, 3):  # whole copies
        shutil.copytree(os.path.join(src, f"p{p}"), os.path.join(root, "backup", f"p{p}"))
    for p in range(1, projects, 9):  # nested deeper
        shutil.copytree(os.path.join(src, f"p{p}"), os.path.join(root, "old", "x", "y", f"p{p}"))
    for p in range(2, projects, 6):  # partial: one file differs
        dst = os.path.join(root, "partial", f"p{p}")
        shutil.copytree(os.path.join(src, f"p{p}"), dst)
        with open(os.path.join(dst, "s1", "f2.dat"), "ab") as out:
            out.write(b"!")
    for p in range(4, projects, 12):  # renamed file: not a copy under our definition
        dst = os.path.join(root, "renamed", f"p{p}")
        shutil.copytree(os.path.join(src, f"p{p}"), dst)
        os.rename(os.path.join(dst, "s0", "f0.dat"), os.path.join(dst, "s0", "g0.dat"))


def _median_run(argv: list[str], rounds: int, cwd: str) -> tuple[float, bytes]:
    walls, out = [], b""
    for _ in range(rounds):
        started = time.perf_counter()
        out = subprocess.run(argv, capture_output=True, cwd=cwd).stdout
        walls.append(time.perf_counter() - started)
    return statistics.median(walls), out


def bench_dirs(rounds: int, projects: int = 600) -> str:
    """Run dedup --dirs and rmlint -D -j on one tree; compare the directory groups."""
    work = tempfile.mkdtemp(prefix="fanmill-bench-dirs-")
    root = os.path.join(work, "t")
    try:
        build_dir_tree(root, projects)
        files = sum(len(f) for _, _, f in os.walk(root))
        plain, _ = _median_run(DEDUP + ["-q", "-0", root], rounds, work)
        ours_s, out = _median_run(DEDUP + ["-q", "--dirs", "--format", "json", root], rounds, work)
        ours = {frozenset(d["paths"]) for d in json.loads(out)["dirs"]}
        rm_json = os.path.join(work, "rm.json")
        theirs_s, _ = _median_run(["rmlint", "-D", "-j", "-T", "df,dd", "-o", f"json:{rm_json}",
                                   "-o", "summary:/dev/null", root], rounds, work)
        theirs = _rmlint_dirs(rm_json)
        loose_json = os.path.join(work, "rm-loose.json")
        _median_run(["rmlint", "-D", "-T", "df,dd", "-o", f"json:{loose_json}", "-o",
                     "summary:/dev/null", root], 1, work)
        loose = _rmlint_dirs(loose_json)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    same = "identical" if ours == theirs else (
        f"{len(ours & theirs)} common, {len(ours - theirs)} only dedup, "
        f"{len(theirs - ours)} only rmlint")
    return "\n".join([
        f"**--dirs vs rmlint -D** — {files:,} files in {projects} projects with whole, nested "
        "(3 levels deeper), partial (one file differs) and renamed-file copies; warm; "
        f"{rounds} rounds, median.", "",
        "| run | median wall s | duplicate-directory groups |", "|---|---:|---:|",
        f"| dedup (no --dirs) | {plain:.2f} | – |",
        f"| dedup --dirs | {ours_s:.2f} | {len(ours)} |",
        f"| rmlint -D -j (same layout required, as our definition) | {theirs_s:.2f} | {len(theirs)} |",
        f"| rmlint -D (names ignored) | – | {len(loose)} |", "",
        f"Groups, dedup --dirs against rmlint -D -j, compared as sets of paths: {same}. "
        f"--dirs costs {ours_s / plain:.2f}x a plain run (one extra metadata walk).",
    ])


def _rmlint_dirs(path: str) -> set[frozenset[str]]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    groups: dict[str, set[str]] = {}
    for entry in doc:
        if isinstance(entry, dict) and entry.get("type") == "duplicate_dir":
            groups.setdefault(entry["checksum"], set()).add(entry["path"])
    return {frozenset(g) for g in groups.values() if len(g) > 1}


# ------------------------------------------------------------------ chunking MB/s


def bench_cdc(rounds: int) -> str:
    """Chunking MB/s on one core for the FastCDC packages (bench/dedup/cdc_speed.py)."""
    rows = cdc_speed.measure(rounds)
    lines = [f"**Chunking, one core** — {cdc_speed.DATA_MB} MiB of seeded random bytes in memory, "
             f"avg_size 64 KiB, {rounds} rounds, median; {cdc_speed.versions()}.", "",
             "| chunker | MB/s | chunks |", "|---|---:|---:|"]
    lines += [f"| {name} | {mbs:,.0f} | {n:,} |" for name, mbs, n in rows]
    return "\n".join(lines)


def write_subsection(markdown: str) -> None:
    """Put *markdown* in the dedup-beyond block, inside the dedup section (added before its end)."""
    begin, end = "<!-- BEGIN dedup-beyond -->", "<!-- END dedup-beyond -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}\n"
    text = RESULTS.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.replace("<!-- END dedup -->", block + "<!-- END dedup -->", 1)
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, RESULTS)


def main() -> int:
    """Run the three comparisons and write the subsection."""
    rounds = int(os.environ.get("FANMILL_BENCH_ROUNDS", "3"))
    ensure_tools()
    version = sh(["duperemove", "--version"]).stdout.decode().strip()
    rm_version = re.search(rb"\d+\.\d+\.\d+", sh(["rmlint", "--version"]).stderr + sh(
        ["rmlint", "--version"]).stdout)
    parts = ["### beyond whole files — extents, directories, chunking (issue 19)", "",
             machine_line(), "",
             f"Command: `.venv/bin/python -m bench.dedup.beyond`. Versions: {version}; rmlint "
             f"{rm_version.group(0).decode() if rm_version else '?'}. The machine has 2 cores and "
             "was shared with other work during the run.", ""]
    for name, fn in (("dedupe", bench_dedupe), ("dirs", bench_dirs), ("cdc", bench_cdc)):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        parts += [fn(rounds), ""]
    markdown = "\n".join(parts)
    write_subsection(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
