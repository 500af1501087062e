"""Serve an ASGI app over real HTTP on loopback, inside the caller's event loop.

Tests and the offline demo talk to the stand-ins through the same httpx/OpenAI clients that
production uses, so the apps must be reachable on a real socket. The socket is bound before
uvicorn starts (port 0 picks a free port with no race), and uvicorn's own signal handling is
switched off: the embedding program (pytest, `python -m deallens.sim`) owns Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Generator

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from deallens.sim.faults import TRANSPORT_SCOPE_KEY

_STARTUP_TIMEOUT_S = 10.0


class LoopbackOnlyError(ValueError):
    """Raised for a host that is not a loopback address."""


def ensure_loopback(host: str) -> str:
    """`host` as an IP literal, refusing anything but loopback: the stand-ins are for local use only."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise LoopbackOnlyError(f"host {host!r} is not a loopback address; use 127.0.0.1, ::1 or localhost")
    return str(address)


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handlers alone (several may run in one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serve_asgi(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run `app` on http://host:port until the block exits; yields the base URL (no trailing slash).

    port=0 binds an ephemeral port. Raises LoopbackOnlyError for a non-loopback host and
    OSError when the port is taken.
    """
    host = ensure_loopback(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says TCP, and without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    bound_port = sock.getsockname()[1]
    # A request still sleeping in a "latency" fault after its client gave up would hold the
    # shutdown; one second of grace, then it is cancelled.
    config = uvicorn.Config(_with_transport(app), log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1)
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"sim-server:{bound_port}")
    try:
        await _wait_started(server, task)
        netloc = f"[{host}]" if family == socket.AF_INET6 else host
        yield f"http://{netloc}:{bound_port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def _with_transport(app: ASGIApp) -> ASGIApp:
    """`app`, told its connection's asyncio transport in the scope (TRANSPORT_SCOPE_KEY).

    A connection fault (reset, body cut short; deallens/sim/faults.py) must act on the socket,
    which ASGI does not expose; uvicorn's `send` is a method of the request cycle that holds it.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if scope["type"] == "http" and transport is not None:
            scope = {**scope, TRANSPORT_SCOPE_KEY: transport}
        await app(scope, receive, send)

    return wrapped


async def _wait_started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    deadline = asyncio.get_running_loop().time() + _STARTUP_TIMEOUT_S
    while not server.started:
        if task.done():
            task.result()  # re-raise the startup failure
            raise RuntimeError("uvicorn stopped before it started serving")
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"uvicorn did not start within {_STARTUP_TIMEOUT_S:.0f}s")
        await asyncio.sleep(0.005)
