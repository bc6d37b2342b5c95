"""The line parser: one logical log line in; a normalized event, a dead letter, or nothing out.

Most lines in a pod log are the Jupyter server's own, so a line without `eventDetail` is dropped after a
substring test, before any decoding. Event lines are split by the configured log format (falling back
to wherever the event object starts), decoded with orjson (or, for `command_line_exporter`'s Python
dict reprs, a size-bounded `ast.literal_eval`), validated against the schema, redacted and normalized.
Nothing raises: whatever cannot become an event becomes a `DeadLetter`.
"""

from __future__ import annotations

import ast
import hashlib
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from pydantic import ValidationError

from streams.framing import read_lines, rfc3339_to_ms
from streams.identity import PodMeta
from streams.logformat import compile_log_format, find_event_start, object_end, prefix_time_reader
from streams.privacy import pseudonymize, redact_info, scrub_secret_keys, scrub_text
from streams.schema import (
    ENVELOPE_ADAPTER,
    EVENT_NAMES,
    SCHEMA_VERSION,
    DeadLetter,
    DeadLetterReason,
    PioneerEnvelope,
    PioneerEvent,
)
from streams.settings import ParserSettings

ParseResult = PioneerEvent | DeadLetter | None

DEAD_LETTER_LINE_BYTES = 4096  # how much of a bad line a dead letter keeps
REPR_MAX_BYTES = 1024 * 1024  # literal_eval is slow and memory-hungry: only for reasonably small reprs

_NO_POD = PodMeta()


class _Rejected(Exception):
    """Why a line cannot become an event: raised inside the parser, turned into a dead letter."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _decode_json(message: bytes) -> Any:
    try:
        return orjson.loads(message)
    except orjson.JSONDecodeError as exc:
        try:
            message.decode()
        except UnicodeDecodeError as utf8:
            raise _Rejected(DeadLetterReason.INVALID_UTF8, f"invalid UTF-8 at byte {utf8.start}") from None
        raise _Rejected(DeadLetterReason.INVALID_JSON, str(exc)) from None


def _decode_repr(message: bytes) -> Any:
    """A `command_line_exporter` line: the event's Python repr. Never `eval`."""
    if len(message) > REPR_MAX_BYTES:
        raise _Rejected(DeadLetterReason.LINE_TOO_LONG, f"dict repr longer than {REPR_MAX_BYTES} bytes")
    try:
        text = message.decode()
    except UnicodeDecodeError as exc:
        raise _Rejected(DeadLetterReason.INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}") from None
    try:
        with warnings.catch_warnings():  # e.g. "invalid escape sequence": the text is data, not our code
            warnings.simplefilter("ignore")
            value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise _Rejected(
            DeadLetterReason.INVALID_REPR, f"not a Python literal ({type(exc).__name__})"
        ) from None
    try:  # keep only what JSON can say: tuples become lists; sets, bytes, complex are refused
        return orjson.loads(orjson.dumps(value))
    except orjson.JSONEncodeError as exc:
        raise _Rejected(DeadLetterReason.SCHEMA_VIOLATION, f"not JSON-compatible: {exc}") from None


def _decode_message(message: bytes) -> Any:
    """An event object as pioneer's exporters write it: JSON, or `command_line_exporter`'s dict repr."""
    return _decode_repr(message) if message.startswith(b"{'") else _decode_json(message)


def locate_event(line: str) -> tuple[int, int, dict[str, Any]] | None:
    """The first event object of a line, wherever the log format put it: where it starts and ends, and
    its value decoded as the parser decodes it; None when there is none that decodes (truncated, say).

    For the collector's edge redaction, which does not know the log format: an event it rewrites must
    parse exactly as the original line would.
    """
    starts = [start for start in (line.find('{"eventDetail"'), line.find("{'eventDetail'")) if start >= 0]
    if not starts:
        return None
    start = min(starts)
    try:  # the message ends the line in most log formats: no scan for the object's end
        end, value = len(line), _decode_message(line[start:].encode("utf-8", "surrogatepass"))
    except _Rejected:
        end = object_end(line, start)
        try:
            value = _decode_message(line[start:end].encode("utf-8", "surrogatepass"))
        except _Rejected:
            return None
    return (start, end, value) if isinstance(value, dict) else None


def _describe(exc: ValidationError) -> str:
    """Where and what, without the offending values (they may be secrets)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    text = f"{'.'.join(str(part) for part in first['loc']) or 'event'}: {first['msg']}"
    return text + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")


@lru_cache(maxsize=4096)
def _source_digest(source_id: str) -> str:
    return hashlib.blake2b(source_id.encode(), digest_size=8).hexdigest()


def event_id(source_id: str, offset: int) -> str:
    """Deterministic from the source position, so a replayed line gets the id it had before: 16 hex
    digits of the source's hash (computed once per source), then 16 of the offset."""
    return f"{_source_digest(source_id)}{offset:016x}"


class LineParser:
    """Parses pod log lines into `PioneerEvent`s; one instance per settings, safe to reuse across sources."""

    def __init__(self, settings: ParserSettings | None = None) -> None:
        self.settings = settings or ParserSettings()
        pattern = compile_log_format(self.settings.effective_log_format())
        self._prefix = pattern if "message" in pattern.groupindex else None
        self._prefix_time_ms = prefix_time_reader(pattern)
        self._policy = self.settings.privacy_policy()
        self._max_line_bytes = self.settings.max_line_bytes
        key = self.settings.pseudonymize_key
        self._key = key.get_secret_value().encode() if key is not None else None
        self._identity = lru_cache(maxsize=4096)(self._pseudonymize)

    def parse(
        self,
        line: bytes | str,
        source_id: str,
        offset: int,
        pod: PodMeta = _NO_POD,
        runtime_time: str | None = None,
    ) -> ParseResult:
        """Parse one logical line found at `offset` in `source_id`; `runtime_time` is the CRI/docker time.

        Returns None for lines that are not events.
        """
        if isinstance(line, str):
            if "eventDetail" not in line:
                return None
            line = line.encode("utf-8", "surrogatepass")
        elif b"eventDetail" not in line:
            return None
        try:
            return self._parse_event_line(line, source_id, offset, pod, runtime_time)
        except _Rejected as rejected:
            return self._dead_letter(line, rejected, source_id, offset, pod)
        except Exception as exc:  # a bug must cost one line, not the stream
            bug = _Rejected(DeadLetterReason.PARSER_ERROR, f"parser error: {type(exc).__name__}")
            return self._dead_letter(line, bug, source_id, offset, pod)

    def parse_stream(self, binary: BinaryIO, source_id: str, pod: PodMeta = _NO_POD) -> Iterator[ParseResult]:
        """One result per logical line of a whole stream (None for skipped lines), framing auto-detected."""
        parse = self.parse
        for content, offset, _stream, time in read_lines(binary, self._max_line_bytes):
            yield parse(content, source_id, offset, pod, time)

    def parse_file(self, path: Path, pod: PodMeta | None = None) -> Iterator[ParseResult]:
        """`parse_stream` over a file; pod metadata from its name unless given."""
        with path.open("rb") as binary:
            yield from self.parse_stream(binary, str(path.absolute()), pod or PodMeta.from_log_path(path))

    def _parse_event_line(
        self, line: bytes, source_id: str, offset: int, pod: PodMeta, runtime_time: str | None
    ) -> ParseResult:
        if len(line) > self._max_line_bytes:
            raise _Rejected(DeadLetterReason.LINE_TOO_LONG, f"longer than {self._max_line_bytes} bytes")
        match = self._prefix.match(line) if self._prefix is not None else None
        if match is not None and line.startswith(b"{", match.start("message")):
            start, end = match.span("message")
            log_time_ms = self._prefix_time_ms(match)
        else:
            start, end = find_event_start(line), len(line)
            if start < 0:  # mentions eventDetail, but carries no event
                return None
            log_time_ms = None
        if log_time_ms is None and runtime_time is not None:
            log_time_ms = rfc3339_to_ms(runtime_time)

        message = line[start:end]
        raw = _decode_message(message)
        try:
            event = ENVELOPE_ADAPTER.validate_python(raw)
        except ValidationError as exc:
            raise _Rejected(DeadLetterReason.SCHEMA_VIOLATION, _describe(exc)) from None
        return self._normalize(event, log_time_ms, source_id, offset, pod)

    def _normalize(
        self, event: PioneerEnvelope, log_time_ms: int | None, source_id: str, offset: int, pod: PodMeta
    ) -> PioneerEvent:
        """The record: facts the aggregates need pulled out of the validated event, content redacted."""
        detail = event["eventDetail"]
        state = event.get("notebookState") or {}
        name = detail["eventName"]
        info = detail.get("eventInfo")
        cell_ids: list[str] = []
        cell_indices: list[int] = []
        success = error_name = None
        if name in EVENT_NAMES and isinstance(info, dict):  # validated: the shapes are known
            cells = info.get("cells")
            if cells is not None:
                cell_ids = [cell["id"] for cell in cells if "id" in cell]
                cell_indices = [cell["index"] for cell in cells]
            elif name == "CellEditEvent":
                cell_indices = [info["index"]]
            if name == "CellExecuteEvent":
                success = info["success"]
                kernel_error = info.get("kernelError")
                error_name = kernel_error["errorName"] if kernel_error else None

        info = redact_info(name, info, self._policy)
        notebook_content = None
        if self._policy.capture_content:  # kept content is the only place secret keys may still hide
            info = scrub_secret_keys(info)
            notebook_content = scrub_secret_keys(state.get("notebookContent"))
        user, pod_name = (pod.user, pod.pod) if self._key is None else self._identity(pod.user, pod.pod)
        return {
            "schema_version": SCHEMA_VERSION,
            "event_id": event_id(source_id, offset),
            "event_name": name,
            "event_time_ms": detail["eventTime"],
            "log_time_ms": log_time_ms,
            "session_id": state.get("sessionID"),
            "notebook_path": state.get("notebookPath"),
            "cell_ids": cell_ids,
            "cell_indices": cell_indices,
            "success": success,
            "error_name": error_name,
            "user": user,
            "pod": pod_name,
            "namespace": pod.namespace,
            "container": pod.container,
            "source": {"id": source_id, "offset": offset},
            "info": info,
            "notebook_content": notebook_content,
        }

    def _pseudonymize(self, user: str | None, pod: str | None) -> tuple[str | None, str | None]:
        """The user and pod names as written: pseudonyms when a key is set (pod names contain the user)."""
        if self._key is None:
            return user, pod
        return (
            pseudonymize(user, self._key) if user else None,
            pseudonymize(pod, self._key, prefix="p-") if pod else None,
        )

    def _dead_letter(
        self, line: bytes, rejected: _Rejected, source_id: str, offset: int, pod: PodMeta
    ) -> DeadLetter:
        _, pod_name = self._identity(pod.user, pod.pod)
        return DeadLetter(
            reason=rejected.reason,
            detail=rejected.detail,
            source={"id": source_id, "offset": offset},
            line=scrub_text(line[:DEAD_LETTER_LINE_BYTES].decode("utf-8", "replace")),
            line_bytes=len(line),
            pod=pod_name,
            namespace=pod.namespace,
            container=pod.container,
        )
