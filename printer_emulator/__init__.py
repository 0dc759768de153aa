"""An emulated label printer (Zebra ZPL; TSC TSPL and Godex EZPL status too) on TCP and a pseudo-terminal."""

from printer_emulator.server import PrinterEmulator

__all__ = ["PrinterEmulator"]
