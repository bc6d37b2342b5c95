"""The worker's Faust producer: acks=all and idempotent, like the collector's.

Faust's aiokafka producer asks for idempotence only inside transactions (exactly_once); the worker runs
at_least_once, so without this a broker failing over between a send and its acknowledgement could make
aiokafka's retry write an events-topic record (or a changelog update) twice. Idempotence lets the broker
drop such a retry; acks=all (with min.insync.replicas 2 on a 3-broker cluster) means an acknowledged
record survives losing the partition's leader.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

ACKS_ALL = -1  # Faust's `producer_acks` is Kafka's numeric form; -1 is "all"


class IdempotentProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer with enable_idempotence and acks=all outside transactions too, and a
    hook run at the start of every flush: Faust flushes right before it commits offsets, so what the
    hook writes (the worker's cached table values) is on Kafka before the offsets that cover it."""

    before_flush: Callable[[], Awaitable[object]] | None = None

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}

    async def flush(self) -> None:
        if self.before_flush is not None:
            await self.before_flush()
        await super().flush()


class IdempotentTransport(faust_aiokafka.Transport):
    Producer = IdempotentProducer


def use_idempotent_producer(app: faust.App) -> None:
    """Make every producer `app` creates (its own and the threaded one) an `IdempotentProducer`."""
    app.transport = IdempotentTransport(app.conf.broker_consumer, app)
    app.producer_transport = IdempotentTransport(app.conf.broker_producer, app)


def before_every_flush(app: faust.App, hook: Callable[[], Awaitable[object]]) -> None:
    """Run `hook` first whenever `app`'s producer flushes (before each commit, at a rebalance, at stop)."""
    producer = app.producer
    if not isinstance(producer, IdempotentProducer):
        raise TypeError("use_idempotent_producer(app) first")
    producer.before_flush = hook
