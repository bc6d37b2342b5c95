"""The log simulator: determinism, realistic pioneer lines, kubelet framing, and a truth that matches its output.

The checks re-read the written files with their own small regexes and `json`, independent of the simulator.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from collector.lines import rfc3339_nano
from pioneer_telemetry.cli import app
from simulator.corpus import SECRET_VARIABLES
from simulator.output import MAX_CHUNK, FileSink, frame, kubernetes_of
from simulator.records import LogLine, Pod, safe_slug
from simulator.settings import DEFAULT_LOG_FORMAT, SimulatorSettings
from simulator.simulate import Simulation, _UTCFormatter, presence, run
from streams.framing import Framing

START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
EVENT_NAMES = {
    "ActiveCellChangeEvent",
    "CellAddEvent",
    "CellEditEvent",
    "CellExecuteEvent",
    "CellRemoveEvent",
    "ClipboardCopyEvent",
    "ClipboardCutEvent",
    "ClipboardPasteEvent",
    "NotebookHiddenEvent",
    "NotebookOpenEvent",
    "NotebookSaveEvent",
    "NotebookScrollEvent",
    "NotebookVisibleEvent",
}
ERROR_NAMES = {
    "NameError",
    "ZeroDivisionError",
    "KeyError",
    "ValueError",
    "TypeError",
    "IndexError",
    "AttributeError",
    "ModuleNotFoundError",
}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
CRI = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z) stderr (?P<tag>[PF]) (?P<content>.*)"
)
DEFAULT_EVENT_LINE = re.compile(
    r"(?P<date>\d{4}-\d\d-\d\d) (?P<minute>\d\d:\d\d):\d\d,\d{3} +INFO +20 jupyter_jupyterlab_pioneer_config: "
    r"(?P<message>\{.*\})"
)
SERVER_LINE = re.compile(r"\[[IWEC] \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \w+\] ")
POD_FILE = re.compile(r"jupyter-(?P<slug>[a-z0-9-]+)_dev_notebook-[0-9a-f]{64}\.log")


def simulate(directory: Path, **settings: Any) -> dict[str, Any]:
    """Run the simulator into `directory/logs` and return its truth."""
    defaults: dict[str, Any] = {"users": 3, "seed": 1, "start": START, "duration": 120}
    config = SimulatorSettings(**(defaults | settings))
    run(config, [FileSink(directory / "logs")], directory / "truth.json")
    return json.loads((directory / "truth.json").read_text(encoding="utf-8"))


def file_lines(path: Path) -> list[str]:
    """Lines split on "\\n" only, as the kubelet and tailers do (`str.splitlines` also splits on U+2028)."""
    return path.read_text(encoding="utf-8").removesuffix("\n").split("\n")


def cri_contents(path: Path) -> list[str]:
    """The lines a container wrote, from a CRI-framed file: partial (P) chunks joined to the final (F) one."""
    lines, partial = [], ""
    for raw in file_lines(path):
        match = CRI.fullmatch(raw)
        assert match, raw[:120]
        partial += match["content"]
        if match["tag"] == "F":
            lines.append(partial)
            partial = ""
    assert partial == "", "a partial line without its final chunk"
    return lines


def docker_contents(path: Path) -> list[str]:
    lines, partial = [], ""
    for raw in file_lines(path):
        record = json.loads(raw)
        assert set(record) == {"log", "stream", "time"}
        assert record["stream"] == "stderr"
        partial += record["log"]
        if partial.endswith("\n"):
            lines.append(partial[:-1])
            partial = ""
    assert partial == ""
    return lines


@pytest.fixture(scope="module")
def standard(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Five users for ten simulated minutes: the truth, and each pod's lines (user -> lines) read back."""
    directory = tmp_path_factory.mktemp("standard")
    truth = simulate(directory, users=5, seed=7, duration=600)
    users_by_file = {pod["log_file"]: user for user, pod in truth["pods"].items()}
    lines = {users_by_file[path.name]: cri_contents(path) for path in (directory / "logs").iterdir()}
    return truth, lines


def events_of(lines: list[str]) -> list[tuple[re.Match[str], dict[str, Any]]]:
    found = []
    for line in lines:
        match = DEFAULT_EVENT_LINE.fullmatch(line)
        if match:
            found.append((match, json.loads(match["message"])))
    return found


# -- determinism --------------------------------------------------------------------------------------------


def test_same_seed_and_start_give_identical_bytes(tmp_path: Path) -> None:
    first = simulate(tmp_path / "a")
    second = simulate(tmp_path / "b")
    other = simulate(tmp_path / "c", seed=2)

    def files(name: str) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in (tmp_path / name / "logs").iterdir()}

    assert files("a") == files("b")
    assert first == second
    assert (tmp_path / "a" / "truth.json").read_bytes() == (tmp_path / "b" / "truth.json").read_bytes()
    assert set(files("c")).isdisjoint(files("a")), "container ids come from the seed"
    assert sorted(files("c").values()) != sorted(files("a").values())
    assert other["by_event"] != first["by_event"]


# -- the events ---------------------------------------------------------------------------------------------


def test_event_lines_carry_the_pioneer_envelope(
    standard: tuple[dict[str, Any], dict[str, list[str]]],
) -> None:
    _, lines = standard
    events = [event for user_lines in lines.values() for event in events_of(user_lines)]
    assert events
    for match, event in events:
        assert match["message"].isascii(), "json.dumps escapes non-ASCII"
        assert json.dumps(event) == match["message"], "byte for byte what json.dumps writes"
        assert list(event) == ["eventDetail", "notebookState"]
        detail, state = event["eventDetail"], event["notebookState"]
        assert list(detail) == ["eventName", "eventTime", "eventInfo"]
        assert list(state) == ["sessionID", "notebookPath", "notebookContent"]
        assert UUID.fullmatch(state["sessionID"])
        assert state["notebookPath"].endswith(".ipynb")
        assert state["notebookContent"] is None
        assert isinstance(detail["eventTime"], int)
        check_event_info(detail["eventName"], detail["eventInfo"])


def check_event_info(name: str, info: Any) -> None:
    cell_keys = ["id", "index", "type", "metadata"]
    if name in {"NotebookSaveEvent", "NotebookHiddenEvent"}:
        assert info is None
    elif name == "NotebookOpenEvent":
        assert set(SECRET_VARIABLES) <= set(info["environ"])
    elif name in {"NotebookScrollEvent", "NotebookVisibleEvent"}:
        assert all(list(cell) == ["id", "index", "type"] for cell in info["cells"])
    elif name == "CellRemoveEvent":
        assert [list(cell) for cell in info["cells"]] == [["index", "type", "metadata"]]
    elif name == "CellEditEvent":
        assert list(info) in (["index", "changes", "type"], ["index", "doc", "type", "metadata"])
    else:
        assert [list(cell) for cell in info["cells"]] == [cell_keys]
        assert info["cells"][0]["type"] in {"code", "markdown"}
        if name == "CellExecuteEvent":
            assert list(info) == ["cells", "success", "kernelError"]
            assert (info["kernelError"] is None) == info["success"]
            if not info["success"]:
                assert info["kernelError"]["errorName"] in ERROR_NAMES
                assert info["kernelError"]["errorValue"]
                assert all(isinstance(line, str) for line in info["kernelError"]["traceback"])
        elif name.startswith("Clipboard"):
            assert list(info) == ["cells", "selection"]


def test_the_mix_is_keystroke_heavy_like_the_real_capture(
    standard: tuple[dict[str, Any], dict[str, list[str]]],
) -> None:
    truth, lines = standard
    by_event = truth["by_event"]
    assert set(by_event) == EVENT_NAMES
    assert 0.65 <= by_event["CellEditEvent"] / truth["total"] <= 0.88
    assert 0.03 <= truth["failures"] / truth["executions"] <= 0.2
    edits = [
        event["eventDetail"]["eventInfo"]
        for user_lines in lines.values()
        for _, event in events_of(user_lines)
        if event["eventDetail"]["eventName"] == "CellEditEvent"
    ]
    keystrokes = sum("changes" in info for info in edits)
    assert 0.6 <= keystrokes / len(edits) < 1, "mostly keystrokes, whole cells on active-cell changes"
    paths = {path for paths in truth["by_notebook"].values() for path in paths}
    assert any(not path.isascii() for path in paths)
    assert any("/" in path for path in paths)


def test_keystrokes_replay_into_the_cell_text(standard: tuple[dict[str, Any], dict[str, list[str]]]) -> None:
    """CodeMirror changes are consistent: retains match the cell length (UTF-16) the edits before produced."""
    _, lines = standard
    for user_lines in lines.values():
        length: dict[tuple[str, int], int] = {}
        for _, event in events_of(user_lines):
            info = event["eventDetail"]["eventInfo"]
            if event["eventDetail"]["eventName"] != "CellEditEvent":
                continue
            key = (event["notebookState"]["sessionID"], info["index"])
            if "doc" in info:
                length[key] = len("\n".join(info["doc"]).encode("utf-16-le")) // 2
                continue
            *retain, section = info["changes"]
            before = retain[0] if retain else 0
            if key in length:
                assert before + section[0] == length[key]
            length[key] = before + len("\n".join(section[1:]).encode("utf-16-le")) // 2


def test_jupyter_server_lines_are_interleaved(standard: tuple[dict[str, Any], dict[str, list[str]]]) -> None:
    truth, lines = standard
    everything = [line for user_lines in lines.values() for line in user_lines]
    server = [line for line in everything if SERVER_LINE.match(line)]
    assert truth["server_lines"] == len(everything) - truth["total"]
    assert 0.03 < truth["server_lines"] / truth["lines"] < 0.2
    assert any("Kernel started: " in line for line in server)
    assert any("Saving file at /" in line for line in server)
    assert any(line.startswith("    ") for line in everything), "continuation lines without a prefix"


# -- the truth ----------------------------------------------------------------------------------------------


def test_truth_equals_an_independent_recount(standard: tuple[dict[str, Any], dict[str, list[str]]]) -> None:
    truth, lines = standard
    by_event: Counter[str] = Counter()
    by_user: Counter[str] = Counter()
    by_session: Counter[str] = Counter()
    by_notebook: defaultdict[str, Counter[str]] = defaultdict(Counter)
    failures_by_error: Counter[str] = Counter()
    executions_by_user: defaultdict[str, Counter[str]] = defaultdict(Counter)
    windows: defaultdict[str, dict[str, Any]] = defaultdict(
        lambda: {"by_event": Counter(), "users": set(), "sessions": set(), "notebooks": set(), "failures": 0}
    )
    for user, user_lines in lines.items():
        for match, event in events_of(user_lines):
            name = event["eventDetail"]["eventName"]
            session, path = event["notebookState"]["sessionID"], event["notebookState"]["notebookPath"]
            by_event[name] += 1
            by_user[user] += 1
            by_session[session] += 1
            by_notebook[user][path] += 1
            window = windows[f"{match['date']}T{match['minute']}:00Z"]
            window["by_event"][name] += 1
            window["users"].add(user)
            window["sessions"].add(session)
            window["notebooks"].add((user, path))
            if name == "CellExecuteEvent":
                executions_by_user[user]["executions"] += 1
                if not event["eventDetail"]["eventInfo"]["success"]:
                    error = event["eventDetail"]["eventInfo"]["kernelError"]["errorName"]
                    failures_by_error[error] += 1
                    executions_by_user[user]["failures"] += 1
                    window["failures"] += 1

    assert truth["lines"] == sum(len(user_lines) for user_lines in lines.values())
    assert truth["total"] == by_event.total()
    assert truth["by_event"] == by_event
    assert truth["by_user"] == by_user
    assert truth["by_session"] == by_session
    assert truth["by_notebook"] == by_notebook
    assert truth["failures_by_error"] == failures_by_error
    assert truth["failures"] == failures_by_error.total()
    assert truth["executions"] == by_event["CellExecuteEvent"]
    assert {user: dict(c) for user, c in executions_by_user.items()} == {
        user: {key: n for key, n in counts.items() if n}
        for user, counts in truth["executions_by_user"].items()
    }
    assert set(truth["windows"]) == set(windows)
    for key, window in windows.items():
        expected = truth["windows"][key]
        assert expected["by_event"] == window["by_event"]
        assert expected["total"] == window["by_event"].total()
        assert expected["users"] == len(window["users"])
        assert expected["sessions"] == len(window["sessions"])
        assert expected["notebooks"] == len(window["notebooks"])
        assert expected["executions"] == window["by_event"]["CellExecuteEvent"]
        assert expected["failures"] == window["failures"]
    assert len(truth["windows"]) >= 10


def test_planted_secrets_are_in_the_logs_and_in_the_truth(
    standard: tuple[dict[str, Any], dict[str, list[str]]],
) -> None:
    truth, lines = standard
    secrets = set(truth["secret_values"])
    assert len(secrets) == len(SECRET_VARIABLES) * len(truth["pods"])
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in secrets)
    for user_lines in lines.values():
        for _, event in events_of(user_lines):
            if event["eventDetail"]["eventName"] == "NotebookOpenEvent":
                environ = event["eventDetail"]["eventInfo"]["environ"]
                assert {environ[variable] for variable in SECRET_VARIABLES} <= secrets
    text = "\n".join(line for user_lines in lines.values() for line in user_lines)
    assert all(value in text for value in secrets)


def test_event_limit_and_unpaced_default_duration(tmp_path: Path) -> None:
    truth = simulate(tmp_path, users=4, duration=None, events=500)
    assert truth["total"] == 500
    simulation = Simulation(SimulatorSettings(users=1, start=START))
    assert simulation.end_ms == simulation.start_ms + 600_000


# -- rendering and framing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("log_format", "pattern"),
    [
        (
            "%(asctime)s.%(msecs)03d %(message)s",
            r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,(?P<ms>\d{3})\.(?P=ms) (?P<message>\{.*\})",
        ),
        ("%(levelname)-8s %(name)s %(message)s", r"INFO     builtins (?P<message>\{.*\})"),
        (
            "%(created).3f %(process)d %(threadName)s %(funcName)s %(pathname)s:%(lineno)d | %(message)s",
            r"\d{10}\.\d{3} \d+ MainThread my_custom_exporter "
            r"/etc/jupyter/jupyter_jupyterlab_pioneer_config\.py:20 \| (?P<message>\{.*\})",
        ),
    ],
)
def test_custom_log_formats(tmp_path: Path, log_format: str, pattern: str) -> None:
    truth = simulate(tmp_path, users=2, duration=60, log_format=log_format)
    found = 0
    for path in (tmp_path / "logs").iterdir():
        for line in cri_contents(path):
            if SERVER_LINE.match(line) or not line.endswith("}}"):
                continue
            match = re.fullmatch(pattern, line)
            assert match, line[:160]
            assert json.loads(match["message"])["eventDetail"]["eventName"] in EVENT_NAMES
            found += 1
    assert found == truth["total"] > 0


def test_formatter_matches_the_stock_one() -> None:
    """The per-second date cache changes nothing: same text as logging.Formatter in a TZ=UTC process."""
    stock = logging.Formatter(DEFAULT_LOG_FORMAT)
    stock.converter = time.gmtime
    cached = _UTCFormatter(DEFAULT_LOG_FORMAT)
    record = logging.LogRecord("builtins", logging.INFO, "/x.py", 20, "m", (), None)
    for ms in (1795683605000, 1795683605999, 1795683606001, 1795683665432, 1795770000000):
        record.created, record.msecs = ms / 1000, float(ms % 1000)
        assert cached.format(record) == stock.format(record)


def test_framings_wrap_the_same_lines(tmp_path: Path) -> None:
    for framing in Framing:
        simulate(tmp_path / framing, users=2, duration=60, framing=framing)
    for path in (tmp_path / "cri" / "logs").iterdir():
        cri = cri_contents(path)
        docker = docker_contents(tmp_path / "docker" / "logs" / path.name)
        plain = file_lines(tmp_path / "plain" / "logs" / path.name)
        assert cri == docker == plain
        stamps = [raw.split(" ", 1)[0] for raw in file_lines(path)]
        parsed = [datetime.fromisoformat(stamp[:26].rstrip("Z")) for stamp in stamps]
        assert parsed == sorted(parsed), "the runtime's timestamps never go back"


def test_long_lines_are_split_like_the_runtime_does() -> None:
    line = "x" * (2 * MAX_CHUNK + 10)
    cri = frame(line, 1795683605123456789, Framing.CRI).splitlines()
    assert [raw.split(" ", 3)[2] for raw in cri] == ["P", "P", "F"]
    assert "".join(raw.split(" ", 3)[3] for raw in cri) == line
    docker = [json.loads(raw) for raw in frame(line, 1795683605123456789, Framing.DOCKER).splitlines()]
    assert [record["log"].endswith("\n") for record in docker] == [False, False, True]
    assert "".join(record["log"] for record in docker) == line + "\n"
    assert frame("", 1795683605000000000, Framing.CRI) == "2026-11-26T09:00:05Z stderr F \n"


def test_docker_framing_escapes_like_go() -> None:
    raw = frame('<a href="x">&ü', 1795683605100000000, Framing.DOCKER)
    log = '"\\u003ca href=\\"x\\"\\u003e\\u0026ü\\n"'
    assert raw == f'{{"log":{log},"stream":"stderr","time":"2026-11-26T09:00:05.1Z"}}\n'


def test_rfc3339_nano_drops_trailing_zeros() -> None:
    assert rfc3339_nano(1795716914265301922) == "2026-11-26T18:15:14.265301922Z"
    assert rfc3339_nano(1795716914272341780) == "2026-11-26T18:15:14.27234178Z"
    assert rfc3339_nano(1795716914000000000) == "2026-11-26T18:15:14Z"


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("alice", "alice"),
        ("user@email.com", "user-email-com---0925f997"),
        ("jupyter-Alex", "jupyter-alex---3a1c285c"),
        ("9z9", "x-9z9---224de202"),
        ("üser", "ser---73506260"),
        ("username--servername", "username-servername---d957f1de"),
    ],
)
def test_pod_slugs_follow_kubespawner(name: str, slug: str) -> None:
    assert safe_slug(name) == slug


def test_one_file_per_pod_named_like_the_kubelet(tmp_path: Path) -> None:
    truth = simulate(tmp_path, users=4, duration=30)
    names = sorted(path.name for path in (tmp_path / "logs").iterdir())
    assert names == sorted(pod["log_file"] for pod in truth["pods"].values())
    assert all(POD_FILE.fullmatch(name) for name in names)
    slugs = {name.removeprefix("jupyter-").split("_", 1)[0] for name in names}
    assert "alice" in slugs
    assert "chen-wei-example-org---" + safe_slug("chen.wei@example.org")[-8:] in slugs


def test_kubernetes_metadata_is_what_fluent_bits_filter_attaches() -> None:
    pod = Pod("chen.wei@example.org", "dev", "ab" * 32)
    assert kubernetes_of(pod) == {
        "pod_name": "jupyter-chen-wei-example-org---" + safe_slug("chen.wei@example.org")[-8:],
        "namespace_name": "dev",
        "container_name": "notebook",
        "labels": {
            "hub.jupyter.org/username": safe_slug("chen.wei@example.org"),
            "component": "singleuser-server",
            "app": "jupyterhub",
        },
        "annotations": {"hub.jupyter.org/username": "chen.wei@example.org"},
    }


# -- time -----------------------------------------------------------------------------------------------------


def test_browser_clock_is_skewed_but_close(standard: tuple[dict[str, Any], dict[str, list[str]]]) -> None:
    _, lines = standard
    medians = []
    for user_lines in lines.values():
        offsets, previous = [], 0
        for match, event in events_of(user_lines):
            logged = datetime.strptime(match[0][:23], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
            event_time = event["eventDetail"]["eventTime"]
            offsets.append(logged.timestamp() * 1000 - event_time)
            if event["eventDetail"]["eventName"] == "NotebookOpenEvent":
                assert event_time < previous, "logged after the first cell's event, though it happened first"
            previous = event_time
        # network latency, plus at most 300 ms of clock skew either way
        assert min(offsets) > -400
        assert max(offsets) < 400
        medians.append(sorted(offsets)[len(offsets) // 2])
    assert max(medians) - min(medians) > 50, "every browser has its own clock"


def test_paced_run_keeps_the_rate_and_rewrites_the_truth(tmp_path: Path) -> None:
    truth_path = tmp_path / "truth.json"
    seen: list[int] = []

    class Probe:
        """Reads the truth file while the run is going."""

        written = 0

        def write(self, line: LogLine, framed: str) -> None:
            self.written += 1
            if truth_path.exists():
                total = json.loads(truth_path.read_text(encoding="utf-8"))["lines"]
                assert total <= self.written, "the truth never runs ahead of the sinks"
                seen.append(total)

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

    settings = SimulatorSettings(users=2, start=START, rate=400, events=200, truth_interval=0.1)
    began = time.monotonic()
    result = run(settings, [Probe()], truth_path)
    assert 0.45 < time.monotonic() - began < 3
    assert result.total == 200
    assert any(0 < total < result.lines for total in seen), "rewritten during the run"


def test_office_hours_follow_the_working_day() -> None:
    noon_weekday = int(datetime(2026, 11, 26, 12, 30, tzinfo=UTC).timestamp() * 1000)
    night = int(datetime(2026, 11, 26, 3, 0, tzinfo=UTC).timestamp() * 1000)
    noon_sunday = int(datetime(2026, 11, 29, 12, 30, tzinfo=UTC).timestamp() * 1000)
    assert presence(night) < 0.05 < presence(noon_sunday) < presence(noon_weekday)

    settings = SimulatorSettings(users=2, seed=3, start=datetime(2026, 11, 26, tzinfo=UTC), duration=86_400)
    hours = Counter(
        datetime.fromtimestamp(line.ms / 1000, UTC).hour
        for line in Simulation(settings.model_copy(update={"office_hours": True})).lines()
        if line.event is not None
    )
    night_share = sum(n for hour, n in hours.items() if hour < 7 or hour >= 21) / hours.total()
    assert night_share < 0.1
    assert sum(n for hour, n in hours.items() if 9 <= hour < 17) / hours.total() > 0.6


# -- settings and CLI -----------------------------------------------------------------------------------------


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIONEER_SIMULATOR_USERS", "7")
    monkeypatch.setenv("PIONEER_SIMULATOR_FRAMING", "docker")
    settings = SimulatorSettings(seed=4)
    assert (settings.users, settings.framing, settings.seed) == (7, Framing.DOCKER, 4)
    assert SimulatorSettings(start="2026-11-26T09:00:00").start == START
    with pytest.raises(ValueError, match="message"):
        SimulatorSettings(log_format="%(asctime)s")


def test_cli_writes_pod_files_and_truth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIONEER_SIMULATOR_USERS", "9")  # the flag wins
    arguments = shlex.split("simulate --users 2 --seed 5 --start 2026-11-26T09:00:00Z --duration 60")
    files_and_truth = ["--out-dir", str(tmp_path / "logs"), "--truth", str(tmp_path / "t.json")]
    result = CliRunner().invoke(app, [*arguments, "--framing", "docker", *files_and_truth])
    assert result.exit_code == 0, result.output
    assert "lines/s" in result.stderr
    truth = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert len(truth["pods"]) == 2
    files = list((tmp_path / "logs").iterdir())
    assert len(files) == 2
    assert sum(len(docker_contents(path)) for path in files) == truth["lines"]

    to_stdout = CliRunner().invoke(app, [*arguments, "--framing", "plain", "--out-dir", "-"])
    assert to_stdout.exit_code == 0, to_stdout.output
    assert len(to_stdout.stdout.splitlines()) == truth["lines"]


def test_realtime_run_writes_each_line_when_its_time_comes() -> None:
    written: list[tuple[float, int]] = []

    class Clock:
        def write(self, line: LogLine, framed: str) -> None:
            written.append((time.time() * 1000, line.ms))

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

    start = datetime.now(UTC)
    run(
        SimulatorSettings(users=3, start=start, realtime=True, duration=8), [Clock()]
    )  # first lines come at ~6 s
    lags = [wall - simulated for wall, simulated in written]
    assert len(written) > 5
    assert min(lags) > -50  # never ahead of its time
    assert max(lags) < 500  # and not far behind it


def test_realtime_and_rate_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="choose one"):
        SimulatorSettings(realtime=True, rate=10)
