"""Misbehaving SMTP servers on raw loopback sockets, for failure-path tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Self

from .net import HOST, free_port
from .running import Running

# A port where nothing listens: connecting is refused at once.
refused_port = free_port


class _RawServer(Running):
    """A threaded TCP listener on 127.0.0.1 that hands each connection to _serve."""

    def __init__(self) -> None:
        self.host = HOST
        self.port = 0
        self.connections = 0
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._clients: list[socket.socket] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> Self:
        """Start accepting connections in a background thread."""
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        # A short accept timeout lets the thread notice stop() promptly.
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stopping.clear()
        self._spawn(self._accept_loop, listener)
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, and join the threads."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self._stopping.set()
        accept_thread, *serve_threads = self._threads
        # The accept loop goes first so no connection slips in after the sweep.
        accept_thread.join()
        listener.close()
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            # shutdown() wakes a thread blocked in recv() on this socket.
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            client.close()
        for thread in serve_threads:
            thread.join(timeout=5)
        self._threads = []

    def _spawn(self, target: Callable[[socket.socket], None], sock: socket.socket) -> None:
        thread = threading.Thread(target=target, args=(sock,), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self.connections += 1
                self._clients.append(client)
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError


class HangingSmtpServer(_RawServer):
    """Accepts TCP connections but never sends the SMTP greeting (for timeout tests)."""

    def _serve(self, client: socket.socket) -> None:
        # Holding the socket open is the whole behaviour; stop() closes it.
        self._stopping.wait()


class DroppingSmtpServer(_RawServer):
    """Speaks just enough SMTP to reach DATA, then drops the connection mid-message."""

    def __init__(self) -> None:
        super().__init__()
        self.drops = 0

    def _serve(self, client: socket.socket) -> None:
        try:
            self._converse(client)
        except OSError:
            pass  # stop() shut the socket down under us
        finally:
            client.close()

    def _converse(self, client: socket.socket) -> None:
        client.sendall(b"220 localhost ESMTP dropping\r\n")
        with client.makefile("rb") as lines:
            for line in lines:
                verb = line[:4].upper()
                if verb == b"DATA":
                    client.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    lines.readline()  # some of the message has arrived: now drop
                    with self._lock:
                        self.drops += 1
                    return
                if verb == b"QUIT":
                    client.sendall(b"221 bye\r\n")
                    return
                known = verb in (b"EHLO", b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP")
                client.sendall(b"250 OK\r\n" if known else b"502 5.5.2 not implemented\r\n")
