"""Byte transports to a label printer: raw TCP (port 9100) and serial (pyserial); blocking, one printer each."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from types import TracebackType
from typing import Protocol, Self

import serial

from mes_contracts.labels import PrinterConfig

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 3.0
_CHUNK = 65536


class PrinterOffline(Exception):
    """The printer cannot be reached: refused, unreachable, timed out, or the link broke."""


class Transport(Protocol):
    """What the status query and the printing need; every I/O failure is `PrinterOffline`."""

    description: str

    def open(self) -> None: ...

    def write(self, data: bytes) -> None: ...

    def read(self, timeout: float) -> bytes:
        """Whatever arrives within `timeout` (b"" when nothing did)."""
        ...

    def finish(self) -> None:
        """Make sure everything written has left for the printer (best effort, bounded by the timeout)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Transport: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class _Closing:
    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class TcpTransport(_Closing):
    """Raw TCP, the 'JetDirect' port 9100 of Zebra/TSC/Godex network printers."""

    def __init__(self, host: str, port: int = 9100, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.description = f"tcp://{host}:{port}"
        self._sock: socket.socket | None = None

    def open(self) -> None:
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as error:  # refused, unreachable, DNS, timeout (socket.timeout is an OSError)
            raise PrinterOffline(f"{self.description}: {error or 'connect timed out'}") from error
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _connected(self) -> socket.socket:
        if self._sock is None:
            raise PrinterOffline(f"{self.description}: not connected")
        return self._sock

    def write(self, data: bytes) -> None:
        sock = self._connected()
        sock.settimeout(self.timeout)
        try:
            sock.sendall(data)
        except OSError as error:
            raise PrinterOffline(f"{self.description}: send failed: {error or 'timed out'}") from error

    def read(self, timeout: float) -> bytes:
        sock = self._connected()
        sock.settimeout(max(timeout, 0.001))
        try:
            data = sock.recv(_CHUNK)
        except TimeoutError:
            return b""
        except OSError as error:
            raise PrinterOffline(f"{self.description}: receive failed: {error}") from error
        if not data:
            raise PrinterOffline(f"{self.description}: connection closed by the printer")
        return data

    def finish(self) -> None:
        """Half-close and wait for the printer to close too, so a True 'printed' means it took every byte.

        Closing at once with a reply still unread would reset the connection (RST) and a printer may drop
        the tail of the label; the printer closes its side when it has consumed our data.
        """
        sock = self._connected()
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError as error:
            raise PrinterOffline(f"{self.description}: send failed: {error}") from error
        deadline = time.monotonic() + self.timeout
        with contextlib.suppress(OSError):
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                if not sock.recv(_CHUNK):
                    return
        log.debug(
            "%s did not close within %.1f s after the label; assuming it was taken", self.description, self.timeout
        )

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


class SerialTransport(_Closing):
    """RS-232 (or USB-serial) printer; `port` may be any pyserial URL or path, e.g. COM3, /dev/ttyUSB0, a pty."""

    def __init__(self, port: str, baud: int = 9600, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.port = port
        self.baud = baud
        self.timeout = timeout
        self.description = f"serial:{port}@{baud}"
        self._serial: serial.SerialBase | None = None

    def open(self) -> None:
        try:
            self._serial = serial.serial_for_url(
                self.port, baudrate=self.baud, timeout=self.timeout, write_timeout=self.timeout
            )
            # A reply the previous user never read would be taken for the answer to our own query.
            self._serial.reset_input_buffer()
        except (serial.SerialException, OSError, ValueError) as error:
            self.close()
            raise PrinterOffline(f"{self.description}: {error}") from error

    def _opened(self) -> serial.SerialBase:
        if self._serial is None:
            raise PrinterOffline(f"{self.description}: not open")
        return self._serial

    def write(self, data: bytes) -> None:
        port = self._opened()
        try:
            port.write(data)
        except (serial.SerialException, OSError) as error:  # SerialTimeoutException: flow control held us
            raise PrinterOffline(f"{self.description}: send failed: {error}") from error

    def read(self, timeout: float) -> bytes:
        port = self._opened()
        try:
            port.timeout = max(timeout, 0.001)
            return bytes(port.read(max(port.in_waiting, 1)))
        except (serial.SerialException, OSError) as error:
            raise PrinterOffline(f"{self.description}: receive failed: {error}") from error

    def finish(self) -> None:
        port = self._opened()
        try:
            port.flush()  # tcdrain: returns when the UART has sent everything
        except (serial.SerialException, OSError) as error:
            raise PrinterOffline(f"{self.description}: send failed: {error}") from error

    def close(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._serial.close()
            self._serial = None


def make_transport(cfg: PrinterConfig, timeout: float = DEFAULT_TIMEOUT_S) -> Transport:
    """The transport a printer's description asks for; a description missing its address is a config error."""
    if cfg.transport == "tcp":
        if not cfg.host:
            raise ValueError(f"printer {cfg.printer_id}: transport tcp needs a host")
        return TcpTransport(cfg.host, cfg.port, timeout)
    if not cfg.serial_port:
        raise ValueError(f"printer {cfg.printer_id}: transport serial needs serial_port")
    return SerialTransport(cfg.serial_port, cfg.baud, timeout)
