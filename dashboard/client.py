"""A small client of the worker's read API (docs/api.md): JSON over HTTP, nothing else."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    """The API answered with an error (400: bad parameters, 503: another worker did not answer)."""

    def __init__(self, url: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.message = message


class ApiUnreachable(ApiError):
    """Nothing answered at the address (refused, timed out, DNS)."""


@dataclass(frozen=True)
class Span:
    """A time range of event time, [from_ms, to_ms), at minute, hour or day resolution."""

    from_ms: int
    to_ms: int
    resolution: str  # "minute" | "hour" | "day"

    @property
    def minutes(self) -> float:
        return (self.to_ms - self.from_ms) / 60_000

    def params(self) -> dict[str, str]:
        return {"from_ms": str(self.from_ms), "to_ms": str(self.to_ms), "resolution": self.resolution}


class Api:
    def __init__(self, base_url: str, timeout_s: float = 10.0, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, endpoint: str, /, **params: str | int | None) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.base_url}/api/v1/{endpoint}" + (f"?{query}" if query else "")
        try:
            request = urllib.request.Request(url, headers=self._headers)
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            try:
                message = json.load(error).get("error") or error.reason
            except (ValueError, AttributeError):
                message = str(error.reason)
            raise ApiError(url, f"HTTP {error.code}: {message}", error.code) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ApiUnreachable(url, str(reason)) from None
        except ValueError as error:  # not JSON: something else listens there
            raise ApiError(url, f"the answer is not JSON ({error})") from None

    def overview(self, span: Span, namespace: str | None = None) -> dict[str, Any]:
        return self.get("overview", **span.params(), namespace=namespace)

    def timeseries(self, span: Span, namespace: str | None = None) -> dict[str, Any]:
        return self.get("timeseries", **span.params(), namespace=namespace)

    def top(
        self, span: Span, dimension: str, limit: int = 10, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        return self.get("top", **span.params(), dimension=dimension, limit=limit, namespace=namespace)["rows"]

    def namespaces(self, span: Span) -> list[dict[str, Any]]:
        return self.get("namespaces", **span.params())["namespaces"]

    def user(self, span: Span, user: str, namespace: str | None = None) -> dict[str, Any]:
        return self.get(f"users/{urllib.parse.quote(user, safe='')}", **span.params(), namespace=namespace)

    def notebook(self, span: Span, path: str, namespace: str | None = None) -> dict[str, Any]:
        return self.get("notebooks", **span.params(), path=path, namespace=namespace)

    def health(self) -> dict[str, Any]:
        return self.get("health")

    def changes(self, after: str, wait_s: float) -> dict[str, Any]:
        """{"token", "changed"}: answered once the aggregates differ from those `after` saw, or after
        `wait_s` (a long poll)."""
        return self.get("changes", after=after, wait_s=f"{wait_s:g}")
