"""Turn a Python logging %-style format into a regex that splits a log line into its time and message.

Nebari's exporter logs each event with `logger.info(json.dumps(event))` under a site-configurable
format, so the parser must know where the message starts and what time the line carries.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import yaml

NEBARI_DEFAULT_LOG_FORMAT = "%(asctime)s %(levelname)9s %(lineno)4s %(module)s: %(message)s"

# One %-style conversion: %(name)<flags><width>.<precision><type>, or a literal %%.
_CONVERSION = re.compile(
    r"%%|%\((?P<name>[^)]*)\)(?P<flags>[#0+ -]*)(?P<width>\d+)?(?:\.\d+)?[hlL]?(?P<type>[diouxXeEfFgGcrsa])"
)
# logging's default asctime is "2026-11-26 17:52:50,159"; the ",mmm" is absent when a datefmt is set
# (which is what formats using %(msecs)03d usually do).
_ASCTIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:,\d{3})?"
_NUMBER = r"-?\d+(?:\.\d+)?"
_NUMERIC_ATTRIBUTES = frozenset(
    {"created", "levelno", "lineno", "msecs", "process", "relativeCreated", "thread"}
)
_TIME_ATTRIBUTES = frozenset({"asctime", "msecs", "created"})
LOOSE_FIELD_CHARS = 1024

_EPOCH = datetime(1970, 1, 1)  # naive: asctime is taken as UTC, the time zone of Nebari's pods
_MILLISECOND = timedelta(milliseconds=1)


def _field_pattern(name: str, conversion: str) -> str | None:
    """The regex for one field's value, or None for a loosely matched one (any text)."""
    if name == "message":
        return r".*"
    if name == "asctime":
        return _ASCTIME
    if name == "levelname":
        return r"\w+(?: \d+)?"  # custom levels render as "Level 5"
    if conversion in "diu" or (conversion in "eEfFgGs" and name in _NUMERIC_ATTRIBUTES):
        return _NUMBER
    if conversion in "xX":
        return r"[0-9a-fA-F]+"
    return None


def compile_log_format(fmt: str) -> re.Pattern[bytes]:
    """An anchored bytes regex for lines rendered with `fmt`.

    The message and the time fields (asctime, msecs, created) get named groups. A width pads with spaces
    on the left (or right for `-`), hence the optional spaces. Any other field (`%(name)s`, ...) is loose:
    up to `LOOSE_FIELD_CHARS` characters, running to the first occurrence of the literal text after it,
    without backtracking (an atomic group). That keeps matching linear on lines of megabytes; a line
    whose field value holds that text does not match and goes to the fallback.
    """
    items: list[tuple[str, str]] = []  # ("text", literal) or ("regex", pattern) or ("loose", "")
    named: set[str] = set()
    pos = 0
    for match in _CONVERSION.finditer(fmt):
        items.append(("text", fmt[pos : match.start()]))
        pos = match.end()
        if match.group() == "%%":
            items.append(("text", "%"))
            continue
        name, flags, width = match.group("name"), match.group("flags"), match.group("width")
        pattern = _field_pattern(name, match.group("type"))
        if pattern is None:
            items.append(("loose", ""))
            continue
        if (name == "message" or name in _TIME_ATTRIBUTES) and name not in named:
            named.add(name)
            pattern = f"(?P<{name}>{pattern})"
        else:
            pattern = f"(?:{pattern})"
        if width and "-" in flags:
            pattern += " *"
        elif width:
            pattern = " *" + pattern
        items.append(("regex", pattern))
    items.append(("text", fmt[pos:]))

    parts: list[str] = []
    loose = False
    for kind, value in items:
        if kind == "loose":
            if loose:  # two loose fields in a row: the first one cannot know where it ends
                parts.append(f".{{0,{LOOSE_FIELD_CHARS}}}?")
            loose = True
        elif kind == "text" and loose and value:
            parts.append(f"(?>.{{0,{LOOSE_FIELD_CHARS}}}?{re.escape(value)})")
            loose = False
        elif kind == "text":
            parts.append(re.escape(value))
        else:
            if loose:
                parts.append(f".{{0,{LOOSE_FIELD_CHARS}}}?")
                loose = False
            parts.append(value)
    if loose:
        parts.append(f".{{0,{LOOSE_FIELD_CHARS}}}?")
    return re.compile(("".join(parts) + r"\Z").encode(), re.DOTALL)


@lru_cache(maxsize=256)
def _epoch_ms_of_second(text: bytes) -> int:
    return (datetime.fromisoformat(text.decode()) - _EPOCH) // _MILLISECOND


def prefix_time_reader(pattern: re.Pattern[bytes]) -> Callable[[re.Match[bytes]], int | None]:
    """For a `compile_log_format` pattern, the function that reads epoch milliseconds from the time
    groups it matched (None when it has none, or they are not a real time). Chosen once per pattern:
    the parser calls it for every event line."""
    groups = pattern.groupindex

    def created(match: re.Match[bytes]) -> int:
        return round(float(match["created"]) * 1000)

    def asctime_msecs(match: re.Match[bytes]) -> int:
        return _epoch_ms_of_second(match["asctime"][:19]) + int(float(match["msecs"]))

    def asctime(match: re.Match[bytes]) -> int:
        # "2026-11-26 17:52:50" is shared by many lines: cached; then ",159" (absent with a datefmt)
        text = match["asctime"]
        return _epoch_ms_of_second(text[:19]) + int(text[20:] or 0)

    def no_time(match: re.Match[bytes]) -> None:
        return None

    if "created" in groups:
        read: Callable[[re.Match[bytes]], int | None] = created
    elif "asctime" in groups:
        read = asctime_msecs if "msecs" in groups else asctime
    else:
        return no_time

    def checked(match: re.Match[bytes]) -> int | None:
        try:
            return read(match)
        except (ValueError, OverflowError):  # digits in the right places, but not a real time
            return None

    return checked


def find_event_start(line: bytes) -> int:
    """Offset of the first event object in a line whose prefix did not match the format, or -1."""
    starts = [start for start in (line.find(b'{"eventDetail"'), line.find(b"{'eventDetail'")) if start >= 0]
    return min(starts, default=-1)


def object_end(text: str, start: int) -> int:
    """Index just past the JSON object or Python dict repr opening at `start`, honouring quoted strings
    of either quote; len(text) if it is never closed (a truncated line)."""
    depth, quote, escaped = 0, "", False
    for i in range(start, len(text)):
        char = text[i]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def log_format_from_nebari_config(path: Path) -> str | None:
    """`telemetry.jupyterlab_pioneer.log_format` of a nebari-config.yml, or None when it is not set."""
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    telemetry = config.get("telemetry") if isinstance(config, dict) else None
    pioneer = telemetry.get("jupyterlab_pioneer") if isinstance(telemetry, dict) else None
    fmt = pioneer.get("log_format") if isinstance(pioneer, dict) else None
    return fmt if isinstance(fmt, str) and fmt else None
