"""The emulator's control port (stdlib HTTP): GET/PUT /state, GET /labels, GET /labels/<NNNNNN>.png."""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from mes_contracts.labels import PrinterState
from printer_emulator.server import PrinterEmulator

log = logging.getLogger(__name__)

_CONTENT_TYPES = {
    "png": "image/png",
    "zpl": "text/plain; charset=utf-8",
    "tspl": "application/octet-stream",
    "ezpl": "application/octet-stream",
}
_MAX_BODY = 4096


class ControlServer:
    """Serves in a thread; `port=0` picks a free port (see `.port`)."""

    def __init__(self, emulator: PrinterEmulator, host: str = "127.0.0.1", port: int = 9180) -> None:
        handler = type("Handler", (_Handler,), {"emulator": emulator})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.2,), name="printer-emulator-control", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        log.info("printer emulator control on %s", self.url)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    emulator: PrinterEmulator
    server_version = "printer-emulator"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("control %s", format % args)

    def _json(self, status: HTTPStatus, body: object) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/state":
            self._json(HTTPStatus.OK, self.emulator.snapshot())
        elif path == "/labels":
            self._json(HTTPStatus.OK, {"labels": self.emulator.labels()})
        elif path.startswith("/labels/"):
            self._file(path.removeprefix("/labels/"))
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def _file(self, name: str) -> None:
        found = self.emulator.store.file(name)
        if found is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no label file {name}"})
            return
        data = found.read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", _CONTENT_TYPES.get(found.suffix.lstrip("."), "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        if self.path.split("?", 1)[0].rstrip("/") != "/state":
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            state = PrinterState(body["state"])
        except (ValueError, KeyError, TypeError):
            allowed = [s.value for s in PrinterState]
            self._json(HTTPStatus.BAD_REQUEST, {"error": f'expected {{"state": one of {allowed}}}'})
            return
        try:
            self.emulator.set_state(state)
        except OSError as error:
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"cannot listen again: {error}"})
            return
        self._json(HTTPStatus.OK, self.emulator.snapshot())
