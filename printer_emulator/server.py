"""The emulated printer: TCP listener (and optionally a pty), its state, and labels held while it cannot print."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import socketserver
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from mes_contracts.labels import PrinterLanguage, PrinterState
from printer_emulator.protocol import ProgramStream, status_reply
from printer_emulator.store import LabelStore, Preview, default_preview

log = logging.getLogger(__name__)

_POLL_S = 0.2
Send = Callable[[bytes], object]


class _Listener(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # back online on the same port right after going offline
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], emulator: PrinterEmulator) -> None:
        self.emulator = emulator
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Connection)


class _Connection(socketserver.BaseRequestHandler):
    request: socket.socket
    server: _Listener

    def handle(self) -> None:
        host, port = self.client_address[:2]
        self.server.emulator.serve_stream(self.request.recv, self.request.sendall, f"{host}:{port}", self.request)


class PrinterEmulator:
    """A printer on `host:port` (port 0 picks one). Not ready → labels are held and printed once ready again,
    like a Zebra keeps formats in its buffer while paused or out of paper. Offline → nothing listens."""

    def __init__(
        self,
        out_dir: Path,
        host: str = "127.0.0.1",
        port: int = 9100,
        language: PrinterLanguage = PrinterLanguage.ZPL,
        dpi: int = 203,
        state: PrinterState = PrinterState.READY,
        serial: bool = False,
        preview: Preview | None = default_preview,
    ) -> None:
        self.host = host
        self.port = port
        self.language = language
        self.store = LabelStore(out_dir, language, dpi, preview)
        self._state = state
        self._want_serial = serial
        self.serial_path: str | None = None
        self._lock = threading.RLock()
        self._held: list[tuple[bytes, str, datetime]] = []
        self._listener: _Listener | None = None
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._pty: tuple[int, int] | None = None

    # --- life cycle ----------------------------------------------------------------------------------------
    def start(self) -> Self:
        self._listen()  # bound even when starting offline, so port 0 settles on a real port
        if self._state is PrinterState.OFFLINE:
            self._unlisten()
        if self._want_serial:
            self._open_pty()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._unlisten()
        for thread in self._threads:
            thread.join(5)
        if self._pty is not None:
            for fd in self._pty:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._pty = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- state ---------------------------------------------------------------------------------------------
    @property
    def state(self) -> PrinterState:
        return self._state

    @property
    def held(self) -> int:
        return len(self._held)

    def set_state(self, state: PrinterState) -> None:
        with self._lock:
            previous, self._state = self._state, PrinterState(state)
            log.info("printer state %s -> %s", previous, self._state)
            if self._state is PrinterState.OFFLINE and previous is not PrinterState.OFFLINE:
                self._unlisten()
            elif previous is PrinterState.OFFLINE and self._state is not PrinterState.OFFLINE:
                try:
                    self._listen()
                except OSError:
                    self._state = previous  # the port was taken meanwhile: still offline
                    raise
            if self._state is PrinterState.READY:
                held, self._held = self._held, []
                for program, peer, received_at in held:
                    self.store.save(program, peer, received_at)

    def snapshot(self) -> dict[str, object]:
        return {
            "state": self._state.value,
            "language": self.language.value,
            "host": self.host,
            "port": self.port,
            "serial": self.serial_path,
            "held": self.held,
            "printed": self.store.count,
        }

    def labels(self) -> list[dict[str, object]]:
        return self.store.entries()

    def wait_printed(self, count: int, timeout: float = 10.0) -> bool:
        """For tests and the simulator: True once `count` labels are printed (saved), False on timeout."""
        return self.store.wait_count(count, timeout)

    # --- printing --------------------------------------------------------------------------------------------
    def _take(self, program: bytes, peer: str) -> None:
        received_at = datetime.now(UTC)
        with self._lock:
            if self._state is PrinterState.READY:
                self.store.save(program, peer, received_at)
            else:
                self._held.append((program, peer, received_at))
                log.info("holding a label from %s while %s (%s held)", peer, self._state, len(self._held))

    def serve_stream(
        self, receive: Callable[[int], bytes], send: Send, peer: str, sock: socket.socket | None = None
    ) -> None:
        """One TCP connection: answer status queries at once, print (or hold) each complete program."""
        stream = ProgramStream(self.language)
        if sock is not None:
            with self._lock:
                self._connections.add(sock)
        try:
            while not self._stopping.is_set():
                try:
                    data = receive(65536)
                except OSError:
                    break
                if not data:
                    break
                self._handle(stream, data, send, peer)
        finally:
            if sock is not None:
                with self._lock:
                    self._connections.discard(sock)
            self._end_stream(stream, peer)

    def _handle(self, stream: ProgramStream, data: bytes, send: Send, peer: str) -> None:
        parsed = stream.feed(data)
        for _ in range(parsed.status_queries):
            reply = status_reply(self.language, self._state, len(self._held))
            if reply:
                with contextlib.suppress(OSError):
                    send(reply)
        for program in parsed.programs:
            self._take(program, peer)

    def _end_stream(self, stream: ProgramStream, peer: str) -> None:
        rest = stream.close()
        if rest:
            log.warning("%s closed with an unfinished program (%s bytes) — discarded", peer, len(rest))
        if stream.dropped:
            log.warning("%s sent %s bytes without a program end — discarded", peer, stream.dropped)

    # --- TCP -------------------------------------------------------------------------------------------------
    def _listen(self) -> None:
        if self._listener is not None or self._stopping.is_set():
            return
        self._listener = _Listener((self.host, self.port), self)
        self.port = int(self._listener.server_address[1])
        thread = threading.Thread(
            target=self._listener.serve_forever, args=(_POLL_S,), name=f"printer-emulator-{self.port}", daemon=True
        )
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        log.info("printer emulator (%s) listening on %s:%s", self.language, self.host, self.port)

    def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.shutdown()
            listener.server_close()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:  # a printer switched off drops its connections too
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # --- serial (pseudo-terminal) ----------------------------------------------------------------------------
    def _open_pty(self) -> None:
        import tty  # POSIX only: the TCP printer also runs on Windows

        master, slave = os.openpty()
        tty.setraw(slave)  # bytes pass untouched: no echo, no CR/LF translation
        # Keeping our slave end open stops the master from reading EIO whenever a client closes the port.
        self._pty = (master, slave)
        self.serial_path = os.ttyname(slave)
        thread = threading.Thread(target=self._serve_pty, args=(master,), name="printer-emulator-pty", daemon=True)
        thread.start()
        self._threads.append(thread)
        log.info("printer emulator (%s) serial port %s", self.language, self.serial_path)

    def _serve_pty(self, master: int) -> None:
        stream = ProgramStream(self.language)
        peer = f"serial:{self.serial_path}"

        def send(data: bytes) -> None:
            os.write(master, data)

        while not self._stopping.is_set():
            try:
                readable, _, _ = select.select([master], [], [], _POLL_S)
                if not readable:
                    continue
                data = os.read(master, 65536)
            except OSError:
                if self._stopping.is_set():
                    return
                self._stopping.wait(_POLL_S)  # not expected while our slave end is open; do not spin
                continue
            if self._state is PrinterState.OFFLINE:
                stream.close()  # switched off: no answer, and a half-received program is gone
                continue
            self._handle(stream, data, send, peer)
