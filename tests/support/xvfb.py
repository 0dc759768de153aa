"""A private X display for the real-window tests: Xvfb on a free display number, Tk driven like a scanner.

`-displayfd` lets Xvfb pick a free number itself and tell us (no race with another test run's display).
`type_like_scanner` sends each character and Return as key events to the widget that has the focus, as a
keyboard-wedge scanner does; `pump_until` runs the Tk event loop until a condition holds (no fixed sleeps).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

XVFB = shutil.which("Xvfb") or "/usr/bin/Xvfb"
KEYSYMS = {"-": "minus", ".": "period", "_": "underscore", " ": "space", "/": "slash", ":": "colon"}
SCREEN = "1280x1024x24"


def xvfb_missing() -> str | None:
    """Why the real-window tests cannot run here, or None."""
    if not Path(XVFB).exists():
        return "Xvfb is not installed (Debian: apt-get install xvfb)"
    try:
        import tkinter  # noqa: F401
    except ImportError:
        return "tkinter is not installed (Debian: apt-get install python3-tk)"
    return None


@contextmanager
def xvfb_display(screen: str = SCREEN) -> Iterator[str]:
    """Start Xvfb, yield its display name (":N"), stop it afterwards."""
    read, write = os.pipe()
    process = subprocess.Popen(
        [XVFB, "-displayfd", str(write), "-screen", "0", screen, "-nolisten", "tcp", "-noreset"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        number = b""
        deadline = time.monotonic() + 20
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            chunk = os.read(read, 16)
            if not chunk:
                break
            number += chunk
        if not number.strip():
            raise RuntimeError("Xvfb did not report its display number")
        yield f":{number.decode().strip()}"
    finally:
        os.close(read)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def x_display() -> Iterator[str]:
    """One Xvfb for every in-process Tk test of the session (tests/conftest.py registers it).

    Why one: Tk keeps its connection to a display open after the display's last window is closed, and when that X
    server goes away Xlib's default I/O-error handler ends the whole process with status 1 and no traceback. A
    test-owned Xvfb stopped after one module's window test killed pytest in the next module's window test.
    """
    with xvfb_display() as name:
        yield name


def pump_until(root: Any, condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Run Tk's event loop until `condition()`; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        root.update()
        if condition():
            return
        time.sleep(0.02)
    root.update()
    if not condition():
        raise AssertionError(f"not within {timeout} s: {what}")


def type_like_scanner(root: Any, text: str) -> None:
    """Each character, then Return, as key events to the focused widget (the scan field must have the focus)."""
    focused = root.focus_get()
    assert focused is not None, "no widget has the keyboard focus"
    for char in text:
        keysym = KEYSYMS.get(char, char)
        focused.event_generate("<KeyPress>", keysym=keysym, state=1 if char.isupper() else 0, when="tail")
    focused.event_generate("<KeyPress>", keysym="Return", when="tail")
    root.update()


def screenshot(display: str, root: Any, path: Path) -> Path:
    """The window's area of the Xvfb screen as PNG (Pillow's X grab)."""
    from PIL import ImageGrab

    root.update()
    x, y = root.winfo_rootx(), root.winfo_rooty()
    width, height = root.winfo_width(), root.winfo_height()
    image = ImageGrab.grab(bbox=(x, y, x + width, y + height), xdisplay=display)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
    return path
