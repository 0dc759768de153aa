"""Printer status queries per language (ZPL ~HS, TSPL <ESC>!?, EZPL ~S,STATUS), their parsers, error codes."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from edge_gateway.printing.transport import PrinterOffline, Transport
from mes_contracts.errors import ErrorCode
from mes_contracts.labels import PrinterLanguage, PrinterState

log = logging.getLogger(__name__)

STX, ETX = b"\x02", b"\x03"

STATUS_QUERY: dict[PrinterLanguage, bytes] = {
    PrinterLanguage.ZPL: b"~HS",  # a tilde command: executed at once, even between or inside formats
    PrinterLanguage.TSPL: b"\x1b!?",  # <ESC>!? is answered "even in the event of printer error" (TSC manual)
    PrinterLanguage.EZPL: b"~S,STATUS\r\n",
}


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    state: PrinterState
    detail: str
    raw: bytes = b""


def error_code_for(state: PrinterState) -> ErrorCode | None:
    """The spec's error for a printer that is not ready (§4.3): only paper-out has its own code."""
    if state is PrinterState.READY:
        return None
    if state is PrinterState.PAPER_OUT:
        return ErrorCode.PRINTER_OUT_OF_PAPER
    return ErrorCode.PRINTER_NOT_CONNECTED  # offline, head open, paused: the printer cannot print now


# --- ZPL ~HS -------------------------------------------------------------------------------------------------
# ZPL II Programming Guide, "~HS Host Status Return": three strings, each <STX>…<ETX><CR><LF>.
#   String 1  aaa,b,c,dddd,eee,f,g,h,iii,j,k,l   field 2 (b) = paper out flag, field 3 (c) = pause flag,
#             field 5 (eee) = formats in the receive buffer
#   String 2  mmm,n,o,p,q,r,s,t,uuuuuuuu,v,www   field 3 (o) = head up flag, field 4 (p) = ribbon out flag
#   String 3  xxxx,y                             password, static RAM installed
# The guide also warns that some printers do not answer ~HS at all while media out / ribbon out / head open:
# such a printer times out here and is reported offline (PRINTER_NOT_CONNECTED), still refusing to print.
_ZPL_STRING = re.compile(rb"\x02([^\x02\x03]*)\x03")


def _zpl_complete(buf: bytes) -> bool:
    return len(_ZPL_STRING.findall(buf)) >= 3


def _flag(fields: list[bytes], index: int) -> bool:
    return len(fields) > index and fields[index].strip() == b"1"


def parse_zpl_hs(raw: bytes) -> PrinterStatus:
    strings = [s.split(b",") for s in _ZPL_STRING.findall(raw)]
    if len(strings) < 2 or len(strings[0]) < 3 or len(strings[1]) < 4:
        return PrinterStatus(PrinterState.OFFLINE, "unreadable ~HS answer (is it a ZPL printer?)", raw)
    one, two = strings[0], strings[1]
    # Head open first: with the head up the media sensor's reading means nothing.
    if _flag(two, 2):
        return PrinterStatus(PrinterState.HEAD_OPEN, "head open", raw)
    if _flag(one, 1):
        return PrinterStatus(PrinterState.PAPER_OUT, "paper out", raw)
    if _flag(two, 3):
        return PrinterStatus(PrinterState.PAUSED, "ribbon out", raw)  # a Zebra stops until a ribbon is loaded
    if _flag(one, 2):
        return PrinterStatus(PrinterState.PAUSED, "paused", raw)
    return PrinterStatus(PrinterState.READY, "ready", raw)


# --- TSPL <ESC>!? --------------------------------------------------------------------------------------------
# TSC TSPL/TSPL2 Programming Manual, "<ESC>!?": one status byte, 0x00 = ready. Bits: 0 head opened,
# 1 paper jam, 2 out of paper, 3 out of ribbon, 4 pause, 5 printing, 6 cover opened (option),
# 7 other error / environment temperature out of range (model dependent).
_TSPL_BITS = (
    (0x01 | 0x40, PrinterState.HEAD_OPEN, "head opened"),
    (0x04, PrinterState.PAPER_OUT, "out of paper"),
    (0x02, PrinterState.PAUSED, "paper jam"),
    (0x08, PrinterState.PAUSED, "out of ribbon"),
    (0x80, PrinterState.PAUSED, "other error"),
    (0x10, PrinterState.PAUSED, "paused"),
)


def parse_tspl_status(raw: bytes) -> PrinterStatus:
    if not raw:
        return PrinterStatus(PrinterState.OFFLINE, "no answer to <ESC>!?", raw)
    byte = raw[0]
    for mask, state, detail in _TSPL_BITS:
        if byte & mask:
            return PrinterStatus(state, f"{detail} (status 0x{byte:02X})", raw)
    # 0x20 'printing' alone: busy with an earlier label; a new one waits in its buffer.
    return PrinterStatus(PrinterState.READY, "printing" if byte & 0x20 else "ready", raw)


# --- EZPL ~S,STATUS ------------------------------------------------------------------------------------------
# Godex EZPL Programming Manual: the status answer starts with a two-digit code "aa" (the same table as
# ~S,CHECK): 00 ready, 01/02 media empty or media jam, 03 ribbon empty, 04 printhead up (open), 05 rewinder
# full, 06 file system full, 07 filename not found, 08 duplicate name, 09 syntax error, 10 cutter jam,
# 11 extended memory not found, 20 pause, 21 setting mode, 22 keyboard mode, 50 printing, 60 data in process.
# Not verified on a G500: whether ~S,STATUS appends more fields (",bbbbb" labels left) — only "aa" is read,
# and 07/08/09 (errors of an earlier command) are taken as "can print" since the mechanism is fine.
_EZPL_CODE = re.compile(rb"^\s*(\d{2})")
_EZPL_STATES: dict[str, tuple[PrinterState, str]] = {
    "00": (PrinterState.READY, "ready"),
    "01": (PrinterState.PAPER_OUT, "media empty or media jam"),
    "02": (PrinterState.PAPER_OUT, "media empty or media jam"),
    "03": (PrinterState.PAUSED, "ribbon empty"),
    "04": (PrinterState.HEAD_OPEN, "printhead open"),
    "05": (PrinterState.PAUSED, "rewinder full"),
    "06": (PrinterState.PAUSED, "file system full"),
    "07": (PrinterState.READY, "ready (last command: filename not found)"),
    "08": (PrinterState.READY, "ready (last command: duplicate name)"),
    "09": (PrinterState.READY, "ready (last command: syntax error)"),
    "10": (PrinterState.PAUSED, "cutter jam"),
    "11": (PrinterState.PAUSED, "extended memory not found"),
    "20": (PrinterState.PAUSED, "paused"),
    "21": (PrinterState.PAUSED, "in setting mode"),
    "22": (PrinterState.PAUSED, "in keyboard mode"),
    "50": (PrinterState.READY, "printing"),
    "60": (PrinterState.READY, "data in process"),
}


def _ezpl_complete(buf: bytes) -> bool:
    return _EZPL_CODE.match(buf) is not None and (b"\r" in buf or b"\n" in buf)


def parse_ezpl_status(raw: bytes) -> PrinterStatus:
    match = _EZPL_CODE.match(raw)
    if match is None:
        return PrinterStatus(PrinterState.OFFLINE, "unreadable ~S,STATUS answer (is it a Godex printer?)", raw)
    code = match.group(1).decode()
    state, detail = _EZPL_STATES.get(code, (PrinterState.PAUSED, "unknown status"))
    return PrinterStatus(state, f"{detail} (code {code})", raw)


_COMPLETE = {
    PrinterLanguage.ZPL: _zpl_complete,
    PrinterLanguage.TSPL: lambda buf: len(buf) >= 1,
    PrinterLanguage.EZPL: _ezpl_complete,
}
_PARSE = {
    PrinterLanguage.ZPL: parse_zpl_hs,
    PrinterLanguage.TSPL: parse_tspl_status,
    PrinterLanguage.EZPL: parse_ezpl_status,
}


def parse_status(language: PrinterLanguage, raw: bytes) -> PrinterStatus:
    return _PARSE[language](raw)


def query_status(transport: Transport, language: PrinterLanguage, timeout: float) -> PrinterStatus:
    """Ask an open transport for the printer's status; never raises for printer conditions (→ OFFLINE)."""
    try:
        transport.write(STATUS_QUERY[language])
        buf = b""
        deadline = time.monotonic() + timeout
        while not _COMPLETE[language](buf):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            buf += transport.read(left)
    except PrinterOffline as error:
        return PrinterStatus(PrinterState.OFFLINE, str(error))
    if not buf:
        return PrinterStatus(PrinterState.OFFLINE, f"{transport.description}: no status answer within {timeout:g} s")
    status = parse_status(language, buf)
    log.debug("%s status %s (%s)", transport.description, status.state, status.detail)
    return status
