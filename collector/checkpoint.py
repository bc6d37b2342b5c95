"""File positions that survive `kill -9`: written atomically, and only for lines Kafka acknowledged."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class FilePosition:
    """Where to resume one file. A file is known by (dev, inode) so a rename during rotation keeps it."""

    path: str
    dev: int
    inode: int
    offset: int

    @property
    def key(self) -> str:
        return f"{self.dev}:{self.inode}"


class CheckpointStore:
    """A JSON file of positions, replaced atomically (write temp, fsync, rename, fsync dir)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> dict[str, FilePosition]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        positions = (FilePosition(**entry) for entry in raw.get("files", []))
        return {position.key: position for position in positions}

    def save(self, positions: list[FilePosition]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        payload = json.dumps({"version": 1, "files": [asdict(p) for p in positions]}, indent=1)
        with temporary.open("w") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        with contextlib.suppress(OSError):  # the rename is durable only once the directory is synced
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
