"""What the emulated printer understands: status queries and label programs cut out of a byte stream; replies."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mes_contracts.labels import PrinterLanguage, PrinterState

MAX_PROGRAM_BYTES = 16 * 1024 * 1024  # a real printer's buffer is smaller; past this a runaway stream is dropped

STATUS_TOKEN: dict[PrinterLanguage, bytes] = {
    PrinterLanguage.ZPL: b"~HS",
    PrinterLanguage.TSPL: b"\x1b!?",
    PrinterLanguage.EZPL: b"~S,STATUS",
}
# Where a program ends: ZPL ^XZ (after a ^XA), TSPL the PRINT command line, EZPL the line "E".
_PROGRAM_END: dict[PrinterLanguage, re.Pattern[bytes]] = {
    PrinterLanguage.ZPL: re.compile(rb"\^XZ", re.IGNORECASE),
    PrinterLanguage.TSPL: re.compile(rb"(?:^|[\r\n])[ \t]*PRINT\b[^\r\n]*(?:\r\n|\n|\r)", re.IGNORECASE),
    PrinterLanguage.EZPL: re.compile(rb"(?:^|[\r\n])E[ \t]*(?:\r\n|\n|\r)"),
}
_ZPL_START = re.compile(rb"\^XA", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Parsed:
    status_queries: int
    programs: list[bytes]


class ProgramStream:
    """Incremental parser of one connection's bytes; tokens and programs may be split across packets.

    Status queries are immediate commands (answered at once, wherever they appear, and removed from the
    program text). A program is everything since the previous one up to its end marker, so a ZPL ~DG graphic
    download sent before ^XA stays with the label that recalls it.
    """

    def __init__(self, language: PrinterLanguage) -> None:
        self.language = language
        self._token = re.compile(re.escape(STATUS_TOKEN[language]), re.IGNORECASE)
        self._token_len = len(STATUS_TOKEN[language])
        self._end = _PROGRAM_END[language]
        self._carry = b""  # a tail that may be the start of a status token
        self._buf = bytearray()
        self._scan_from = 0
        self.dropped = 0

    def feed(self, data: bytes) -> Parsed:
        chunk, queries = self._token.subn(b"", self._carry + data)
        keep = self._possible_token_prefix(chunk)
        self._carry = chunk[len(chunk) - keep :] if keep else b""
        self._buf += chunk[: len(chunk) - keep]
        return Parsed(queries, self._cut_programs())

    def close(self) -> bytes:
        """End of stream: the unfinished program, if any (a printer would wait for its end forever)."""
        rest = bytes(self._buf) + self._carry
        self._buf.clear()
        self._carry = b""
        self._scan_from = 0
        return rest.strip()

    def _possible_token_prefix(self, chunk: bytes) -> int:
        token = STATUS_TOKEN[self.language].upper()
        for size in range(min(self._token_len - 1, len(chunk)), 0, -1):
            if chunk[-size:].upper() == token[:size]:
                return size
        return 0

    def _cut_programs(self) -> list[bytes]:
        programs: list[bytes] = []
        while True:
            start = 0
            if self.language is PrinterLanguage.ZPL:
                opened = _ZPL_START.search(self._buf)
                if opened is None:
                    break
                start = opened.end()
            match = self._end.search(self._buf, max(start, self._scan_from))
            if match is None:
                # A match may straddle this feed and the next: rescan the last few bytes next time.
                self._scan_from = max(start, len(self._buf) - 256)
                break
            program = bytes(self._buf[: match.end()]).strip()
            del self._buf[: match.end()]
            self._scan_from = 0
            if program:
                programs.append(program)
        if len(self._buf) > MAX_PROGRAM_BYTES:
            self.dropped += len(self._buf)
            self._buf.clear()
            self._scan_from = 0
        return programs


# --- status replies --------------------------------------------------------------------------------------------


def zpl_hs_reply(state: PrinterState, formats_in_buffer: int = 0) -> bytes:
    """The three ~HS strings (field layout: see edge_gateway.printing.status): 9600 8N1, 320-dot labels."""
    paper_out = int(state is PrinterState.PAPER_OUT)
    pause = int(state is PrinterState.PAUSED)
    head_up = int(state is PrinterState.HEAD_OPEN)
    one = f"030,{paper_out},{pause},0320,{min(formats_in_buffer, 999):03d},0,0,0,000,0,0,0"
    two = f"001,0,{head_up},0,0,2,6,0,00000000,1,000"
    three = "1234,0"
    return b"".join(b"\x02" + s.encode() + b"\x03\r\n" for s in (one, two, three))


_TSPL_BYTE = {
    PrinterState.READY: 0x00,
    PrinterState.HEAD_OPEN: 0x01,
    PrinterState.PAPER_OUT: 0x04,
    PrinterState.PAUSED: 0x10,
}
_EZPL_CODE = {
    PrinterState.READY: "00",
    PrinterState.PAPER_OUT: "01",
    PrinterState.HEAD_OPEN: "04",
    PrinterState.PAUSED: "20",
}


def status_reply(language: PrinterLanguage, state: PrinterState, formats_in_buffer: int = 0) -> bytes:
    """What the printer answers to its language's status query; an offline printer answers nothing."""
    if state is PrinterState.OFFLINE:
        return b""
    if language is PrinterLanguage.ZPL:
        return zpl_hs_reply(state, formats_in_buffer)
    if language is PrinterLanguage.TSPL:
        return bytes([_TSPL_BYTE[state]])
    # "aa,bbbbb": status code, labels still to print (see the EZPL note in edge_gateway.printing.status)
    return f"{_EZPL_CODE[state]},{min(formats_in_buffer, 99999):05d}\r\n".encode()


# --- what a label says ---------------------------------------------------------------------------------------

_FD = re.compile(r"\^FD(.*)", re.IGNORECASE | re.DOTALL)
_BARCODE = re.compile(r"\^B[0-9A-Z]", re.IGNORECASE)


def summarize_zpl(program: bytes) -> dict[str, str | None]:
    """First text field and first barcode data of a ZPL label, for the index (no ^FH hex decoding)."""
    text = program.decode("utf-8", errors="replace")
    first_text: str | None = None
    barcode: str | None = None
    for field in re.split(r"\^FS", text, flags=re.IGNORECASE):
        data = _FD.search(field)
        if data is None:
            continue
        value = re.split(r"\^", data.group(1), maxsplit=1)[0].strip()
        if _BARCODE.search(field[: data.start()]):
            barcode = value if barcode is None else barcode
        elif first_text is None:
            first_text = value
        if first_text is not None and barcode is not None:
            break
    return {"text": first_text, "barcode": barcode}
