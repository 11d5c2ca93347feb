"""Loopback addresses and ports for the servers tests start."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port nothing listens on right now (the kernel's choice).

    Connecting to it is refused, which is also what tests of an unreachable server need.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port
