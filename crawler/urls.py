"""URL normalization (pure): one spelling per resource, so a URL is fetched once.

Conservative, after RFC 3986 §6.2.2 (syntax-based normalization) and §6.2.3 (scheme-based):
lower-case scheme and host (§6.2.2.1), IDNA for non-ASCII hosts, upper-case percent-encoding hex
digits (§6.2.2.1) and decode percent-encoded unreserved characters (§6.2.2.2), resolve dot segments
(§6.2.2.3, §5.2.4), drop the scheme's default port and an empty port (§6.2.3), "/" for an empty
path (§6.2.3), drop the fragment (never sent to a server). The query keeps its order and content:
reordering parameters can change what a server returns. Userinfo is refused: a crawler has no
business sending credentials found in a link.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple
from urllib.parse import SplitResult, urlsplit

from crawler.errors import InvalidURL

MAX_URL_LENGTH = 2000
DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")
_BAD_HOST = re.compile(r"[\x00-\x20%/\\?#@<>^`{|}]")
# Characters that may stand unencoded in a path or query (RFC 3986 §3.3, §3.4); others are encoded.
_ALLOWED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%")


class Origin(NamedTuple):
    """Scheme, host and port of a URL: the unit of scope and of politeness."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        default = DEFAULT_PORTS[self.scheme] == self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if default else f":{self.port}")


def _normalize_percent(component: str) -> str:
    """Encode what must be encoded, upper-case escapes, decode escaped unreserved characters."""
    data = component.encode("utf-8", "surrogatepass")
    out = bytearray()
    i = 0
    while i < len(data):
        byte = data[i]
        if byte == 0x25:  # "%"
            m = _PERCENT.match(data, i)
            if m:
                value = int(m.group(1), 16)
                if value in _UNRESERVED:
                    out.append(value)
                else:
                    out += b"%" + m.group(1).upper()
                i += 3
                continue
            out += b"%25"  # a stray "%" is data, not an escape
        elif byte in _ALLOWED:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
        i += 1
    return out.decode("ascii")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, on a path that starts with "/"."""
    output: list[str] = []
    segments = path.split("/")[1:]
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                output.append("")
        elif seg == "..":
            if output:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(seg)
    return "/" + "/".join(output)


def _normalize_host(host: str, url: str) -> str:
    if not host:
        raise InvalidURL(f"no host in {url!r}")
    if host.startswith("["):
        if not host.endswith("]") or not re.fullmatch(r"\[[0-9A-Fa-f:.]+\]", host):
            raise InvalidURL(f"bad IPv6 host in {url!r}")
        return host.lower()
    if _BAD_HOST.search(host):
        raise InvalidURL(f"bad character in host of {url!r}")
    host = host.rstrip(".").lower() if host != "." else host
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidURL(f"host of {url!r} is not a valid international name: {exc}") from None
    if not host or any(not label or len(label) > 63 for label in host.split(".")):
        raise InvalidURL(f"bad host in {url!r}")
    return host


def _split_http(url: str) -> tuple[SplitResult, str, int | None]:
    """Split *url*; raise InvalidURL unless it is http(s) with a valid port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"{url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidURL(f"not an http(s) URL: {url!r}")
    return parts, scheme, port


def _resolve(base: str, ref: str) -> str:
    """RFC 3986 §5.2.2 reference resolution, without the dot-segment step (normalization does it).

    Not `urljoin`: it splits `;params` off the last segment and loses them (`/.;` -> `/`).
    """
    try:
        r = urlsplit(ref)
        if r.scheme:
            return ref
        b = urlsplit(base)
    except ValueError as exc:
        raise InvalidURL(f"cannot resolve {ref!r} against {base!r}: {exc}") from None
    before_fragment = ref.split("#", 1)[0]
    if ref.startswith("//"):
        return f"{b.scheme}:{before_fragment}"
    if not r.path:
        path = b.path or "/"
        if "?" in before_fragment:
            query = "?" + r.query
        else:
            query = ("?" + b.query) if "?" in base.split("#", 1)[0] else ""
        return f"{b.scheme}://{b.netloc}{path}{query}"
    if r.path.startswith("/"):
        path = r.path
    else:
        path = (b.path[: b.path.rfind("/") + 1] or "/") + r.path
    query = ("?" + r.query) if "?" in before_fragment else ""
    return f"{b.scheme}://{b.netloc}{path}{query}"


# Fast paths for links with nothing to normalize but escapes and dot segments (no upper-case host,
# default or odd port, userinfo, IPv6 or IDNA): an absolute http(s) URL, an absolute path, or a relative path. Most links on real
# pages are like this; each fast result equals the general path's (a hypothesis test checks it).
_SAFE = r"A-Za-z0-9\-._~!$&'()*+,;=:@"
_CLEAN_QUERY = rf"(?:\?[{_SAFE}/?%]*)?"
_CLEAN_ABSOLUTE_PATH = re.compile(rf"/(?!/)[{_SAFE}/%]*{_CLEAN_QUERY}")
_CLEAN_URL = re.compile(
    r"(https?)://((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)"
    rf"(?::0*([1-9][0-9]{{0,4}}))?(/[{_SAFE}/%]*{_CLEAN_QUERY})?")
_CLEAN_RELATIVE = re.compile(rf"[{_SAFE.replace(':', '')}%][{_SAFE}/%]*{_CLEAN_QUERY}")


def _normalize_clean(url: str, base: str | None) -> str | None:
    """The normalized form of *url* if it needs no more than joining and dot segments, or None."""
    cut = url.find("#")
    if cut >= 0:
        url = url[:cut]
        if not url and base is not None:  # "#part": this very page (RFC 3986 §5.2.2, an empty
            return base                   # path keeps the base's path and query)
    if not url or len(url) > MAX_URL_LENGTH:
        return None
    if url[0] in "hH" and url[:5].lower() in ("http:", "https") and not url.startswith("http"):
        colon = url.find(":")
        url = url[:colon].lower() + url[colon:]  # the scheme is case-insensitive (§3.1)
    if url[0] == "h" and (m := _CLEAN_URL.fullmatch(url)):
        scheme, host, port, rest = m.groups()
        if port and (int(port) > 65535 or int(port) == DEFAULT_PORTS[scheme]):
            return None
        origin, rest = (f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"), rest or "/"
    elif base is None:
        return None
    elif url[0] == "/":
        if not _CLEAN_ABSOLUTE_PATH.fullmatch(url):
            return None
        origin_end = base.find("/", base.find("://") + 3)
        origin, rest = base[:origin_end], url
    else:
        if ":" in url.split("/", 1)[0].split("?", 1)[0] or not _CLEAN_RELATIVE.fullmatch(url):
            return None  # a scheme (or not clean): the general path
        origin_end = base.find("/", base.find("://") + 3)
        path_end = base.find("?")
        origin = base[:origin_end]
        rest = base[origin_end: base.rfind("/", 0, path_end if path_end >= 0 else len(base)) + 1] + url
    path, sep, query = rest.partition("?")
    if "%" in path:  # escapes first, dot segments second: the general path's order
        path = _normalize_percent(path)
    if "%" in query:
        query = _normalize_percent(query)
    if "/." in path:
        path = _remove_dot_segments(path)
    joined = origin + path + sep + query
    return joined if len(joined) <= MAX_URL_LENGTH else None


def normalize_url(url: str, base: str | None = None) -> str:
    """Return the canonical form of *url* (resolved against *base* if given); raise InvalidURL.

    *base*, when given, must itself be a result of normalize_url.
    """
    if isinstance(url, str) and url and url[0] not in " \t\r\n\f" and url[-1] not in " \t\r\n\f":
        fast = _normalize_clean(url, base)
        if fast is not None:
            return fast
    return _normalize_general(url, base)


def _normalize_general(url: str, base: str | None) -> str:
    if not isinstance(url, str):
        raise InvalidURL(f"a URL must be a string, not {type(url).__name__}")
    url = url.strip(" \t\r\n\f")
    if any(c in url for c in "\t\r\n"):
        # browsers drop these wherever they are (WHATWG URL), so do we, before resolving:
        # "/\t/x" is "//x", a host, not a path
        url = re.sub(r"[\t\r\n]", "", url)
    if base is not None:
        url = _resolve(base, url)
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURL(f"URL of {len(url)} characters exceeds {MAX_URL_LENGTH}")
    parts, scheme, port = _split_http(url)
    if parts.username is not None or parts.password is not None:
        raise InvalidURL(f"URL with credentials refused: {url!r}")
    netloc_host = parts.netloc.rsplit("@", 1)[-1]
    if netloc_host.startswith("["):
        raw_host = netloc_host[: netloc_host.index("]") + 1] if "]" in netloc_host else netloc_host
    else:
        raw_host = netloc_host.rsplit(":", 1)[0] if ":" in netloc_host else netloc_host
    host = _normalize_host(raw_host, url)
    port_text = "" if port is None or port == DEFAULT_PORTS[scheme] else f":{port}"
    raw_path = parts.path if parts.path.startswith("/") else "/" + parts.path
    path = _remove_dot_segments(_normalize_percent(raw_path))
    query = ("?" + _normalize_percent(parts.query)) if parts.query or url.split("#", 1)[0].endswith("?") else ""
    return f"{scheme}://{host}{port_text}{path}{query}"


def origin_of(url: str) -> Origin:
    """Return the Origin of an already normalized (or any absolute http(s)) URL; raise InvalidURL."""
    start = url.find("://")
    end = url.find("/", start + 3) if start > 0 else -1
    if end > 0:
        prefix = url[:end]
        if "?" not in prefix and "#" not in prefix and "@" not in prefix and "\\" not in prefix:
            return _origin_of_prefix(prefix)  # cached per origin, not per URL
    return _origin_of_url(url)


@functools.lru_cache(maxsize=4096)
def _origin_of_prefix(prefix: str) -> Origin:
    return _origin_of_url(prefix + "/")


def _origin_of_url(url: str) -> Origin:
    parts, scheme, port = _split_http(url)
    if not parts.hostname:
        raise InvalidURL(f"not an absolute http(s) URL: {url!r}")
    return Origin(scheme, parts.hostname.lower(), port if port is not None else DEFAULT_PORTS[scheme])
