"""Who the user is: annotation, label, pod name, kubelet file name, any file name."""

from __future__ import annotations

import pytest

from streams.identity import PodMeta, user_from_pod_name

HASH = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("pod", "user"),
    [
        ("jupyter-alice", "alice"),
        ("jupyter-alice--gpu-server", "alice"),
        ("jupyter-user-email-com---1a2b3c4d", "user-email-com---1a2b3c4d"),
        ("jupyter-user-email-com---1a2b3c4d--analysis", "user-email-com---1a2b3c4d"),
        ("jupyter-user-40email-2ecom", "user-40email-2ecom"),
        ("jupyter-a-b-c", "a-b-c"),
        ("hub-7d9f8c6b5-xk2lp", None),
        ("jupyter-", None),
    ],
)
def test_user_from_pod_name(pod: str, user: str | None) -> None:
    assert user_from_pod_name(pod) == user
    assert PodMeta(pod=pod).user == user


def test_annotation_then_label_then_pod_name() -> None:
    annotations = {"hub.jupyter.org/username": "user@email.com"}
    labels = {"hub.jupyter.org/username": "user-email-com---1a2b3c4d", "component": "singleuser-server"}
    pod = "jupyter-user-email-com---1a2b3c4d"
    assert PodMeta(pod=pod, labels=labels, annotations=annotations).user == "user@email.com"
    assert PodMeta(pod=pod, labels=labels).user == "user-email-com---1a2b3c4d"
    assert PodMeta(pod="jupyter-bob", labels={"app": "jupyterhub"}).user == "bob"
    assert PodMeta(pod="jupyter-bob", user="explicit").user == "explicit"
    assert PodMeta().user is None


def test_from_fluent_bit_envelope() -> None:
    kubernetes = {
        "pod_name": "jupyter-alice--gpu",
        "namespace_name": "dev",
        "container_name": "notebook",
        "labels": {"hub.jupyter.org/username": "alice", "hub.jupyter.org/servername": "gpu"},
        "annotations": {"hub.jupyter.org/username": "Alice@Example.org", "not-a-string": 3},
        "host": "node-1",
    }
    meta = PodMeta.from_fluent_bit(kubernetes)
    assert (meta.pod, meta.namespace, meta.container, meta.user) == (
        "jupyter-alice--gpu",
        "dev",
        "notebook",
        "Alice@Example.org",
    )
    assert meta.annotations == {"hub.jupyter.org/username": "Alice@Example.org"}
    assert PodMeta.from_fluent_bit({"pod_name": 5, "labels": "nope"}) == PodMeta()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            f"/var/log/containers/jupyter-alice_dev_notebook-{HASH}.log",
            ("jupyter-alice", "dev", "notebook", "alice"),
        ),
        (
            f"/var/log/containers/jupyter-user-email-com---1a2b3c4d--x_dev_notebook-{HASH}.log",
            ("jupyter-user-email-com---1a2b3c4d--x", "dev", "notebook", "user-email-com---1a2b3c4d"),
        ),
        (f"hub-7d9f8c6b5-xk2lp_dev_hub-{HASH}.log", ("hub-7d9f8c6b5-xk2lp", "dev", "hub", None)),
        (
            "/var/log/pods/dev_jupyter-alice_5f0c1e6a-9b2d-4c8e-7f3a-1b0c9d8e7f6a/notebook/0.log",
            ("jupyter-alice", "dev", "notebook", "alice"),
        ),
        ("alice.cri.log", (None, None, None, "alice")),
        ("/tmp/bob.log", (None, None, None, "bob")),
        ("carol", (None, None, None, "carol")),
        (
            f"/logs/jupyter-alice_dev_notebook-{HASH[:10]}.log",
            (None, None, None, "jupyter-alice_dev_notebook-0123456789"),
        ),
    ],
)
def test_from_log_path(path: str, expected: tuple[str | None, ...]) -> None:
    meta = PodMeta.from_log_path(path)
    assert (meta.pod, meta.namespace, meta.container, meta.user) == expected
