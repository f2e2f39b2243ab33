"""Privacy mode `local`: nothing leaves the machine, and a refused destination is refused before any socket opens.

Three layers, each enough on its own for the endpoints collab itself contacts:

1. `check_endpoint` refuses an LLM endpoint (and `check_ray_address` a Ray address) that is not a loopback
   IP literal, `localhost` or a unix socket. It parses the URL and never resolves a name: the lookup of a
   remote name would itself leak to a DNS server what the run is about to contact.
2. `local_only_environment` turns off what reaches out by itself: model hubs (HF_HUB_OFFLINE), Ray's usage
   statistics, and HTTP proxies (an HTTP_PROXY variable would carry a loopback request off the machine).
3. `NetworkGuard` fails closed for everything else in the process: while it is installed, a connection to
   an address that is not loopback (or a unix socket) and a name lookup of any name but localhost raise
   `PrivacyError`, whichever library tries them.

`AuditLog` appends one JSON line per request: destination, model, pair, whether the cache answered.
"""
from __future__ import annotations

import ipaddress
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PRIVACY_MODES = ("off", "local")
LOCAL_NAMES = ("localhost", "localhost.", "ip6-localhost")
UNIX_SCHEMES = ("unix", "http+unix")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "RAY_USAGE_STATS_ENABLED": "0", "RAY_USAGE_STATS_PROMPT_ENABLED": "0"}
PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


class PrivacyError(ValueError):
    """A destination that privacy mode `local` does not allow."""


def _is_loopback_host(host: str) -> bool:
    """True for a loopback IP literal or localhost; never resolves a name."""
    host = host.strip("[]").lower()
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def is_local_endpoint(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in UNIX_SCHEMES:
        return True
    return parts.scheme in ("http", "https") and bool(parts.hostname) and _is_loopback_host(parts.hostname)


def check_mode(privacy: str) -> None:
    if privacy not in PRIVACY_MODES:
        raise PrivacyError(f"privacy mode {privacy!r}: choose one of {', '.join(PRIVACY_MODES)}")


def check_endpoint(url: str, privacy: str, what: str = "LLM endpoint") -> None:
    """Refuse, in one line, an endpoint that privacy mode `local` does not allow."""
    check_mode(privacy)
    if privacy == "local" and not is_local_endpoint(url):
        raise PrivacyError(f"privacy mode local refuses the {what} {url!r}: only a loopback address "
                           "(127.0.0.1, [::1]), localhost or a unix socket is allowed; nothing was sent")


def check_ray_address(address: str | None, privacy: str) -> None:
    """A Ray cluster is local when started in-process (None, 'local') or reached on a loopback address."""
    check_mode(privacy)
    if privacy != "local" or address in (None, "", "local"):
        return
    host = address.removeprefix("ray://").rsplit(":", 1)[0]
    if address == "auto" or not _is_loopback_host(host):
        raise PrivacyError(f"privacy mode local refuses the Ray address {address!r}: use a local Ray instance "
                           "(no address) or one on a loopback address")


def local_only_environment() -> None:
    """Set the variables that keep libraries from reaching out, and drop proxy settings for this process."""
    os.environ.update(OFFLINE_ENV)
    for name in PROXY_ENV:
        os.environ.pop(name, None)


# ------------------------------------------------------------------------------------------------ guard
def _address_is_local(family: int, address: Any) -> bool:
    if family == getattr(socket, "AF_UNIX", None):
        return True
    host = address[0] if isinstance(address, tuple) else str(address)
    return _is_loopback_host(str(host))


class NetworkGuard:
    """Refuses, process-wide, every connection to a non-loopback address and every lookup of a remote name.

    Patches `socket.socket.connect`/`connect_ex` and `socket.getaddrinfo`, which every Python HTTP client
    (httpx, requests, urllib, asyncio) goes through. Re-entrant: nested guards restore in order."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        self.refused: list[str] = []
        self._saved: tuple[Any, Any, Any] | None = None

    def install(self) -> NetworkGuard:
        guard = self
        connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

        def refuse(what: str) -> PrivacyError:
            guard.refused.append(what)
            return PrivacyError(f"privacy mode local refused a connection to {what}")

        def guarded_connect(sock: socket.socket, address: Any) -> Any:
            if not _address_is_local(sock.family, address):
                raise refuse(str(address))
            return connect(sock, address)

        def guarded_connect_ex(sock: socket.socket, address: Any) -> Any:
            if not _address_is_local(sock.family, address):
                raise refuse(str(address))
            return connect_ex(sock, address)

        def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else host
            if name is not None and not _is_loopback_host(str(name)):
                raise refuse(f"name lookup of {name!r}")
            return getaddrinfo(host, *args, **kwargs)

        with self._lock:
            self._saved = (connect, connect_ex, getaddrinfo)
            socket.socket.connect = guarded_connect
            socket.socket.connect_ex = guarded_connect_ex
            socket.getaddrinfo = guarded_getaddrinfo
        return self

    def uninstall(self) -> None:
        with self._lock:
            if self._saved:
                socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = self._saved
                self._saved = None

    def __enter__(self) -> NetworkGuard:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()


# ------------------------------------------------------------------------------------------------ audit
class AuditLog:
    """One JSON line per LLM request, flushed at once: what a user checks to see what left the process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def record(self, *, destination: str, model: str, pair_id: str, cached: bool, **extra: Any) -> None:
        line = json.dumps({"time": round(time.time(), 3), "destination": destination, "model": model,
                           "pair": pair_id, "cached": cached, **extra}, ensure_ascii=False)
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
