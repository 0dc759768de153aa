"""A `mes` service started in the background with SIGINT ignored still stops on SIGINT (how `mes up` and the tests
stop their children); without that, every stop waited 10 s for the SIGTERM fallback."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.processes

SERVICE = (
    "import time\n"
    "from mes_cli.main import _restore_ctrl_c\n"
    "_restore_ctrl_c()\n"
    "print('ready', flush=True)\n"
    "try:\n"
    "    time.sleep(60)\n"
    "except KeyboardInterrupt:\n"
    "    print('stopped', flush=True)\n"
)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `cmd &` in a non-interactive shell does to its child


@pytest.mark.parametrize("restore", [True, False])
def test_sigint_stops_a_service_started_with_sigint_ignored(restore: bool) -> None:
    code = SERVICE if restore else SERVICE.replace("_restore_ctrl_c()\n", "")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, preexec_fn=_ignore_sigint)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        began = time.monotonic()
        child.send_signal(signal.SIGINT)
        try:
            out, _ = child.communicate(timeout=3)
        except subprocess.TimeoutExpired:
            out = None
        if restore:
            assert out is not None and "stopped" in out and time.monotonic() - began < 3
        else:
            assert out is None, "the control case: with SIGINT ignored the child must not stop"
    finally:
        child.kill()
        child.wait()
