"""A private nginx for the crawl benchmarks: static sites on loopback, one 127.0.1.x address per
host on one port, `daemon off` as our child (stopped at the end, also on failure), one worker,
no access log unless asked (`serve(..., access_log=PATH)`: one line per request, TIMING_FORMAT);
its CPU read from /proc/<pid>/schedstat (master + workers). `serve(..., cpu=N)` keeps it on CPU N
(see server_core()).

`ensure_apt(binary_or_path, package)` installs a Debian package with apt when missing (the bench
runs as root on the build machine; `apt-get update` runs once per process)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fixtures.site import Truth, build_site

_UPDATED = False


def ensure_apt(present: str | Path, package: str) -> None:
    """Install *package* with apt-get unless *present* (a command on PATH, or a path) exists."""
    global _UPDATED
    if isinstance(present, Path) and present.exists():
        return
    if isinstance(present, str) and shutil.which(present):
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"{package} is missing and installing it needs root: "
                           f"apt-get install {package}")
    print(f"installing {package} with apt ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _UPDATED:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        _UPDATED = True
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def nginx_binary() -> str:
    """The nginx executable, installed (nginx-light) when missing."""
    ensure_apt("nginx", "nginx-light")
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(found):
        raise RuntimeError("nginx-light installed but no nginx binary found")
    return found


def free_port(addresses: list[str]) -> int:
    """A port free on every address in *addresses* (checked by binding each)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((addresses[0], 0))
            port = s.getsockname()[1]
        try:
            for address in addresses:
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((address, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on every bench address")


def _cpu_seconds(pid: int) -> float:
    """CPU seconds process *pid* has run: /proc/<pid>/schedstat (nanoseconds on CPU, user and
    system together) when the kernel has it, else utime + stime of /proc/<pid>/stat (ticks)."""
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(entry))
    return out


@dataclass
class Nginx:
    """A running private nginx: its master process, port, and the workers' pids."""

    proc: subprocess.Popen[bytes]
    port: int
    prefix: Path
    workers: list[int]

    def cpu(self) -> float:
        """CPU seconds of master and workers so far; a worker that was replaced
        is noticed (its successor is read from then on) and reported on stderr."""
        now = _children(self.proc.pid)
        if sorted(now) != sorted(self.workers):
            print(f"warning: nginx workers changed {self.workers} -> {now}", file=sys.stderr)
            self.workers = now
        total = _cpu_seconds(self.proc.pid)
        for pid in self.workers:
            try:
                total += _cpu_seconds(pid)
            except OSError:
                pass
        return total

    def requests(self) -> int:
        """Requests served so far (stub_status on the status address; that request included)."""
        with socket.create_connection((STATUS_ADDRESS, self.port), timeout=10) as s:
            s.sendall(b"GET /status HTTP/1.0\r\nHost: status\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        # "Active connections: 1 \nserver accepts handled requests\n 5 5 7 \n..."
        lines = data.split(b"\r\n\r\n", 1)[1].decode().splitlines()
        return int(lines[2].split()[2])

    def stop(self) -> None:
        """Stop nginx (SIGQUIT: graceful, then SIGKILL after 10 s) and reap it."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for pid in self.workers:  # a worker left behind by a killed master
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


STATUS_ADDRESS = "127.0.1.254"  # nginx's stub_status, counted apart from the sites
# With serve(access_log=...): "$msec $request_time $server_addr $status $request_uri" per request:
# the answer's end (seconds, ms resolution) and how long since the request's first byte was read,
# so the request started at msec - request_time; the site's address, the status, the raw path.
TIMING_FORMAT = "$msec $request_time $server_addr $status $request_uri"


def _config(prefix: Path, port: int, roots: dict[str, Path], access_log: Path | None = None) -> str:
    log = (f"log_format timing '{TIMING_FORMAT}';\n    access_log {access_log} timing;"
           if access_log is not None else "access_log off;")
    status_log = " access_log off;" if access_log is not None else ""
    servers = "\n".join(
        f"    server {{ listen {address}:{port}; root {root}; index index.html; }}"
        for address, root in roots.items())
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    charset utf-8;
    {log}
    log_not_found off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{ listen {STATUS_ADDRESS}:{port};{status_log} location /status {{ stub_status; }} }}
{servers}
}}
"""


def server_core() -> int | None:
    """The CPU a single-client bench keeps nginx on: the last one, when there are two or more.

    A crawled server runs on its own machine; here it shares the client's two cores, and left to
    the scheduler its worker runs now on one core, now on the other, and the client's process
    follows it around. Then the client's CPU per page rises with anything that changes its
    timing, not only with the work added: in bench/crawler/loop_burden.py's 6 pairs on the
    throughput site, a 20 µs loop after each fetch raised the rest of the crawl by +17.2 and +9.9
    µs a page with nginx unpinned (two runs), by -10.7 with nginx kept on CPU 1. Keeping nginx on
    one core measures the client as it runs against a remote server; the client itself is not
    pinned (its threads go where the scheduler puts them). (It did not move cpu_per_page's
    `--warc` ratio: +16% and +18% pinned, +16..+21% before.)"""
    count = len(os.sched_getaffinity(0))
    return max(os.sched_getaffinity(0)) if count >= 2 else None


def parse_cpu(text: str) -> int | None:
    """A --server-cpu value: a CPU number, or "none" (nginx wherever the scheduler puts it)."""
    return None if text == "none" else int(text)


@contextmanager
def serve(prefix: Path, roots: dict[str, Path], port: int | None = None,
          access_log: Path | None = None, cpu: int | None = None) -> Iterator[Nginx]:
    """Serve each address -> document root of *roots* on one port until the block exits; with
    *access_log*, every site request is logged there in TIMING_FORMAT (stub_status requests not);
    with *cpu*, nginx (master and workers) runs on that CPU only."""
    binary = nginx_binary()
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "tmp").mkdir(exist_ok=True)
    port = port or free_port([*roots, STATUS_ADDRESS])
    conf = prefix / "nginx.conf"
    conf.write_text(_config(prefix, port, roots, access_log))
    (prefix / "error.log").unlink(missing_ok=True)
    test = subprocess.run([binary, "-t", "-q", "-p", str(prefix), "-c", str(conf), "-e",
                           str(prefix / "error.log")], capture_output=True, text=True)
    if test.returncode:
        raise RuntimeError(f"nginx config rejected: {test.stderr.strip()}")
    proc = subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf), "-e",
                             str(prefix / "error.log")], stdin=subprocess.DEVNULL,
                            # the workers nginx forks inherit the affinity
                            preexec_fn=None if cpu is None else (
                                lambda: os.sched_setaffinity(0, {cpu})))
    server = Nginx(proc, port, prefix, [])
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                log = (prefix / "error.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"nginx exited {proc.returncode}: {log}")
            try:
                with socket.create_connection((STATUS_ADDRESS, port), timeout=1):
                    pass
                server.workers = _children(proc.pid)
                if server.workers:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not start listening within 20 s")
            time.sleep(0.05)
        yield server
    finally:
        server.stop()


def write_plain_site(root: Path, hosts: int, pages: int, seed: int,
                     port: int) -> tuple[dict[str, Path], list[str], Truth]:
    """The fixture generator's plain site as static files under *root*, one directory per
    127.0.1.x address (the port baked into the links); return the document roots by address,
    the seeds and the generator's truth."""
    site = build_site(hosts, pages, seed=seed, features="plain")
    shutil.rmtree(root, ignore_errors=True)
    roots: dict[str, Path] = {}
    for host in site.seed_hosts:
        base = root / host.address
        roots[host.address] = base
        base.mkdir(parents=True)
        (base / "robots.txt").write_text(host.robots_body)
        for path, page in host.pages.items():
            assert "?" not in path and page.status == 200 and page.bytes_body is None, path
            file = base / ("index.html" if path == "/" else path.lstrip("/"))
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(page.body.replace("@PORT@", str(port)), encoding="utf-8")
    seeds = [f"http://{h.address}:{port}/" for h in site.seed_hosts]
    return roots, seeds, site.truth(port, seeds=seeds, user_agent="fanmill")
