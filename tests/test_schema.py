"""The schema: committed JSON Schemas match the models; raw events of every version validate."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from streams.parser import LineParser
from streams.schema import (
    ENVELOPE_ADAPTER,
    EVENT_NAMES,
    PIONEER_EVENT_ADAPTER,
    SCHEMA_DIR,
    is_event,
    json_schemas,
    render_json_schema,
)

CELL = {"id": "c1", "index": 2, "type": "code", "metadata": None}


def envelope(name: str, info: Any) -> dict[str, Any]:
    return {
        "eventDetail": {"eventName": name, "eventTime": 1795716925572, "eventInfo": info},
        "notebookState": {"sessionID": "s", "notebookPath": "a.ipynb", "notebookContent": None},
    }


@pytest.mark.parametrize("name", sorted(json_schemas()))
def test_committed_json_schemas_are_generated_from_the_models(name: str) -> None:
    committed = SCHEMA_DIR / name
    assert committed.is_file(), f"missing {committed}: run `python -m streams.schema`"
    assert committed.read_text(encoding="utf-8") == render_json_schema(json_schemas()[name]), (
        f"{name} is stale: run `python -m streams.schema`"
    )


def test_the_envelope_schema_names_all_13_events() -> None:
    schema = json_schemas()["jupyterlab-pioneer-envelope.schema.json"]
    assert len(EVENT_NAMES) == 13
    assert set(schema["$defs"]) >= EVENT_NAMES
    consts = {
        d["properties"]["eventName"].get("const")
        for d in schema["$defs"].values()
        if "eventName" in d.get("properties", {})
    }
    assert consts - {None} == EVENT_NAMES


VALID = [
    envelope("ActiveCellChangeEvent", {"cells": [CELL]}),
    envelope("CellAddEvent", {"cells": [CELL]}),
    envelope("CellEditEvent", {"index": 0, "doc": ["a = 1", ""], "type": "code", "metadata": None}),
    envelope("CellEditEvent", {"index": 0, "changes": [3, [0, "o"]], "type": "code"}),
    envelope("CellExecuteEvent", {"cells": [CELL], "success": True, "kernelError": None}),
    envelope(
        "CellExecuteEvent",
        {
            "cells": [CELL],
            "success": False,
            "kernelError": {"errorName": "E", "errorValue": "v", "traceback": ["t"]},
        },
    ),
    envelope("CellRemoveEvent", {"cells": [{"index": 9, "type": "code", "metadata": None}]}),
    envelope("ClipboardCopyEvent", {"cells": [CELL], "selection": "x"}),
    envelope("ClipboardCutEvent", {"cells": [CELL], "selection": ""}),
    envelope("ClipboardPasteEvent", {"cells": [CELL], "selection": "y"}),
    envelope("NotebookOpenEvent", {"environ": {"LANG": "C"}}),
    envelope("NotebookSaveEvent", None),
    envelope("NotebookHiddenEvent", None),
    envelope("NotebookScrollEvent", {"cells": [CELL, {**CELL, "index": 3}]}),
    envelope("NotebookVisibleEvent", {"cells": [CELL]}),
    # before 1.5: no cell type; removed cells without id (as in Nebari's docs)
    envelope("ActiveCellChangeEvent", {"cells": [{"id": "c1", "index": 5}]}),
    envelope("CellRemoveEvent", {"cells": [{"index": 7}]}),
    envelope("CellEditEvent", {"index": 6, "doc": [""]}),
    # newer: metadata on cells, keys this schema does not know yet
    envelope("CellAddEvent", {"cells": [{**CELL, "metadata": {"tags": ["t"]}, "future": 1}], "future": True}),
    # custom producers
    envelope("jupyterlab-pioneer-custom-event-demo", {"anything": ["goes"]}),
    {"eventDetail": {"eventName": "NotebookSaveEvent", "eventTime": 1}},
]


@pytest.mark.parametrize("raw", VALID, ids=lambda raw: raw["eventDetail"]["eventName"])
def test_valid_events_of_every_version(raw: dict[str, Any]) -> None:
    validated = ENVELOPE_ADAPTER.validate_python(raw)
    assert validated["eventDetail"]["eventName"] == raw["eventDetail"]["eventName"]
    event = LineParser().parse(json.dumps(raw), "s", 0)
    assert is_event(event)
    assert PIONEER_EVENT_ADAPTER.validate_json(orjson.dumps(event)) == event


def test_known_keys_only_and_open_values_scrubbed() -> None:
    raw = envelope(
        "CellAddEvent", {"cells": [{**CELL, "metadata": {"Token": "t", "tags": []}, "new": 1}], "x": 2}
    )
    info = ENVELOPE_ADAPTER.validate_python(raw)["eventDetail"]["eventInfo"]
    assert info == {"cells": [{**CELL, "metadata": {"tags": []}}]}
    unknown = ENVELOPE_ADAPTER.validate_python(envelope("Custom", {"a": {"password": "p", "b": 1}}))
    assert unknown["eventDetail"]["eventInfo"] == {"a": {"b": 1}}


@pytest.mark.parametrize(
    "raw",
    [
        envelope("CellAddEvent", {"cells": "c1"}),
        envelope("CellAddEvent", None),
        envelope("CellExecuteEvent", {"cells": [CELL]}),
        envelope("NotebookOpenEvent", {"environ": {"A": 1}}),
        {**envelope("CellAddEvent", {"cells": []}), "notebookState": {"sessionID": 5}},
        {"eventDetail": {"eventName": "CellAddEvent", "eventTime": True, "eventInfo": {"cells": []}}},
    ],
)
def test_invalid_events(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ENVELOPE_ADAPTER.validate_python(raw)


def test_normalized_fields() -> None:
    parser = LineParser()
    execute = parser.parse(json.dumps(VALID[5]), "s", 0)
    edit = parser.parse(json.dumps(VALID[3]), "s", 0)
    removed = parser.parse(json.dumps(VALID[6]), "s", 0)
    scroll = parser.parse(json.dumps(VALID[13]), "s", 0)
    assert is_event(execute)
    assert is_event(edit)
    assert is_event(removed)
    assert is_event(scroll)
    assert (execute["success"], execute["error_name"], execute["cell_ids"], execute["cell_indices"]) == (
        False,
        "E",
        ["c1"],
        [2],
    )
    assert (edit["success"], edit["cell_ids"], edit["cell_indices"], edit["info"]) == (
        None,
        [],
        [0],
        {"index": 0, "type": "code"},
    )
    assert (removed["cell_ids"], removed["cell_indices"]) == ([], [9])
    assert (scroll["cell_ids"], scroll["cell_indices"]) == (["c1", "c1"], [2, 3])
    assert execute["schema_version"] == "1"
    assert len(execute["event_id"]) == 32
