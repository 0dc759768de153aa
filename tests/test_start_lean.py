"""Issue 18.3, the lean start (helper S): the ingestor's MQTT writes leave in the loop iteration that queued them
(cloud_api/ingestor/prompt_writes.py), and nothing is lost or reordered when the socket takes only part."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from unittest.mock import patch

import aiomqtt
import paho.mqtt.client as mqtt

from cloud_api.ingestor.prompt_writes import write_promptly
from deploy.localstack.services import MosquittoServer

TOPIC = "lean/prompt"


def _fd(paho: mqtt.Client) -> int:
    sock = paho.socket()
    assert sock is not None
    return sock.fileno()


def _client(broker: MosquittoServer, name: str) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", broker.port, identifier=name, protocol=aiomqtt.ProtocolVersion.V5)


async def test_publishes_arrive_whole_and_in_order_with_prompt_writes(broker: MosquittoServer) -> None:
    """QoS 1 publishes, small and large (up to 1 MB, through an 8 kB send buffer, so the rest of a
    write waits for writability), all arrive intact and in order, and each publish call returns (its PUBACK)."""
    sizes = [40, 2_000, 300_000, 10, 1_000_000, *([300] * 200)]
    payloads = [hashlib.sha256(str(n).encode()).digest() * (size // 32 + 1) for n, size in enumerate(sizes)]
    got: list[bytes] = []
    async with _client(broker, "lean-sub") as sub, _client(broker, "lean-pub") as pub:
        await sub.subscribe(TOPIC, qos=1)
        write_promptly(pub)  # installed after connect here: the ingestor installs it before (both work)
        paho: mqtt.Client = pub._client
        sock = paho.socket()
        assert isinstance(sock, socket.socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)  # a large write is sure to go in parts
        prompt = paho.on_socket_register_write
        assert prompt is not None and prompt.__name__ == "register_write"

        async def receive() -> None:
            async for message in sub.messages:
                assert isinstance(message.payload, bytes)
                got.append(message.payload)
                if len(got) == len(payloads):
                    return

        loop = asyncio.get_running_loop()
        with patch.object(loop, "add_writer", wraps=loop.add_writer) as add_writer:
            receiver = asyncio.create_task(receive())
            await asyncio.gather(*(pub.publish(TOPIC, p, qos=1, timeout=30) for p in payloads))
            await asyncio.wait_for(receiver, 30)
        assert _fd(paho) in [call.args[0] for call in add_writer.call_args_list], (
            "the small send buffer must have made a write wait"
        )
        assert not paho.want_write()  # nothing left queued behind a write that never happened
    assert got == payloads


async def test_write_goes_out_before_the_loop_waits_again(broker: MosquittoServer) -> None:
    """The point of the change: a publish made on the loop is on the wire once the publishing task yields, with
    no writer registered with the selector (aiomqtt's way registers one and writes an iteration later)."""
    async with _client(broker, "lean-sub2") as sub, _client(broker, "lean-pub2") as pub:
        await sub.subscribe(TOPIC, qos=1)
        write_promptly(pub)
        paho: mqtt.Client = pub._client
        loop = asyncio.get_running_loop()
        with patch.object(loop, "add_writer", wraps=loop.add_writer) as add_writer:
            for n in range(20):
                paho.publish(TOPIC, f"m{n}".encode(), qos=1)
                await asyncio.sleep(0)  # one loop iteration: the call_soon write runs
                assert not paho.want_write(), f"publish {n} still queued after one iteration"
        # (the subscriber's PUBACKs take aiomqtt's way: only the publisher's socket counts)
        assert _fd(paho) not in [call.args[0] for call in add_writer.call_args_list]
        seen = []
        async for message in sub.messages:
            seen.append(message.payload)
            if len(seen) == 20:
                break
        assert seen == [f"m{n}".encode() for n in range(20)]


async def test_calls_from_another_thread_keep_aiomqtts_way(broker: MosquittoServer) -> None:
    """paho asks to write from the executor thread during connect: that call must take aiomqtt's thread-safe
    path (a loop.call_soon from another thread would be unsafe)."""
    client = _client(broker, "lean-thread")
    async with client:
        write_promptly(client)
        paho: mqtt.Client = client._client
        done = asyncio.Event()
        loop = asyncio.get_running_loop()

        def from_thread() -> None:
            paho.publish(TOPIC, b"from a thread", qos=0)  # queued; the register call comes from this thread
            loop.call_soon_threadsafe(done.set)

        await asyncio.to_thread(from_thread)
        await asyncio.wait_for(done.wait(), 5)
        for _ in range(100):
            if not paho.want_write():
                break
            await asyncio.sleep(0.01)
        assert not paho.want_write()
