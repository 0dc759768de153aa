"""Outgoing MQTT packets written in the loop iteration that queued them, not two iterations later (issue 18.3).

aiomqtt answers paho's "I have something to write" (`on_socket_register_write`) from any thread the same way:
`call_soon_threadsafe(add_writer, …)`. On the event loop's own thread that costs, per reply and per PUBACK, a
write to the loop's self-pipe, an extra loop iteration to register the writer (epoll_ctl), a select that reports
the socket writable, the write, and the writer's removal (epoll_ctl again): about 0.3 ms of a start's 5 ms at
20/s on the development VM (helper S's timeline in bench/README.md), and CPU at every rate.

On the loop's thread the queued packets are written by a `call_soon` callback instead: after the task that
queued them yields, in the same iteration, one send per packet. Whatever the socket does not take at once (a full
send buffer) waits for writability exactly as before (aiomqtt's writer callback, paho's own bookkeeping). Calls
from any other thread (paho's connect runs in an executor) keep aiomqtt's path unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)


def write_promptly(client: aiomqtt.Client) -> None:
    """Install on an aiomqtt client before it connects (aiomqtt sets its callbacks in its constructor)."""
    paho = getattr(client, "_client", None)  # aiomqtt keeps the paho client here; no public accessor
    if not isinstance(paho, mqtt.Client):  # an aiomqtt laid out otherwise: its own path, only less prompt
        log.warning("aiomqtt keeps no paho client where expected; outgoing packets take aiomqtt's own path")
        return
    original = paho.on_socket_register_write
    if original is None:  # an aiomqtt that no longer drives paho this way: leave it alone
        return
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()

    def write_now(sock: Any) -> None:
        current = paho.socket()
        if current is None or current is not sock:  # disconnected or reconnected meanwhile: nothing to write
            return
        try:
            paho.loop_write()  # paho's finally: unregisters the write when all went out
        except Exception:  # a broken link: aiomqtt's writer callback meets it again and reports the disconnect
            log.debug("prompt MQTT write failed; leaving it to the writer callback", exc_info=True)
            original(paho, None, current)
            return
        if paho.want_write():
            # The socket took part: paho still counts the write as registered, so it will not ask again; the
            # rest goes when the socket is writable, through aiomqtt's own writer callback.
            original(paho, None, current)

    def register_write(client_: mqtt.Client, userdata: Any, sock: Any) -> None:
        if threading.get_ident() == loop_thread and not loop.is_closed():
            loop.call_soon(write_now, sock)
        else:
            original(client_, userdata, sock)

    paho.on_socket_register_write = register_write
