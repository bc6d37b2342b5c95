"""Lines piped in, e.g. `kubectl logs -f jupyter-alice | pioneer-telemetry collect --stdin --pod jupyter-alice`."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, BinaryIO

from collector.lines import LineAssembler, LineSink


async def collect_stream(
    stream: BinaryIO, sink: LineSink, kubernetes: dict[str, Any], source_id: str, max_line_bytes: int
) -> int:
    """Forward every line of `stream` until it ends; returns the number of bytes read.

    A daemon thread does the blocking reads, so a stream that never ends cannot hold up shutdown.
    """
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=8)

    def reader() -> None:
        while True:
            data = stream.read1(1024 * 1024) if hasattr(stream, "read1") else stream.read(1024 * 1024)
            asyncio.run_coroutine_threadsafe(chunks.put(data), loop).result()
            if not data:
                return

    threading.Thread(target=reader, name="stdin-reader", daemon=True).start()
    assembler = LineAssembler(source_id, kubernetes, max_line_bytes)
    acks: list[asyncio.Future[None]] = []
    while data := await chunks.get():
        if lines := assembler.feed(data):
            acks = [ack for ack in acks if not ack.done()]
            acks.append(await sink.submit(lines))
    if lines := assembler.finish():
        acks.append(await sink.submit(lines))
    await asyncio.gather(*acks)
    return assembler.offset
