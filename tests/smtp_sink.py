"""A real SMTP server on loopback (aiosmtpd) that records what it accepts and can misbehave.

Runs in aiosmtpd's own thread (Controller), so the code under test talks to it over a real
TCP connection exactly as it would to a mail relay.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Sink:
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    # RCPT TO of each accepted message, in the order of `messages`: who really got it.
    envelopes: list[list[str]] = field(default_factory=list)
    # recipient address -> SMTP reply for RCPT TO (e.g. "550 5.1.1 user unknown")
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    # reply for DATA while > 0 answers remain (e.g. "451 4.3.0 try later"), then accept
    data_reply: str | None = None
    data_reply_times: int = 0
    # called with the message number (1-based) before it is accepted; returns a reply to
    # refuse it instead (the SIGKILL test kills the worker here)
    on_data: Callable[[int], str | None] | None = None
    connections: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _arrived: int = 0

    def message_ids(self) -> list[str]:
        with self._lock:
            return [str(m["Message-ID"]) for m in self.messages]

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if address in str(m["To"])]

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return
            time.sleep(0.02)
        raise AssertionError(f"the SMTP sink got {len(self.messages)} messages, expected {count}")


class _Handler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> list[str]:
        with self.sink._lock:
            self.sink.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        reply = self.sink.refuse_rcpt.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.sink._lock:
            self.sink._arrived += 1
            number = self.sink._arrived
            if self.sink.data_reply and self.sink.data_reply_times > 0:
                self.sink.data_reply_times -= 1
                return self.sink.data_reply
        if self.sink.on_data is not None:
            reply = self.sink.on_data(number)
            if reply:
                return reply
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.sink._lock:
            self.sink.messages.append(message)  # type: ignore[arg-type]
            self.sink.envelopes.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def smtp_sink(**options: Any) -> Iterator[Sink]:
    sink = Sink(**options)
    sink.port = free_port()
    controller = Controller(_Handler(sink), hostname="127.0.0.1", port=sink.port, ready_timeout=10)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
