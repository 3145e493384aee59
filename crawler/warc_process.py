"""`--warc` off the event loop: a WarcWriter in a child process, fed through a socket pair.

Why: the crawl's event loop is the crawler's bottleneck (one core), and every microsecond of work
on it cost more than itself. In alternated crawls of the nginx throughput site (1 KB pages), a
pure-Python loop of ~24 µs a page put in the group commit's flush raised the rest of the loop's
CPU by a median ~15 µs a page (6 pairs; cProfile counted the same calls in both, so it is the
same work run slower). Encoding WARC records costs ~25 µs a page, so in the loop it cost ~40. In
a child process it costs its own ~25 (on the other core), the loop only frames the bytes.

The protocol: frames of (kind, length, body). The parent sends exchanges (E), server-not-modified
revisits (N), flushes (F) and a close (C); the child answers every F and C with K (written and
handed to the OS) or an error (V: ValueError, O: OSError, R: anything else, with the message).
The engine awaits the answer to a flush before the state marks its URLs fetched, so durability is
the in-process writer's. The child ends with the parent: at the end of its input it writes
nothing more (what was not flushed was never acknowledged), and PR_SET_PDEATHSIG kills it if it
is mid-write; a resumed crawl repairs a torn tail as before.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import struct
import sys
import threading

from crawler.warc import GZIP_LEVEL, WarcWriter, _check_field, _check_target

_FRAME = struct.Struct("<cI")  # kind, body length
# fetched_at, truncated, then the lengths of url, ip, request head, response head, payload
_EXCHANGE = struct.Struct("<d?IIIII")
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_READ = 1 << 22  # the child reads up to this much at a time: a flush's exchanges in one call


def separate_process_possible() -> bool:
    """Whether a writer process can be forked here: Linux, and no other thread running (a fork
    copies every lock another thread might hold, and the child would wait on it forever)."""
    return sys.platform == "linux" and threading.active_count() == 1


def encode_exchange(kind: bytes, url: str, fetched_at: float, ip: str | None, request_head: bytes,
                    response_head: bytes, payload: bytes, truncated: bool) -> list[bytes]:
    """The parts of one E (exchange) or N (not-modified revisit: *payload* is the referred date,
    UTF-8) frame, to be joined."""
    u = url.encode("utf-8", "surrogatepass")
    i = ip.encode("utf-8", "surrogatepass") if ip else b""
    size = _EXCHANGE.size + len(u) + len(i) + len(request_head) + len(response_head) + len(payload)
    return [_FRAME.pack(kind, size),
            _EXCHANGE.pack(fetched_at, truncated, len(u), len(i), len(request_head),
                           len(response_head), len(payload)),
            u, i, request_head, response_head, payload]


def decode_exchange(buffer: bytes | bytearray, start: int, end: int,
                    ) -> tuple[str, float, str | None, bytes, bytes, bytes, bool]:
    """(url, fetched_at, ip, request head, response head, payload, truncated) of the frame body
    at buffer[start:end]."""
    fetched_at, truncated, lu, li, lq, lr, lp = _EXCHANGE.unpack_from(buffer, start)
    at = start + _EXCHANGE.size
    if at + lu + li + lq + lr + lp != end:
        raise ValueError("WARC exchange frame: the lengths do not add up")
    with memoryview(buffer) as view:  # no view may outlive this: the buffer is resized next
        url = str(view[at:at + lu], "utf-8", "surrogatepass")
        at += lu
        ip = str(view[at:at + li], "utf-8", "surrogatepass") if li else None
        at += li
        request_head = bytes(view[at:at + lq])
        at += lq
        response_head = bytes(view[at:at + lr])
        payload = bytes(view[at + lr:end])
    return url, fetched_at, ip, request_head, response_head, payload, truncated


def split_frames(buffer: bytes | bytearray) -> tuple[list[tuple[bytes, int, int]], int]:
    """The complete frames in *buffer*: [(kind, body start, body end)], and where the rest (an
    incomplete frame) begins."""
    frames = []
    end = len(buffer)
    at = 0
    while end - at >= _FRAME.size:
        kind, size = _FRAME.unpack_from(buffer, at)
        body = at + _FRAME.size
        if end - body < size:
            break
        frames.append((kind, body, body + size))
        at = body + size
    return frames, at


def _answer(exc: BaseException | None) -> bytes:
    """The frame that answers a flush or close: K, or the error's kind and message."""
    if exc is None:
        return _FRAME.pack(b"K", 0)
    kind = b"V" if isinstance(exc, ValueError) else b"O" if isinstance(exc, OSError) else b"R"
    text = str(exc).encode("utf-8", "replace")
    return _FRAME.pack(kind, len(text)) + text


def _raise_answer(kind: bytes, body: bytes) -> None:
    """Raise what an error answer carries; return on K."""
    if kind == b"K":
        return
    text = body.decode("utf-8", "replace")
    if kind == b"V":
        raise ValueError(text)
    if kind == b"O":
        raise OSError(text)
    raise RuntimeError(f"WARC writer process failed: {text}")


class WarcProcess:
    """WarcWriter's interface, the writing done by a forked child (see the module docstring).

    flush() only queues the waiting exchanges and a flush request; `await flushed()` sends them
    and returns once the child has written them and handed them to the OS. Cancelled, it loses
    nothing: the next flushed() or close() goes on from where it stopped."""

    def __init__(self, directory: str, *, max_size: int = 1 << 30, info: dict[str, str],
                 prefix: str = "fanmill", gzip_level: int = GZIP_LEVEL) -> None:
        """Fork the writer; it opens *directory* as WarcWriter does (errors are raised here)."""
        parent, child = socket.socketpair()
        parent_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            _child_main(child, parent_pid, directory, dict(
                max_size=max_size, info=info, prefix=prefix, gzip_level=gzip_level))
        child.close()
        self._pid: int | None = pid
        self._sock = parent
        self._parts: list[bytes] = []  # frames not yet handed to flush()
        self._unsent = memoryview(b"")  # frames handed to flush(), not yet sent
        self._answers_due = 0  # flushes sent (or to send) whose answer has not come
        self._inbox = bytearray()
        self._waiting = asyncio.Lock()
        self._closed = False
        try:
            kind, body = self._read_answer_blocking()
            _raise_answer(kind, body)
        except BaseException:
            self._closed = True
            self._sock.close()
            self._reap()
            raise
        parent.setblocking(False)  # flushed() waits on the event loop, never in a call

    def write_exchange(self, *, url: str, fetched_at: float, ip: str | None, request_head: bytes,
                       response_head: bytes, payload: bytes, truncated: bool) -> None:
        """Queue an exchange (WarcWriter.write_exchange)."""
        if self._closed:
            raise ValueError("WarcWriter is closed")
        _check_target(url, ip)  # raises here, in the caller, as the in-process writer does
        self._parts += encode_exchange(b"E", url, fetched_at, ip, request_head, response_head,
                                       payload, truncated)

    def write_revisit_not_modified(self, *, url: str, fetched_at: float, ip: str | None,
                                   request_head: bytes, response_head: bytes,
                                   refers_to_date: str | None) -> None:
        """Queue a server-not-modified revisit (WarcWriter.write_revisit_not_modified)."""
        if self._closed:
            raise ValueError("WarcWriter is closed")
        _check_target(url, ip)
        date = _check_field(refers_to_date).encode() if refers_to_date else b""
        self._parts += encode_exchange(b"N", url, fetched_at, ip, request_head, response_head,
                                       date, False)

    def flush(self) -> None:
        """Queue what was given since the last flush and a request to write it."""
        if not self._parts:
            return
        self._parts.append(_FRAME.pack(b"F", 0))
        data = b"".join(self._parts)
        self._parts = []
        self._unsent = memoryview(bytes(self._unsent) + data if self._unsent else data)
        self._answers_due += 1

    async def flushed(self) -> None:
        """Return once every flush so far is written and handed to the OS; raise its error."""
        async with self._waiting:  # one waiter on the socket at a time
            await self._send_and_wait()

    async def _send_and_wait(self) -> None:
        """Send what flush() queued, then take the answers due."""
        loop = asyncio.get_running_loop()
        sock = self._sock
        while self._unsent:
            try:
                sent = sock.send(self._unsent)
            except BlockingIOError:
                await _ready(loop.add_writer, loop.remove_writer, sock)
                continue
            except OSError as exc:
                raise self._ended(exc) from exc
            self._unsent = self._unsent[sent:]
        while self._answers_due:
            answer = self._take_answer()
            if answer is not None:
                self._answers_due -= 1
                _raise_answer(*answer)
                continue
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                await _ready(loop.add_reader, loop.remove_reader, sock)
                continue
            if not data:
                raise self._ended(None)
            self._inbox += data

    def _take_answer(self) -> tuple[bytes, bytes] | None:
        """The first answer the inbox holds whole, taken out of it, or None."""
        frames, _ = split_frames(self._inbox)
        if not frames:
            return None
        kind, start, end = frames[0]
        body = bytes(self._inbox[start:end])
        del self._inbox[:end]
        return kind, body

    def _read_answer_blocking(self) -> tuple[bytes, bytes]:
        """The next answer, waiting for it (the socket in blocking mode)."""
        while True:
            answer = self._take_answer()
            if answer is not None:
                return answer
            data = self._sock.recv(1 << 16)
            if not data:
                raise self._ended(None)
            self._inbox += data

    def close(self) -> None:
        """Write what waits, close the files and wait for the child to end."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.setblocking(True)
            self._parts.append(_FRAME.pack(b"C", 0))
            self._sock.sendall(bytes(self._unsent) + b"".join(self._parts))
            self._parts, self._unsent = [], memoryview(b"")
            error = None
            for _ in range(self._answers_due + 1):  # the flushes' answers, then the close's
                kind, body = self._read_answer_blocking()
                try:
                    _raise_answer(kind, body)
                except (ValueError, OSError, RuntimeError) as exc:
                    error = error or exc
            if error is not None:
                raise error
        except BrokenPipeError as exc:
            raise self._ended(exc) from exc
        finally:
            self._sock.close()
            self._reap()

    def _reap(self) -> None:
        """Wait for the child to end (the socket is closed: it ends at the end of its input)."""
        if self._pid is not None:
            pid, self._pid = self._pid, None
            os.waitpid(pid, 0)

    def _ended(self, cause: BaseException | None) -> OSError:
        """The error for a child that went away without answering."""
        status = ""
        if self._pid is not None:
            done, code = os.waitpid(self._pid, os.WNOHANG)
            if done:
                self._pid = None
                status = (f" (signal {os.WTERMSIG(code)})" if os.WIFSIGNALED(code)
                          else f" (exit status {os.WEXITSTATUS(code)})")
        return OSError(f"the WARC writer process ended unexpectedly{status}"
                       + (f": {cause}" if cause else ""))


async def _ready(add, remove, sock: socket.socket) -> None:
    """Wait until *sock* is readable or writable (add/remove: the loop's reader or writer)."""
    waiter = asyncio.get_running_loop().create_future()
    fd = sock.fileno()
    add(fd, lambda: waiter.done() or waiter.set_result(None))
    try:
        await waiter
    finally:
        remove(fd)


def _child_main(sock: socket.socket, parent_pid: int, directory: str,
                options: dict) -> None:  # pragma: no cover - runs in the forked child
    """The child: die with the parent, keep only its socket, serve, and never return."""
    code = 1
    try:
        # Ctrl-C and SIGTERM go to the whole process group: the parent stops the crawl, then
        # closes the writer; the child must live until then.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.set_wakeup_fd(-1)  # the parent's event loop's: closed below
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or \
                os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)
        keep = sock.fileno()
        os.closerange(3, keep)  # the crawl's files, sockets and loop are the parent's
        os.closerange(keep + 1, 1 << 16)
        sock.setblocking(True)
        _serve(sock, directory, options)
        code = 0
    finally:
        os._exit(code)


def _serve(sock: socket.socket, directory: str, options: dict) -> None:  # pragma: no cover
    """Open the writer, answer K or its error, then apply frames until C or end of input."""
    try:
        writer = WarcWriter(directory, **options)
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent
        sock.sendall(_answer(exc))
        return
    sock.sendall(_answer(None))
    buffer = bytearray()
    while True:
        data = sock.recv(_READ)
        if not data:  # the parent ended without C (killed): what it never asked to flush was
            return    # never acknowledged, so nothing more is written; the files stay whole
        buffer += data
        frames, used = split_frames(buffer)
        for kind, start, end in frames:
            if kind == b"E" or kind == b"N":
                url, fetched_at, ip, request_head, response_head, payload, truncated = \
                    decode_exchange(buffer, start, end)
                if kind == b"E":
                    writer.write_exchange(url=url, fetched_at=fetched_at, ip=ip,
                                          request_head=request_head, response_head=response_head,
                                          payload=payload, truncated=truncated)
                else:
                    writer.write_revisit_not_modified(
                        url=url, fetched_at=fetched_at, ip=ip, request_head=request_head,
                        response_head=response_head, refers_to_date=payload.decode() or None)
            elif kind == b"F":
                try:
                    writer.flush()
                    error = None
                except Exception as exc:  # noqa: BLE001 - the writer went on; the parent raises
                    error = exc
                sock.sendall(_answer(error))
            elif kind == b"C":
                try:
                    writer.close()
                    error = None
                except Exception as exc:  # noqa: BLE001
                    error = exc
                sock.sendall(_answer(error))
                return
        del buffer[:used]
