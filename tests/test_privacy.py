"""Privacy by default: secret keys, the environ allowlist, content capture, scrubbing, pseudonyms."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest

from streams.identity import PodMeta
from streams.parser import LineParser
from streams.privacy import (
    DEFAULT_ENVIRON_ALLOWLIST,
    SCANNED_WORDS,
    SECRET_KEY,
    SECRET_WORDS,
    PrivacyPolicy,
    is_secret_key,
    mentions_secret_word,
    pseudonymize,
    redact_event,
    scrub_text,
)
from streams.schema import is_event
from streams.settings import ParserSettings

SECRETS = {
    "JUPYTERHUB_API_TOKEN": "tok-aaaa1111",
    "AWS_SECRET_ACCESS_KEY": "sec-bbbb2222",
    "DB_PASSWORD": "pw-cccc3333",
    "oauth_cookie": "cookie-dddd4444",
    "ssh_private": "priv-eeee5555",
}


def open_event() -> dict[str, Any]:
    environ = {
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "MEM_LIMIT": "4G",
        "PATH": "/bin",
        "HOSTNAME": "jupyter-alice",
        **SECRETS,
    }
    return {
        "eventDetail": {"eventName": "NotebookOpenEvent", "eventTime": 1, "eventInfo": {"environ": environ}},
        "notebookState": {"sessionID": "s", "notebookPath": "p.ipynb", "notebookContent": None},
    }


def content_event() -> dict[str, Any]:
    return {
        "eventDetail": {
            "eventName": "CellExecuteEvent",
            "eventTime": 1,
            "eventInfo": {
                "cells": [{"id": "c", "index": 0, "metadata": {"tags": ["x"], "api_key": "meta-ffff6666"}}],
                "success": False,
                "kernelError": {"errorName": "ValueError", "errorValue": "bad 42", "traceback": ["tb"]},
                "selection": "print(1)",
                "deep": [{"nested": {"Authorization": "Bearer gggg7777"}}],
            },
        },
        "notebookState": {
            "sessionID": "s",
            "notebookPath": "p.ipynb",
            "notebookContent": {"cells": [], "token": "n"},
        },
    }


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("JUPYTERHUB_API_TOKEN", True),
        ("jpy_api_token", True),
        ("Password", True),
        ("passwd", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("x-auth", True),
        ("Cookie", True),
        ("PRIVATE_THING", True),
        ("GOOGLE_APPLICATION_CREDENTIALS", True),
        ("LANG", False),
        ("cells", False),
        ("kernelError", False),
        ("metadata", False),
    ],
)
def test_secret_keys(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_redact_event_keeps_only_allowlisted_environ_and_no_secret_anywhere() -> None:
    event = open_event()
    original = copy.deepcopy(event)
    for policy in [PrivacyPolicy(), PrivacyPolicy(capture_content=True)]:
        redacted = redact_event(event, policy)
        assert redacted["eventDetail"]["eventInfo"]["environ"] == {
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "MEM_LIMIT": "4G",
        }
        assert not any(value in json.dumps(redacted) for value in SECRETS.values())
    allow_all = PrivacyPolicy(environ_allowlist=frozenset(event["eventDetail"]["eventInfo"]["environ"]))
    environ = redact_event(event, allow_all)["eventDetail"]["eventInfo"]["environ"]
    assert "PATH" in environ
    assert not set(environ) & set(SECRETS)
    assert event == original  # a copy: the input is untouched


def test_redact_event_drops_content_unless_captured() -> None:
    off = redact_event(content_event(), PrivacyPolicy())
    info = off["eventDetail"]["eventInfo"]
    assert info["kernelError"] == {"errorName": "ValueError"}
    assert "selection" not in info
    assert "notebookContent" not in off["notebookState"]
    assert info["cells"][0]["metadata"] == {"tags": ["x"]}
    assert info["deep"] == [{"nested": {}}]

    on = redact_event(content_event(), PrivacyPolicy(capture_content=True))
    info = on["eventDetail"]["eventInfo"]
    assert info["kernelError"]["errorValue"] == "bad 42"
    assert info["selection"] == "print(1)"
    assert on["notebookState"]["notebookContent"] == {"cells": []}
    assert "ffff6666" not in json.dumps(on)
    assert "gggg7777" not in json.dumps(on)


@pytest.mark.parametrize(
    "odd", [{}, {"eventDetail": None}, {"eventDetail": {"eventInfo": [1, {"token": 2}]}}, {"x": 1}]
)
def test_redact_event_survives_odd_shapes(odd: dict[str, Any]) -> None:
    assert "token" not in json.dumps(redact_event(odd, PrivacyPolicy()))


@pytest.mark.parametrize("capture_content", [False, True])
def test_the_parser_applies_the_same_policy(capture_content: bool) -> None:
    parser = LineParser(ParserSettings(capture_content=capture_content))
    for value in [open_event(), content_event()]:
        event = parser.parse(json.dumps(value), "s", 0)
        assert is_event(event)
        written = orjson.dumps(event).decode()
        assert not any(secret in written for secret in [*SECRETS.values(), "ffff6666", "gggg7777"])
        expected = redact_event(value, PrivacyPolicy(capture_content=capture_content))
        assert event["notebook_content"] == expected["notebookState"].get("notebookContent")
    assert ("bad 42" in written) is capture_content
    assert event["error_name"] == "ValueError"


def test_unknown_events_keep_their_info_minus_secrets() -> None:
    value = {
        "eventDetail": {
            "eventName": "DemoEvent",
            "eventTime": 5,
            "eventInfo": {"x": [1, {"secret": "s", "y": 2}]},
        },
        "notebookState": {"sessionID": "s"},
    }
    event = LineParser().parse(json.dumps(value), "s", 0)
    assert is_event(event)
    assert event["info"] == {"x": [1, {"y": 2}]}


def test_scrub_text_masks_secret_pairs_in_json_and_reprs() -> None:
    line = '{"a": 1, "MY_TOKEN": "abc\\"def", "api-key": 12345, "auth": null, "keep": "visible"}'
    assert scrub_text(line) == (
        '{"a": 1, "MY_TOKEN": "[REDACTED]", "api-key": "[REDACTED]", "auth": "[REDACTED]", "keep": "visible"}'
    )
    assert scrub_text("{'Password': 'hunter2', 'x': 'y'}") == "{'Password': \"[REDACTED]\", 'x': 'y'}"
    assert scrub_text('{"DB_PASSWORD": "hunt') == '{"DB_PASSWORD": "[REDACTED]"'


def test_scrub_text_replaces_whole_environ_objects_even_unclosed() -> None:
    line = '{"environ": {"PATH": "/bin", "WEIRD": "a}b\\"c"}, "after": 1}'
    assert scrub_text(line) == '{"environ": "[REDACTED]", "after": 1}'
    assert (
        scrub_text('{"environ": {"PATH": "/bin", "DATABASE_URL": "postgres://u:p@h')
        == '{"environ": "[REDACTED]"'
    )
    assert scrub_text("{'environ': {'A': 'b'}, 'z': 1}") == "{'environ': \"[REDACTED]\", 'z': 1}"


def test_pseudonyms_are_stable_per_key_and_differ_across_keys() -> None:
    assert pseudonymize("alice", b"k1") == pseudonymize("alice", b"k1")
    assert pseudonymize("alice", b"k1") != pseudonymize("alice", b"k2")
    assert pseudonymize("alice", b"k1") != pseudonymize("bob", b"k1")
    assert pseudonymize("alice", b"k1").startswith("u-")
    assert len(pseudonymize("alice", b"k1")) == 14
    assert pseudonymize("jupyter-alice", b"k1", prefix="p-").startswith("p-")


def test_the_parser_pseudonymizes_users_and_pods() -> None:
    pod = PodMeta(pod="jupyter-alice", namespace="dev")
    line = json.dumps(open_event())
    plain = LineParser().parse(line, "s", 0, pod)
    keyed = LineParser(ParserSettings(pseudonymize_key="k1")).parse(line, "s", 0, pod)
    other = LineParser(ParserSettings(pseudonymize_key="k2")).parse(line, "s", 0, pod)
    assert is_event(plain)
    assert is_event(keyed)
    assert is_event(other)
    assert (plain["user"], plain["pod"]) == ("alice", "jupyter-alice")
    assert keyed["user"] == pseudonymize("alice", b"k1") != other["user"]
    assert keyed["pod"] == pseudonymize("jupyter-alice", b"k1", prefix="p-")
    assert "alice" not in orjson.dumps(keyed).decode()


def test_default_allowlist_names_no_user() -> None:
    assert not {"JUPYTERHUB_USER", "HOSTNAME", "PREFERRED_USERNAME"} & DEFAULT_ENVIRON_ALLOWLIST


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"JUPYTERHUB_API_TOKEN": "x"}', True),
        ("my_Password=1", True),
        ("api-Key", True),
        ("nothing here", False),
    ],
)
def test_mentions_secret_word_agrees_with_the_secret_key_pattern(text: str, expected: bool) -> None:
    assert mentions_secret_word(text) is expected
    assert (SECRET_KEY.search(text) is not None) is expected


def test_the_scanned_words_cover_every_secret_word() -> None:
    """The cheap scan may say yes more often than `SECRET_KEY`, never less."""
    for word in SECRET_WORDS:
        assert any(scanned.upper() in word for scanned in SCANNED_WORDS), word
        assert mentions_secret_word(f"x_{word.lower()}_y")
