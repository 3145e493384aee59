"""Seeded benchmark corpora for dedup (small, large, mixed) with ground truth known by construction.

The truth is computed from how each file was made (a recipe: which random base, which byte
flipped), never by reading the files back with any tool, so it is independent of every tool
under test. Groups are sets of relative paths; two recipes are equal iff the bytes are equal.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import stat
from collections.abc import Hashable
from dataclasses import dataclass

from fixtures.trees import build_tree, mixed_spec

MIB = 1024 * 1024


@dataclass(frozen=True)
class Corpus:
    """A built corpus: its root, the truth (groups of relative paths), and its parameters."""

    name: str
    root: str
    truth: list[list[str]]
    files: int
    total_bytes: int
    run_as_nobody: bool = False


def _manifest_ok(root: str, params: dict) -> Corpus | None:
    # The manifest sits next to the root (root + ".json"), so it goes with a tmpfs corpus too.
    try:
        with open(root + ".json", encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    if doc.get("params") != params or not os.path.isdir(root):
        return None
    return Corpus(doc["name"], root, doc["truth"], doc["files"], doc["total_bytes"])


def _save(corpus: Corpus, params: dict) -> Corpus:
    doc = {"name": corpus.name, "params": params, "truth": corpus.truth, "files": corpus.files,
           "total_bytes": corpus.total_bytes}
    with open(corpus.root + ".json", "w", encoding="utf-8") as f:
        json.dump(doc, f)
    return corpus


def _truth(recipes: dict[str, Hashable]) -> list[list[str]]:
    by_recipe: dict[Hashable, list[str]] = {}
    for path, recipe in recipes.items():
        by_recipe.setdefault(recipe, []).append(path)
    return sorted(sorted(paths) for paths in by_recipe.values() if len(paths) > 1)


def _flip(data: bytes, pos: int, value: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= value
    return bytes(out)


def build_small(work: str, *, files: int, seed: int = 4) -> Corpus:
    """~30% copies, ~10% same-size one-byte traps, sizes log-distributed over 1 B–64 KiB, 50 empty."""
    root = os.path.join(work, "small")
    params = {"files": files, "seed": seed, "v": 2}
    if (done := _manifest_ok(root, params)) is not None:
        return done
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(seed)
    originals: list[tuple[int, bytes]] = []
    recipes: dict[str, Hashable] = {}
    total = 0
    made_dirs: set[str] = set()
    for i in range(files):
        rel = f"s{i % 97:02d}/t{(i // 97) % 11}/f{i:06d}.bin"
        r = rng.random()
        if i < 50:
            recipe, data = ("empty", i), b""  # empty files: each its own "recipe" (not reported)
        elif r < 0.30 and originals:
            oid, data = rng.choice(originals)
            recipe = ("orig", oid)
        elif r < 0.42 and originals:
            oid, base = rng.choice(originals)
            pos = rng.choice([0, len(base) // 2, len(base) - 1])
            value = rng.randrange(1, 256)
            recipe, data = ("flip", oid, pos, value), _flip(base, pos, value)
        else:
            data = rng.randbytes(int(2 ** rng.uniform(0, 16)))
            recipe = ("orig", i)
            originals.append((i, data))
        parent = os.path.dirname(rel)
        if parent not in made_dirs:
            os.makedirs(os.path.join(root, parent), exist_ok=True)
            made_dirs.add(parent)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
        # Tiny random files (sizes go down to 1 byte) collide by chance, so two recipes can make
        # the same bytes: the truth is the generated content itself, hashed here, not the recipe.
        recipes[rel] = recipe if not data else ("content", hashlib.sha256(data).digest())
        total += len(data)
    corpus = Corpus("small", root, _truth(recipes), files, total)
    return _save(corpus, params)


def build_large(work: str, *, scale: float = 1.0, seed: int = 5) -> Corpus:
    """~150 files of 1–56 MiB (times *scale*): copies and same-size files that differ only in the
    first, middle or last byte, or share both ends and differ in the middle."""
    root = os.path.join(work, "large")
    params = {"scale": scale, "seed": seed, "v": 1}
    if (done := _manifest_ok(root, params)) is not None:
        return done
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    rng = random.Random(seed)
    recipes: dict[str, Hashable] = {}
    total = 0

    def write(rel: str, data: bytes, recipe: Hashable) -> None:
        nonlocal total
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        recipes[rel] = recipe
        total += len(data)

    for b in range(60):
        size = max(4096, int(2 ** rng.uniform(20, 25.8) * scale))
        base = rng.randbytes(size)
        write(f"base/b{b:02d}.dat", base, ("base", b))
        kind = b % 6
        if kind in (0, 1):
            write(f"copies/c{b:02d}.dat", base, ("base", b))
        if kind == 1:
            write(f"more/c{b:02d}-again.dat", base, ("base", b))
        if kind in (2, 3, 4):
            pos = {2: 0, 3: size // 2, 4: size - 1}[kind]
            write(f"traps/t{b:02d}-byte{pos}.dat", _flip(base, pos, 0x5A), ("flip", b, pos))
            if b % 2:
                write(f"copies/c{b:02d}.dat", base, ("base", b))
        if kind == 5:
            middle = rng.randbytes(size - 2 * 65536) if size > 2 * 65536 else b""
            if middle:
                data = base[:65536] + middle + base[-65536:]  # same ends, different middle
                write(f"traps/t{b:02d}-ends.dat", data, ("ends", b))
    corpus = Corpus("large", root, _truth(recipes), len(recipes), total)
    return _save(corpus, params)


def build_mixed(work: str) -> Corpus:
    """The fixtures.trees mixed tree, with its unreadable file and directory made unreadable
    (chmod 000): tools must run as an unprivileged user for that to bite (root reads anything)."""
    root = os.path.join(work, "mixed")
    if os.path.exists(root):
        for dirpath, _dirs, _files in os.walk(root):
            os.chmod(dirpath, 0o755)
        for rel in ("locked", "unreadable/secret"):
            if os.path.exists(os.path.join(root, rel)):
                os.chmod(os.path.join(root, rel), 0o755)
        shutil.rmtree(root)
    spec, groups = mixed_spec()
    build_tree(root, spec)
    os.chmod(os.path.join(root, "unreadable/secret"), 0)
    os.chmod(os.path.join(root, "locked"), 0)
    unreadable = {"unreadable/secret", "locked/inside"}
    truth = []
    for group in groups:
        paths = sorted(os.fsdecode(p) for p in group if os.fsdecode(p) not in unreadable)
        if len(paths) > 1:
            truth.append(paths)
    files = sum(1 for v in spec.values() if isinstance(v, bytes))
    total = sum(len(v) for v in spec.values() if isinstance(v, bytes))
    return Corpus("mixed", root, sorted(truth), files, total, run_as_nobody=True)


def is_regular(path: str) -> bool:
    """Return True when *path* is a regular file (not following symlinks)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def scale_root(work: str) -> str:
    """Return where the scale corpus goes: tmpfs (/dev/shm) when it has room, else *work*.

    This VM keeps only about 2 GB of file pages cached (the rest is reclaimed within minutes),
    and a million files need a million pages: on disk every run would read cold. tmpfs pages
    stay in memory, which is the warm page cache the other corpora are measured on.
    """
    shm = "/dev/shm"
    try:
        st = os.statvfs(shm)
        if st.f_bavail * st.f_frsize > 8 * 2**30:
            return os.path.join(shm, "fanmill-bench-dedup-scale")
    except OSError:
        pass
    return os.path.join(work, "scale")


def build_scale(root: str, *, files: int, seed: int = 6) -> Corpus:
    """*files* files of 1 B–4 KiB (log-distributed) in 1,000 directories: ~30% copies, ~10%
    same-size one-byte traps; the truth is the content itself (tiny files collide by chance)."""
    params = {"files": files, "seed": seed, "v": 1}
    if (done := _manifest_ok(root, params)) is not None:
        return Corpus("scale", root, done.truth, done.files, done.total_bytes)
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(seed)
    dirs = max(1, min(1000, files // 1000))
    for d in range(dirs):
        os.makedirs(os.path.join(root, f"d{d:03d}"))
    originals: list[bytes] = []
    by_content: dict[bytes, list[str]] = {}
    total = 0
    for i in range(files):
        rel = f"d{i % dirs:03d}/f{i:07d}"
        r = rng.random()
        if r < 0.30 and originals:
            data = rng.choice(originals)
        elif r < 0.40 and originals:
            base = rng.choice(originals)
            data = _flip(base, rng.randrange(len(base)), rng.randrange(1, 256))
        else:
            data = rng.randbytes(int(2 ** rng.uniform(0, 12)))
            originals.append(data)
        fd = os.open(os.path.join(root, rel), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        by_content.setdefault(hashlib.sha256(data).digest(), []).append(rel)
        total += len(data)
    truth = sorted(sorted(paths) for paths in by_content.values() if len(paths) > 1)
    return _save(Corpus("scale", root, truth, files, total), params)
