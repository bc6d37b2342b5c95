"""Event schema: what jupyterlab-pioneer logs, and the records this project writes to Kafka.

Pydantic is the source of truth for validation and for the published JSON Schemas, but no model tree is
built on the hot path: the raw envelope and the event record are TypedDicts (plain dicts), a dead letter
is a dataclass, all handled through `TypeAdapter`s. The raw types tolerate older and
newer jupyterlab-pioneer versions (missing cell `type`/`id`, unknown keys) and double as the first privacy
filter: validated events keep only the keys named here, and no secret-looking key outside content.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, TypeGuard

from pydantic import AfterValidator, ConfigDict, Discriminator, Field, Tag, TypeAdapter, with_config
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from streams.privacy import scrub_secret_keys

SCHEMA_VERSION = "1"
SCHEMA_DIR = Path(__file__).resolve().parents[1] / "docs" / "schema"

# Strict: JSON types must match exactly (no "123" -> 123). Unknown keys are accepted but not kept: what a
# newer version adds reaches the records only once this schema names it (it may be content or secrets).
_RAW = ConfigDict(extra="ignore", strict=True)

# A value whose keys the schema does not know: validated output never holds secret-looking keys there.
OpenJson = Annotated[Any, AfterValidator(scrub_secret_keys)]
OpenObject = Annotated[dict[str, Any], AfterValidator(scrub_secret_keys)]


@with_config(_RAW)
class CellRef(TypedDict):
    """A cell as pioneer reports it. `id` is missing for removed cells (and, in reality, sometimes others);
    `type` is missing before 1.5; `metadata` appears in 1.7.3 (null unless `logCellMetadata`)."""

    id: NotRequired[str]
    index: int
    type: NotRequired[str]
    metadata: NotRequired[OpenObject | None]


@with_config(_RAW)
class CellsInfo(TypedDict):
    cells: list[CellRef]


@with_config(_RAW)
class ClipboardInfo(TypedDict):
    cells: list[CellRef]
    selection: str


@with_config(_RAW)
class KernelError(TypedDict):
    errorName: str
    errorValue: NotRequired[str]
    traceback: NotRequired[list[str]]


@with_config(_RAW)
class CellExecuteInfo(TypedDict):
    cells: list[CellRef]
    success: bool
    kernelError: NotRequired[KernelError | None]


@with_config(_RAW)
class CellEditDocInfo(TypedDict):
    """Whole cell text, one string per line; sent when the active cell changes."""

    index: int
    doc: list[str]
    type: NotRequired[str]
    metadata: NotRequired[OpenObject | None]


@with_config(_RAW)
class CellEditChangesInfo(TypedDict):
    """One keystroke as a CodeMirror ChangeSet (JSON)."""

    index: int
    # content, not scrubbed here: the parser drops it (content capture off), or scrubs it with the rest of
    # the content it keeps; scrubbing every keystroke's ChangeSet first cost a tenth of the parse
    changes: Any
    type: NotRequired[str]
    metadata: NotRequired[OpenObject | None]


@with_config(_RAW)
class NotebookOpenInfo(TypedDict):
    """The Jupyter server's whole environment, secrets included: never stored unredacted."""

    environ: Annotated[dict[str, str], AfterValidator(scrub_secret_keys)]


def _cell_edit_variant(info: Any) -> str:
    return "doc" if isinstance(info, dict) and "doc" in info else "changes"


CellEditInfo = Annotated[
    Annotated[CellEditDocInfo, Tag("doc")] | Annotated[CellEditChangesInfo, Tag("changes")],
    Discriminator(_cell_edit_variant),
]


@with_config(_RAW)
class ActiveCellChangeEvent(TypedDict):
    eventName: Literal["ActiveCellChangeEvent"]
    eventTime: int
    eventInfo: CellsInfo


@with_config(_RAW)
class CellAddEvent(TypedDict):
    eventName: Literal["CellAddEvent"]
    eventTime: int
    eventInfo: CellsInfo


@with_config(_RAW)
class CellEditEvent(TypedDict):
    eventName: Literal["CellEditEvent"]
    eventTime: int
    eventInfo: CellEditInfo


@with_config(_RAW)
class CellExecuteEvent(TypedDict):
    eventName: Literal["CellExecuteEvent"]
    eventTime: int
    eventInfo: CellExecuteInfo


@with_config(_RAW)
class CellRemoveEvent(TypedDict):
    eventName: Literal["CellRemoveEvent"]
    eventTime: int
    eventInfo: CellsInfo


@with_config(_RAW)
class ClipboardCopyEvent(TypedDict):
    eventName: Literal["ClipboardCopyEvent"]
    eventTime: int
    eventInfo: ClipboardInfo


@with_config(_RAW)
class ClipboardCutEvent(TypedDict):
    eventName: Literal["ClipboardCutEvent"]
    eventTime: int
    eventInfo: ClipboardInfo


@with_config(_RAW)
class ClipboardPasteEvent(TypedDict):
    eventName: Literal["ClipboardPasteEvent"]
    eventTime: int
    eventInfo: ClipboardInfo


@with_config(_RAW)
class NotebookOpenEvent(TypedDict):
    eventName: Literal["NotebookOpenEvent"]
    eventTime: int
    eventInfo: NotebookOpenInfo


@with_config(_RAW)
class NotebookSaveEvent(TypedDict):
    eventName: Literal["NotebookSaveEvent"]
    eventTime: int
    eventInfo: NotRequired[OpenObject | None]


@with_config(_RAW)
class NotebookHiddenEvent(TypedDict):
    eventName: Literal["NotebookHiddenEvent"]
    eventTime: int
    eventInfo: NotRequired[OpenObject | None]


@with_config(_RAW)
class NotebookScrollEvent(TypedDict):
    eventName: Literal["NotebookScrollEvent"]
    eventTime: int
    eventInfo: CellsInfo


@with_config(_RAW)
class NotebookVisibleEvent(TypedDict):
    eventName: Literal["NotebookVisibleEvent"]
    eventTime: int
    eventInfo: CellsInfo


_KNOWN_DETAILS: tuple[type, ...] = (
    ActiveCellChangeEvent,
    CellAddEvent,
    CellEditEvent,
    CellExecuteEvent,
    CellRemoveEvent,
    ClipboardCopyEvent,
    ClipboardCutEvent,
    ClipboardPasteEvent,
    NotebookOpenEvent,
    NotebookSaveEvent,
    NotebookHiddenEvent,
    NotebookScrollEvent,
    NotebookVisibleEvent,
)
EVENT_NAMES: frozenset[str] = frozenset(detail.__name__ for detail in _KNOWN_DETAILS)


@with_config(_RAW)
class UnknownEvent(TypedDict):
    """Any other event name (custom producers exist): passed through with its raw info."""

    eventName: Annotated[str, Field(json_schema_extra={"not": {"enum": sorted(EVENT_NAMES)}})]
    eventTime: int
    eventInfo: NotRequired[OpenJson]


def _event_name(detail: Any) -> str:
    name = detail.get("eventName") if isinstance(detail, dict) else None
    return name if name in EVENT_NAMES else "unknown"


EventDetail = Annotated[
    Annotated[ActiveCellChangeEvent, Tag("ActiveCellChangeEvent")]
    | Annotated[CellAddEvent, Tag("CellAddEvent")]
    | Annotated[CellEditEvent, Tag("CellEditEvent")]
    | Annotated[CellExecuteEvent, Tag("CellExecuteEvent")]
    | Annotated[CellRemoveEvent, Tag("CellRemoveEvent")]
    | Annotated[ClipboardCopyEvent, Tag("ClipboardCopyEvent")]
    | Annotated[ClipboardCutEvent, Tag("ClipboardCutEvent")]
    | Annotated[ClipboardPasteEvent, Tag("ClipboardPasteEvent")]
    | Annotated[NotebookOpenEvent, Tag("NotebookOpenEvent")]
    | Annotated[NotebookSaveEvent, Tag("NotebookSaveEvent")]
    | Annotated[NotebookHiddenEvent, Tag("NotebookHiddenEvent")]
    | Annotated[NotebookScrollEvent, Tag("NotebookScrollEvent")]
    | Annotated[NotebookVisibleEvent, Tag("NotebookVisibleEvent")]
    | Annotated[UnknownEvent, Tag("unknown")],
    Discriminator(_event_name),
]


@with_config(_RAW)
class NotebookState(TypedDict):
    """Fields whose value is undefined in the browser are absent (no session before a kernel exists)."""

    sessionID: NotRequired[str | None]
    notebookPath: NotRequired[str | None]
    notebookContent: NotRequired[dict[str, Any] | None]  # content: scrubbed only if kept (it can be MBs)


@with_config(_RAW)
class PioneerEnvelope(TypedDict):
    """One event exactly as jupyterlab-pioneer hands it to its exporters."""

    eventDetail: EventDetail
    notebookState: NotRequired[NotebookState]


ENVELOPE_ADAPTER: TypeAdapter[PioneerEnvelope] = TypeAdapter(PioneerEnvelope)


class SourcePosition(TypedDict):
    """Where a line came from: replaying the same source yields the same positions, hence the same ids."""

    id: Annotated[str, Field(description="The source: a file path, or the collector's id for a stream.")]
    offset: Annotated[int, Field(description="Byte offset of the line's first chunk in the source.")]


# An event record is a plain dict (a TypedDict), not a BaseModel or a dataclass: the parser builds one per
# event, and a dict literal costs a third of a validated model and two thirds of a dataclass, and orjson
# serializes it fastest. Pydantic still documents and validates it through the TypeAdapter below. A dead
# letter, rare, is a dataclass; its published schema requires every field, defaults included, since every
# field is always written.
_RECORD = ConfigDict(json_schema_serialization_defaults_required=True)


class PioneerEvent(TypedDict):
    """The normalized, privacy-redacted record written to the events topic."""

    schema_version: Literal["1"]
    event_id: Annotated[
        str,
        Field(
            description="32 hex digits: a hash of the source id, then the source offset. "
            "Equal for replays of a line."
        ),
    ]
    event_name: str
    event_time_ms: Annotated[
        int, Field(description="eventTime: epoch ms from the browser's clock (may be skewed).")
    ]
    log_time_ms: Annotated[
        int | None,
        Field(description="Epoch ms from the log line's own time fields, else the container runtime's."),
    ]
    session_id: str | None
    notebook_path: str | None
    cell_ids: Annotated[
        list[str], Field(description="Ids of the cells the event names (removed cells have none).")
    ]
    cell_indices: list[int]
    success: Annotated[bool | None, Field(description="CellExecuteEvent only.")]
    error_name: Annotated[
        str | None, Field(description="CellExecuteEvent only: the exception name of a failure.")
    ]
    user: Annotated[str | None, Field(description="Username, or its keyed pseudonym `u-<hex>`.")]
    pod: Annotated[str | None, Field(description="Pod name, or its keyed pseudonym `p-<hex>`.")]
    namespace: str | None
    container: str | None
    source: SourcePosition
    info: Annotated[
        dict[str, Any] | None,
        Field(description="eventInfo after redaction; its shapes: jupyterlab-pioneer-envelope.schema.json."),
    ]
    notebook_content: Annotated[
        dict[str, Any] | None,
        Field(description="notebookState.notebookContent, only with content capture on."),
    ]


def is_event(record: object) -> TypeGuard[PioneerEvent]:
    """Whether a parse result is an event (isinstance cannot test a TypedDict; a dead letter is not a dict)."""
    return isinstance(record, dict)


class DeadLetterReason(StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_REPR = "invalid_repr"
    INVALID_UTF8 = "invalid_utf8"
    SCHEMA_VIOLATION = "schema_violation"
    LINE_TOO_LONG = "line_too_long"
    PARSER_ERROR = "parser_error"  # a bug in this parser; the line is kept for the fix


@with_config(_RECORD)
@dataclass(slots=True, kw_only=True)
class DeadLetter:
    """An event line that could not become a `PioneerEvent`, for the dead-letter topic."""

    schema_version: Literal["1"] = SCHEMA_VERSION
    reason: DeadLetterReason
    detail: Annotated[str, Field(description="Human-readable cause; never contains input values.")]
    source: SourcePosition
    line: Annotated[
        str, Field(description="The start of the original line, secrets scrubbed, invalid UTF-8 replaced.")
    ]
    line_bytes: Annotated[
        int, Field(description="Length of the original line (capped at max_line_bytes + 1).")
    ]
    pod: str | None
    namespace: str | None
    container: str | None


PIONEER_EVENT_ADAPTER: TypeAdapter[PioneerEvent] = TypeAdapter(PioneerEvent)
DEAD_LETTER_ADAPTER: TypeAdapter[DeadLetter] = TypeAdapter(DeadLetter)


def json_schemas() -> dict[str, dict[str, Any]]:
    """The published JSON Schemas by file name, generated from the models above: the records as written
    (serialization mode: every field present), the raw envelope as accepted."""
    schemas = {
        f"pioneer-event-v{SCHEMA_VERSION}.schema.json": PIONEER_EVENT_ADAPTER.json_schema(
            mode="serialization"
        ),
        f"pioneer-deadletter-v{SCHEMA_VERSION}.schema.json": DEAD_LETTER_ADAPTER.json_schema(
            mode="serialization"
        ),
        "jupyterlab-pioneer-envelope.schema.json": ENVELOPE_ADAPTER.json_schema(),
    }
    return {
        name: {"$schema": "https://json-schema.org/draft/2020-12/schema", **s} for name, s in schemas.items()
    }


def render_json_schema(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_json_schemas(directory: Path = SCHEMA_DIR) -> None:
    """Regenerate docs/schema/ (run `python -m streams.schema` after changing a model)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        (directory / name).write_text(render_json_schema(schema), encoding="utf-8")


if __name__ == "__main__":
    write_json_schemas(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR)
