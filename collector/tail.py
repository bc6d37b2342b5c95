"""Follow pod log files like the kubelet writes them, losing and repeating nothing across restarts.

- A file is known by (dev, inode). When its path starts naming another inode (rename rotation), the old
  file is read to its end before it is let go; a file that shrinks under us was copy-truncated and is
  read again from its start.
- Positions are checkpointed only up to the first line Kafka has not acknowledged (and never into a
  line still waiting for its partial chunks), so after a crash, even `kill -9`, reading resumes at a
  line boundary: nothing is lost, and only lines that were in flight can arrive twice, with the same
  source id and offset.
- On a restart, files that are not in the checkpoint appeared while we were down and are read from
  their start; a checkpointed file that was rotated meanwhile is found again by its inode.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from collector.checkpoint import CheckpointStore, FilePosition
from collector.edge import PodFilter
from collector.lines import LineAssembler, LineSink, LogLine, kubernetes_metadata
from collector.metrics import COLLECTOR_METRICS as METRICS
from streams.identity import PodMeta

log = logging.getLogger(__name__)

StartAt = Literal["beginning", "end"]
TRUNCATION_MARK_BYTES = 64


@dataclass(slots=True)
class _InFlight:
    offset: int  # where the first line of a submission starts
    ack: asyncio.Future[None]


class FollowedFile:
    """One open file: bytes read, lines being assembled, and what Kafka has not yet acknowledged."""

    def __init__(
        self, path: str, handle: BinaryIO, offset: int, kubernetes: dict[str, object], max_line_bytes: int
    ) -> None:
        stat = os.fstat(handle.fileno())
        self.path = path
        self.handle = handle
        self.dev, self.inode = stat.st_dev, stat.st_ino
        self.lines = LineAssembler(f"{path}#{self.inode}", kubernetes, max_line_bytes, offset)
        self.inflight: deque[_InFlight] = deque()
        self.rotated_at: float | None = None  # set once the path names another file
        self.last_data_at = time.monotonic()
        self._last_bytes = b""  # the end of what was read, to recognise a file truncated and regrown
        handle.seek(offset)

    @property
    def key(self) -> str:
        return f"{self.dev}:{self.inode}"

    @property
    def offset(self) -> int:
        return self.lines.offset

    def read_lines(self, max_bytes: int) -> list[LogLine]:
        """Complete logical lines in the next `max_bytes` of the file (none at end of file)."""
        data = self.handle.read(max_bytes)
        if data:
            self.last_data_at = time.monotonic()
            self._last_bytes = (self._last_bytes + data)[-TRUNCATION_MARK_BYTES:]
        return self.lines.feed(data)

    def truncated(self) -> bool:
        """Copy-truncate rotation: the file is shorter than what we read, or (already written past our
        offset again) the bytes just before our offset are no longer the ones we read there."""
        fd = self.handle.fileno()
        if os.fstat(fd).st_size < self.offset:
            return True
        mark = self._last_bytes
        return bool(mark) and os.pread(fd, len(mark), self.offset - len(mark)) != mark

    def restart_from_beginning(self) -> None:
        self._last_bytes = b""
        self.lines.reset(0)
        self.inflight.clear()  # acks of the old content say nothing about positions in the new
        self.handle.seek(0)

    def committed_offset(self) -> int:
        """Everything before this offset is acknowledged by Kafka or filtered out."""
        while self.inflight and self.inflight[0].ack.done():
            self.inflight.popleft()
        unfinished = self.lines.unfinished_offset()
        return min(self.inflight[0].offset, unfinished) if self.inflight else unfinished

    def position(self) -> FilePosition:
        return FilePosition(self.path, self.dev, self.inode, self.committed_offset())


class FileTailer:
    """Follows every file matching `patterns` and hands its lines to the sink."""

    def __init__(
        self,
        patterns: list[str],
        sink: LineSink,
        checkpoints: CheckpointStore,
        pod_filter: PodFilter,
        *,
        start_at: StartAt = "end",
        poll_interval_s: float = 0.25,
        rotate_wait_s: float = 5.0,
        checkpoint_interval_s: float = 1.0,
        read_chunk_bytes: int = 64 * 1024,  # small: between chunks the producer sends and takes acks
        max_line_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.patterns = patterns
        self.sink = sink
        self.checkpoints = checkpoints
        self.pod_filter = pod_filter
        self.start_at = start_at
        self.poll_interval_s = poll_interval_s
        self.rotate_wait_s = rotate_wait_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self.read_chunk_bytes = read_chunk_bytes
        self.max_line_bytes = max_line_bytes
        self.files: dict[str, FollowedFile] = {}  # by (dev:inode) key
        self._by_path: dict[str, str] = {}  # watched path -> key of the file it currently names
        self._saved: dict[str, FilePosition] = {}
        self._first_scan = True
        self.checkpoint_failing = False  # the last checkpoint write failed (disk full...): not reading

    async def run(self, stop: asyncio.Event) -> None:
        """Follow until `stop` is set, then wait for Kafka's acks and write the final checkpoint."""
        self._saved = self.checkpoints.load()
        self._resume_rotated_while_down()
        last_checkpoint = time.monotonic()
        try:
            while not stop.is_set():
                if self.checkpoint_failing:  # read nothing until our progress can be recorded again
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.checkpoint_interval_s)
                    self.try_checkpoint()
                    last_checkpoint = time.monotonic()
                    continue
                self._discover()
                read_any = await self._read_all(stop)
                self._retire_drained()
                METRICS.files_tailed.set(len(self.files))
                if time.monotonic() - last_checkpoint >= self.checkpoint_interval_s:
                    self.try_checkpoint()
                    last_checkpoint = time.monotonic()
                if not read_any:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.poll_interval_s)
        finally:
            await self.sink.flush()
            self.try_checkpoint()
            for followed in self.files.values():
                followed.handle.close()

    def save_checkpoint(self) -> None:
        self.checkpoints.save([followed.position() for followed in self.files.values()])

    def try_checkpoint(self) -> bool:
        """Save the positions; when that fails (a full disk, a read-only volume), pause reading instead of
        dying: the checkpoint on disk stays valid (it is replaced atomically, and only ever points at
        acknowledged lines), so nothing is lost, and lines read while it cannot be written would only
        widen what a crash makes us send again. Reading resumes once a save succeeds."""
        try:
            self.save_checkpoint()
        except OSError as error:
            if not self.checkpoint_failing:
                log.error(
                    "cannot write the checkpoint %s (%s): reading paused, retrying every %.1f s",
                    self.checkpoints.path,
                    error,
                    self.checkpoint_interval_s,
                )
            self.checkpoint_failing = True
            return False
        if self.checkpoint_failing:
            log.warning("checkpoint %s written again: reading resumes", self.checkpoints.path)
        self.checkpoint_failing = False
        return True

    def _resume_rotated_while_down(self) -> None:
        """Checkpointed files no longer at their path were rotated while we were down: find them by inode."""
        current = set()
        for pattern in self.patterns:
            for path in glob.glob(pattern):
                with contextlib.suppress(OSError):
                    stat = os.stat(path)
                    current.add(f"{stat.st_dev}:{stat.st_ino}")
        for key, saved in self._saved.items():
            if key in current:
                continue
            found = self._find_by_inode(Path(saved.path), saved.inode)
            if found is None:
                log.warning(
                    "checkpointed file %s (inode %d) is gone; its unread tail is lost",
                    saved.path,
                    saved.inode,
                )
                continue
            followed = self._open(saved.path, saved.offset, open_path=found)
            if followed is not None:
                followed.rotated_at = time.monotonic()
                log.info("resuming %s rotated to %s at offset %d", saved.path, found, saved.offset)

    @staticmethod
    def _find_by_inode(path: Path, inode: int) -> Path | None:
        for directory in {path.parent, path.resolve().parent}:
            with contextlib.suppress(OSError), os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False) and entry.inode() == inode:
                        return Path(entry.path)
        return None

    def _discover(self) -> None:
        for pattern in self.patterns:
            for path in glob.glob(pattern):
                try:
                    stat = os.stat(path)
                except OSError:
                    continue  # a dangling symlink between rotation steps
                key = f"{stat.st_dev}:{stat.st_ino}"
                known = self._by_path.get(path)
                if known == key:
                    continue
                if known is not None and known in self.files and self.files[known].rotated_at is None:
                    self.files[known].rotated_at = time.monotonic()
                    log.info("%s rotated; reading the old file to its end", path)
                if key in self.files:
                    self._by_path[path] = key
                    continue
                meta = PodMeta.from_log_path(path)
                kubernetes = kubernetes_metadata(meta)
                if not self.pod_filter.accepts(kubernetes):
                    continue
                saved = self._saved.get(key)
                if saved is not None:
                    offset = saved.offset if saved.offset <= stat.st_size else 0
                elif self._first_scan and self.start_at == "end" and not self.checkpoints.exists():
                    offset = stat.st_size
                else:
                    offset = 0  # appeared after we started, or while we were down
                if self._open(path, offset) is not None:
                    self._by_path[path] = key
        self._first_scan = False

    def _open(self, path: str, offset: int, open_path: Path | None = None) -> FollowedFile | None:
        try:
            handle = open(open_path or path, "rb")  # noqa: SIM115 (lives as long as the FollowedFile)
        except OSError as error:
            log.warning("cannot open %s: %s", path, error)
            return None
        kubernetes = kubernetes_metadata(PodMeta.from_log_path(path))
        followed = FollowedFile(path, handle, offset, kubernetes, self.max_line_bytes)
        self.files[followed.key] = followed
        log.info("following %s from offset %d", path, offset)
        return followed

    async def _read_all(self, stop: asyncio.Event) -> bool:
        read_any = False
        for followed in list(self.files.values()):
            if followed.truncated():
                log.warning(
                    "%s was truncated (copy-truncate rotation); reading it again from the start",
                    followed.path,
                )
                followed.restart_from_beginning()
            while not stop.is_set():
                start = followed.offset
                lines = followed.read_lines(self.read_chunk_bytes)
                if followed.offset == start:
                    break
                read_any = True
                if lines:
                    ack = await self.sink.submit(lines)
                    followed.inflight.append(_InFlight(lines[0].offset, ack))
                await asyncio.sleep(0)  # let acks and other sources run between chunks
        return read_any

    def _retire_drained(self) -> None:
        """Let go of rotated files once read to the end, quiet for `rotate_wait_s`, and fully acked."""
        for key, followed in list(self.files.items()):
            if followed.rotated_at is None:
                continue
            quiet = time.monotonic() - max(followed.last_data_at, followed.rotated_at) >= self.rotate_wait_s
            if quiet and followed.committed_offset() >= followed.offset:
                followed.handle.close()
                del self.files[key]
                log.info("done with rotated file %s", followed.path)
