"""Connections to anything but this machine fail loudly, in the test run itself (conftest
imports this module) and in every `supportbot` process the tests start (PYTHONPATH names this
folder, so Python loads it at start-up): a test cannot pass while the bot reaches a real
service, such as an API, a cloud metadata address or a token endpoint."""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import Any

MARK = "NON-LOCAL CONNECTION refused"


class NonLocalConnection(OSError):
    """A test tried to reach something beyond 127.0.0.1."""


def is_local(family: int, address: Any) -> bool:
    if family == getattr(socket, "AF_UNIX", -1):
        return True
    host = address[0] if isinstance(address, tuple) else address
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return str(host) == "localhost"


def _refuse(address: Any) -> NonLocalConnection:
    print(f"{MARK}: {address!r}", file=sys.stderr, flush=True)
    return NonLocalConnection(f"tests may only connect to 127.0.0.1, not {address!r}")


def install() -> None:
    if getattr(socket.socket.connect, "local_only", False):
        return
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        if not is_local(self.family, address):
            raise _refuse(address)
        original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not is_local(self.family, address):
            raise _refuse(address)
        return original_connect_ex(self, address)

    connect.local_only = True  # type: ignore[attr-defined]
    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]


install()
