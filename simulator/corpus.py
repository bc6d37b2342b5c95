"""Realistic content for simulated users: names, notebook paths, code, errors, environments, server chatter.

Shapes follow the real capture in `samples/alice.raw.log` (JupyterLab 4, jupyterlab-pioneer 1.7, Nebari).
Non-ASCII and emoji are deliberate: they exercise `\\u` escapes and UTF-16 positions in CodeMirror changes.
"""

from __future__ import annotations

import json
import random
from typing import NamedTuple
from urllib.parse import quote

USERNAMES = (
    "alice",
    "bob",
    "chen.wei@example.org",
    "dmitri",
    "elena.garcia@example.org",
    "fatima",
    "gustav",
    "hana.sato@example.org",
    "ines",
    "jörg.schäfer@example.org",
    "kwame",
    "lena",
    "maria.rossi@example.org",
    "nils",
    "olga",
    "ravi.kumar@example.org",
)

NOTEBOOK_PATHS = (
    "analysis.ipynb",
    "data-cleaning.ipynb",
    "scratch.ipynb",
    "analyse/übung 1.ipynb",
    "projects/churn/eda.ipynb",
    "projects/churn/model-training.ipynb",
    "reports/2026-Q4 Umsatz.ipynb",
    "kurs/Woche 3/Übungsblatt 3.ipynb",
    "研究/データ分析.ipynb",
    "shared/forecast v2.ipynb",
    "notebooks/experiments (copy).ipynb",
    "teaching/intro-to-pandas.ipynb",
    "climat/étude température.ipynb",
)

NEW_NOTEBOOK_DIRS = ("", "", "analyse", "projects/churn", "notebooks")

CODE = (
    "import numpy as np",
    "import pandas as pd",
    "import matplotlib.pyplot as plt",
    "import math, sys",
    "df = pd.read_csv('data/sales.csv')",
    "df.head()",
    "df.describe()",
    "df = df.dropna(subset=['region'])",
    "df['Umsatz'].sum()",
    "result = df.groupby('region')['revenue'].mean()",
    "x = np.linspace(0, 10, 200)",
    "plt.plot(x, np.sin(x))\nplt.title('Sinus')\nplt.show()",
    "total = sum(x)  # Summe\nprint(total, math.pi)",
    "for i in range(10):\n    print(i ** 2)",
    "def mean(values):\n    return sum(values) / len(values)",
    "squares = [i**2 for i in range(10)]",
    "raw = ['  alpha ', 'beta  ', ' gamma', 'δέλτα ']",
    "clean = [s.strip() for s in raw]\nprint(clean)",
    "greeting = 'Grüße aus Köln 👋🏽'\nprint(greeting)",
    "print('Übung abgeschlossen ✅ – 日本語テキスト')",
    "temperature = {'München': 3.5, 'Zürich': 2.0, 'Łódź': -1.2}",
    "model.fit(X_train, y_train)",
    "score = model.score(X_test, y_test)\nscore",
    "len(rows)",
    "rows = list(range(50))",
)

MARKDOWN = (
    "# Data cleaning",
    "## Ergebnisse",
    "### Étape 2 — nettoyage",
    "Notes: the *Umsatz* column is in €, not $.",
    "TODO: ask Chen about the outliers 🤔",
    "$E = mc^2$ and $\\sum_i x_i$",
)


class KernelError(NamedTuple):
    """A snippet that fails, with what IPython reports for it."""

    code: str
    name: str
    value: str


ERRORS = (
    KernelError("undefined_name + 1", "NameError", "name 'undefined_name' is not defined"),
    KernelError("print(resutl)", "NameError", "name 'resutl' is not defined"),
    KernelError("1/0", "ZeroDivisionError", "division by zero"),
    KernelError("ratio = hits / misses", "ZeroDivisionError", "division by zero"),
    KernelError("prices['Umsatz']", "KeyError", "'Umsatz'"),
    KernelError("config['api_url']", "KeyError", "'api_url'"),
    KernelError("int('keine Zahl')", "ValueError", "invalid literal for int() with base 10: 'keine Zahl'"),
    KernelError("float('3,14')", "ValueError", "could not convert string to float: '3,14'"),
    KernelError("'3' + 4", "TypeError", 'can only concatenate str (not "int") to str'),
    KernelError("len(42)", "TypeError", "object of type 'int' has no len()"),
    KernelError("rows[99]", "IndexError", "list index out of range"),
    KernelError("df.colums", "AttributeError", "'DataFrame' object has no attribute 'colums'"),
    KernelError("None.strip()", "AttributeError", "'NoneType' object has no attribute 'strip'"),
    KernelError("import seaborn as sns", "ModuleNotFoundError", "No module named 'seaborn'"),
    KernelError(
        "from sklearn.ensemble import RandomForestClassifier",
        "ModuleNotFoundError",
        "No module named 'sklearn'",
    ),
)

_RED, _GREEN, _CYAN, _RESET = "\x1b[31m", "\x1b[32m", "\x1b[36m", "\x1b[39m"


def ipython_traceback(error: KernelError, execution_count: int) -> list[str]:
    """IPython's colored traceback for a one-line cell, as the kernel sends it (see the real capture)."""
    return [
        f"{_RED}{'-' * 75}{_RESET}",
        f"{_RED}{error.name}{_RESET}{' ' * (42 - len(error.name))}Traceback (most recent call last)",
        f"{_CYAN}Cell{_RESET}{_CYAN} {_RESET}{_GREEN}In[{execution_count}]{_RESET}{_GREEN}, line 1{_RESET}\n"
        f"{_GREEN}----> {_RESET}{_GREEN}1{_RESET} {error.code}\n",
        f"{_RED}{error.name}{_RESET}: {error.value}",
    ]


def csv_block(rng: random.Random) -> str:
    """A table pasted from a spreadsheet: big enough that the event line exceeds the runtime's 16 KiB chunk."""
    regions = ("Nord", "Süd", "Ost", "West")
    rows = [
        f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},{rng.choice(regions)},{rng.uniform(10, 9999):.2f}"
        for _ in range(rng.randint(700, 1200))
    ]
    return "datum,region,umsatz\n" + "\n".join(rows)


SECRET_VARIABLES = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "ARGO_TOKEN", "CONDA_STORE_TOKEN")


def environ(username: str, hostname: str, namespace: str, secrets: dict[str, str]) -> dict[str, str]:
    """The Jupyter server's environment as NotebookOpenEvent reports it, secrets included (Nebari's layout)."""
    escaped = quote(username, safe="@~")
    scopes = json.dumps([f"access:servers!server={username}/", f"access:servers!user={username}"])
    return {
        "PATH": "/opt/conda/envs/default/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/home/jovyan",
        "HOSTNAME": hostname,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "SHELL": "/bin/bash",
        "JUPYTER_CONFIG_DIR": "/etc/jupyter",
        "JUPYTERHUB_API_TOKEN": secrets["JUPYTERHUB_API_TOKEN"],
        "JPY_API_TOKEN": secrets["JPY_API_TOKEN"],
        "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{escaped}",
        "JUPYTERHUB_USER": username,
        "JUPYTERHUB_SERVER_NAME": "",
        "JUPYTERHUB_ADMIN_ACCESS": "1",
        "JUPYTERHUB_API_URL": "http://hub:8081/hub/api",
        "JUPYTERHUB_ACTIVITY_URL": f"http://hub:8081/hub/api/users/{escaped}/activity",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_HOST": "",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"/user/{escaped}/oauth_callback",
        "JUPYTERHUB_OAUTH_SCOPES": scopes,
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": scopes,
        "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES": "[]",
        "JUPYTERHUB_SERVICE_PREFIX": f"/user/{escaped}/",
        "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:8888/user/{escaped}/",
        "JUPYTERHUB_DEFAULT_URL": "/lab",
        "MEM_GUARANTEE": "4294967296",
        "MEM_LIMIT": "4294967296",
        "CPU_GUARANTEE": "1.0",
        "CPU_LIMIT": "2.0",
        "PREFERRED_USERNAME": username,
        "ARGO_BASE_HREF": "/argo",
        "ARGO_SERVER": "nebari.example.com:443",
        "ARGO_TOKEN": secrets["ARGO_TOKEN"],
        "CONDA_STORE_SERVICE": f"nebari-conda-store-server.{namespace}.svc:5000",
        "CONDA_STORE_SERVICE_NAMESPACE": "global",
        "CONDA_STORE_TOKEN": secrets["CONDA_STORE_TOKEN"],
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "KUBERNETES_PORT": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
    }


class ServerLog(NamedTuple):
    """One line of Jupyter Server's own logging: `[<level> <time> <logger>] <message>`."""

    level: str  # I, W, E, C
    logger: str
    message: str


def startup(username: str, slug: str) -> list[ServerLog]:
    """What Jupyter Server logs while the single-user pod starts (abridged from the real capture)."""
    escaped = quote(username, safe="@~")
    linked = ("jupyter_lsp", "jupyter_server_terminals", "jupyterlab", "jupyterlab_pioneer", "notebook_shim")
    return [
        *(ServerLog("I", "ServerApp", f"{name} | extension was successfully linked.") for name in linked),
        ServerLog("I", "ServerApp", "notebook_shim | extension was successfully loaded."),
        ServerLog(
            "I",
            "LabApp",
            "JupyterLab extension loaded from /opt/conda/envs/default/lib/python3.11/site-packages/jupyterlab",
        ),
        ServerLog(
            "I", "LabApp", "JupyterLab application directory is /opt/conda/envs/default/share/jupyter/lab"
        ),
        ServerLog("I", "ServerApp", "jupyterlab | extension was successfully loaded."),
        ServerLog("I", "ServerApp", "jupyterlab_pioneer | extension was successfully loaded."),
        ServerLog("I", "ServerApp", "Serving notebooks from local directory: /home/jovyan"),
        ServerLog("I", "ServerApp", "Jupyter Server 2.21.1 is running at:"),
        ServerLog("I", "ServerApp", f"http://jupyter-{slug}:8888/user/{escaped}/lab?token=..."),
        ServerLog(
            "I",
            "ServerApp",
            "Use Control-C to stop this server and shut down all kernels (twice to skip confirmation).",
        ),
        ServerLog("I", "JupyterHubSingleUser", "Updating Hub with activity every 300 seconds"),
    ]


KERNEL_TCP_WARNING = (
    "[IPKernelApp] WARNING | Kernel is running over TCP without encryption. All communication (including code and "
    "outputs) is sent in plain text and is susceptible to eavesdropping. Use IPC transport or launch with kernel "
    "manager-provisioned CurveZMQ keys to enable transport encryption."
)

PING_TIMEOUT_WARNING = ServerLog(
    "W",
    "ServerApp",
    "The websocket_ping_timeout (90000) cannot be longer than the websocket_ping_interval (30000).\n"
    "    Setting websocket_ping_timeout=30000",
)


def server_chatter(rng: random.Random, user: str) -> ServerLog:
    """Background lines a busy single-user server writes between events; a few span several lines."""
    escaped = quote(user, safe="@~")
    ip = f"10.0.{rng.randint(0, 3)}.{rng.randint(2, 250)}"
    ms = f"{rng.uniform(0.3, 40):.2f}ms"
    roll = rng.random()
    if roll < 0.35:
        return ServerLog("I", "ServerApp", f"302 GET /user/{escaped}/ -> /user/{escaped}/lab? (@{ip}) {ms}")
    if roll < 0.6:
        return ServerLog(
            "W",
            "ServerApp",
            f"404 GET /user/{escaped}/api/kernels/{rng.getrandbits(32):08x} (@{ip}) {ms} referer=None",
        )
    if roll < 0.8:
        address = 0x7F0000000000 + rng.getrandbits(32)
        return ServerLog(
            "W",
            "ServerApp",
            f"Got events for closed stream <zmq.eventloop.zmqstream.ZMQStream object at {address:#x}>",
        )
    if roll < 0.95:
        return ServerLog("I", "LabApp", "Build is up to date")
    uri = f"/user/{escaped}/api/contents/missing.ipynb?content=1"
    return ServerLog(
        "E",
        "ServerApp",
        f"Uncaught exception GET {uri} ({ip})\n"
        f"    HTTPServerRequest(protocol='https', host='nebari.example.com', method='GET', uri='{uri}', "
        f"version='HTTP/1.1', remote_ip='{ip}')\n"
        "    Traceback (most recent call last):\n"
        '      File "/opt/conda/envs/default/lib/python3.11/site-packages/tornado/web.py", line 1790, in _execute\n'
        "        result = await result\n"
        "    tornado.web.HTTPError: HTTP 404: Not Found (No such file or directory: missing.ipynb)",
    )
