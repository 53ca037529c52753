"""Faults to inject: a TCP proxy that delays or drops connections, and pausing a process.

`FaultProxy` listens on a loopback port and forwards each connection to one upstream
(`127.0.0.1:PORT`) in its own asyncio thread. `set(latency_s=..., drop_ratio=...)` changes the
fault for connections accepted from then on: `latency_s` delays the upstream's bytes on their
way back (each chunk, so time to first token grows by it), `drop_ratio` closes that share of new
connections at once (the client sees a reset). `clear()` removes the faults.
`pause(pid)` / `resume(pid)` send SIGSTOP / SIGCONT: a replica that stops answering while its
socket stays open, the way a stalled VM or a GC pause looks from outside.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading


class FaultProxy:
    """A loopback TCP proxy in front of `upstream_port`, with settable latency and connection drops.

    Args:
        upstream_port: the replica's port on 127.0.0.1.
        seed: seeds the drop decisions.
    """

    def __init__(self, upstream_port: int, seed: int = 0) -> None:
        self.upstream_port = upstream_port
        self.latency_s, self.drop_ratio = 0.0, 0.0
        self.num_connections = self.num_dropped = 0
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self.port: int | None = None

    def start(self) -> FaultProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._server = None

    def set(self, latency_s: float = 0.0, drop_ratio: float = 0.0) -> None:
        """Faults for new connections: `latency_s` >= 0 added to each reply chunk, `drop_ratio` in [0, 1]."""
        if not latency_s >= 0 or latency_s > 60:
            raise ValueError(f"latency_s must be in [0, 60] seconds, got {latency_s!r}")
        if not 0 <= drop_ratio <= 1:
            raise ValueError(f"drop_ratio must be in [0, 1], got {drop_ratio!r}")
        self.latency_s, self.drop_ratio = float(latency_s), float(drop_ratio)

    def clear(self) -> None:
        self.set(0.0, 0.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.num_connections += 1
        latency_s, drop = self.latency_s, self._rng.random() < self.drop_ratio
        if drop:
            self.num_dropped += 1
            writer.transport.abort()  # a reset, not a clean close
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        await asyncio.gather(_pipe(reader, up_writer, 0.0), _pipe(up_reader, writer, latency_s),
                             return_exceptions=True)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency_s: float) -> None:
    try:
        while data := await reader.read(65536):
            if latency_s:
                await asyncio.sleep(latency_s)
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


def pause(pid: int) -> None:
    """SIGSTOP: the process stops running; its sockets stay open (clients wait, scrapes time out)."""
    os.kill(pid, signal.SIGSTOP)


def resume(pid: int) -> None:
    """SIGCONT: the paused process runs again."""
    os.kill(pid, signal.SIGCONT)
