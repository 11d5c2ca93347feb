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


class ScriptedSmtpServer(_RawServer):
    """A strict little ESMTP server with scripted misbehaviour, recording what it received.

    - `pipelining`: advertise PIPELINING and hold the replies to MAIL and RCPT until DATA has
      arrived (RFC 2920 lets a server batch its replies so): a client that waits for each reply
      before the next command would wait forever. Without it, count each command that arrived
      before the reply to the one before (`early_commands`): pipelining without permission.
    - `close_after`: close the connection after this many messages on it, while idle.
    - `refuse_later`: answer "421" to the MAIL of a connection's second transaction and close
      (a server ending an idle connection).
    - `drop_at_dot`: read message number N (counted over all connections, from 1) to its
      terminating dot, keep it, then close without a reply.
    - `inject_after_starttls`: offer STARTTLS and answer it with a 220 followed by a forged reply
      in the same plaintext write (the STARTTLS command-injection attack).

    `messages` holds (sender, recipients, message) with dot-stuffing undone, CRLF as received.
    """

    def __init__(
        self,
        *,
        pipelining: bool = True,
        close_after: int | None = None,
        refuse_later: bool = False,
        drop_at_dot: int | None = None,
        inject_after_starttls: bool = False,
    ) -> None:
        super().__init__()
        self.pipelining = pipelining
        self.close_after = close_after
        self.refuse_later = refuse_later
        self.drop_at_dot = drop_at_dot
        self.inject_after_starttls = inject_after_starttls
        self.messages: list[tuple[str, tuple[str, ...], bytes]] = []
        self.early_commands = 0
        self.refusals = 0

    def _serve(self, client: socket.socket) -> None:
        try:
            self._converse(_Lines(client))
        except (OSError, EOFError):
            pass  # the client (or stop()) closed the connection
        finally:
            client.close()

    def _converse(self, conn: _Lines) -> None:  # noqa: C901 (a script reads best in one piece)
        conn.send(b"220 localhost ESMTP scripted\r\n")
        held: list[bytes] = []
        sender, recipients, done = "", list[str](), 0
        while True:
            line = conn.line()
            if not self.pipelining and conn.buffer:
                with self._lock:
                    self.early_commands += 1
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                reply = b"250-localhost\r\n"
                if self.pipelining:
                    reply += b"250-PIPELINING\r\n"
                if self.inject_after_starttls:
                    reply += b"250-STARTTLS\r\n"
                reply += b"250 SIZE 1000000\r\n"
            elif verb == b"STAR" and self.inject_after_starttls:
                conn.send(b"220 go ahead\r\n250-forged\r\n250 AUTH PLAIN\r\n")
                conn.drain_until_closed()
                return
            elif verb == b"MAIL":
                if self.refuse_later and done > 0:
                    with self._lock:
                        self.refusals += 1
                    conn.send(b"".join(held) + b"421 4.4.2 idle too long, closing\r\n")
                    return
                sender, recipients = _between(line), []
                reply = b"250 2.1.0 OK\r\n"
            elif verb == b"RCPT":
                recipients.append(_between(line))
                reply = b"250 2.1.5 OK\r\n"
            elif verb == b"DATA":
                conn.send(b"".join(held) + b"354 go ahead\r\n")
                held = []
                message = conn.message()
                with self._lock:
                    self.messages.append((sender, tuple(recipients), message))
                    number = len(self.messages)
                if number == self.drop_at_dot:
                    return
                conn.send(b"250 2.0.0 queued\r\n")
                done += 1
                if self.close_after is not None and done >= self.close_after:
                    return
                continue
            elif verb == b"RSET":
                reply = b"250 OK\r\n"
            elif verb == b"QUIT":
                conn.send(b"221 bye\r\n")
                return
            else:
                reply = b"502 5.5.2 not implemented\r\n"
            if self.pipelining and verb in (b"MAIL", b"RCPT"):
                held.append(reply)
            else:
                conn.send(b"".join(held) + reply)
                held = []


def _between(line: bytes) -> str:
    return line[line.index(b"<") + 1 : line.index(b">")].decode()


class _Lines:
    """A socket read as CRLF lines, knowing what has arrived beyond the current line."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buffer += chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._more()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def message(self) -> bytes:
        """The DATA that follows, to its terminating line, with the dot-stuffing undone."""
        while (end := (b"\r\n" + self.buffer).find(b"\r\n.\r\n")) < 0:
            self._more()
        data, self.buffer = self.buffer[:end], self.buffer[end + 3 :]
        lines = data.split(b"\r\n")
        return b"\r\n".join(ln[1:] if ln.startswith(b".") else ln for ln in lines)

    def drain_until_closed(self) -> None:
        while True:
            self._more()
