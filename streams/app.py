"""The worker's Faust app: the wiring of the pipeline (streams/worker.py), its read API (streams/api.py)
and metrics page into one `faust.App`. The API reads the pipeline through `local_state.LocalState` and
neither imports the other; this module imports both.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Set

import faust
from faust import stores
from faust.stores.rocksdb import Store as RocksDBStore
from faust.streams import current_event
from faust.tables import TableManager
from faust.types import TP, CollectionT, StoreT
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from pioneer_base.config import KafkaSettings
from streams.adaptive_take import take_adaptive
from streams.api import register_api
from streams.faust_transport import ACKS_ALL, before_every_flush, clear_only_suspended, use_worker_transport
from streams.parser import LineParser
from streams.settings import ParserSettings
from streams.table_cache import key_partition
from streams.topics import TopicSettings, replication_factor
from streams.worker import REREAD_CHECK_S, Pipeline, WorkerSettings


def faust_credentials(kafka: KafkaSettings) -> faust.auth.Credentials | None:
    """The Kafka settings as Faust takes them, for its consumer, producer and changelogs alike."""
    options = kafka.client_options()
    if kafka.uses_sasl:
        return faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            ssl_context=options.get("ssl_context"),
            mechanism=options["sasl_mechanism"],
        )
    if kafka.uses_tls:
        return faust.SSLCredentials(options["ssl_context"])
    return None


class PromptTableManager(TableManager):
    """Faust's table manager without the second it sleeps when it starts (faust-streaming 0.15,
    `TableManager.on_start`), there for tables declared after the app started: ours are all declared in
    `create_app`. A restarted worker counts again a second sooner."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class PromptRocksDBStore(RocksDBStore):
    """Faust's RocksDB store, collecting garbage at a revoke only when it dropped a database, and
    reading a key outside the agent from its own partition's database.

    Faust (faust-streaming 0.15) runs a full `gc.collect()` whenever a rebalance revokes, for every
    table, to close the dropped databases' handles. A start revokes nothing, and each collection over
    Faust's and pydantic's objects took about 50 ms: a fifth of a second before a restarted worker counts.
    """

    def _get(self, key: bytes) -> bytes | None:
        """Faust's, but without a current event (the read API) only the key's own partition's database
        is searched: Faust searched them all for a key it had not seen, and `/health` asks for every
        minute window of a day, most of which do not exist (a restarted worker's first one took 0.15 s
        of its loop, eight partitions' databases for each of 11,520 keys)."""
        if current_event() is not None:
            return super()._get(key)
        db = self._dbs.get(key_partition(key))
        return None if db is None else db.get(key)

    def _contains(self, key: bytes) -> bool:
        if current_event() is not None:
            return super()._contains(key)
        return self._get(key) is not None

    def revoke_partitions(self, table: CollectionT, tps: Set[TP]) -> None:
        changelog = table.changelog_topic.topics
        dropped = sum(self._dbs.pop(tp.partition, None) is not None for tp in tps if tp.topic in changelog)
        if dropped:
            gc.collect()  # a handle left open keeps its database's lock: it could not be opened again


class PromptTable(faust.Table):
    """A table stored in `PromptRocksDBStore` where the app's store is RocksDB."""

    def _new_store_by_url(self, url: str | URL) -> StoreT:
        if stores.by_url(url) is not RocksDBStore:
            return super()._new_store_by_url(url)
        return PromptRocksDBStore(
            url,
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )


def create_app(
    settings: WorkerSettings | None = None,
    kafka: KafkaSettings | None = None,
    topics: TopicSettings | None = None,
    parser: ParserSettings | None = None,
) -> faust.App:
    """The worker's Faust app, with its agent, tables and read API."""
    settings = settings or WorkerSettings()
    kafka = kafka or KafkaSettings()
    topics = topics or TopicSettings()
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in kafka.bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(kafka),
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
        datadir=str(settings.data_dir),
        web_host=settings.bind_host,
        web_port=settings.web_port,
        web_bind=settings.bind_host,
        canonical_url=settings.canonical_url or f"http://{settings.bind_host}:{settings.web_port}",
        # Faust's own pages (table contents among them) would bypass the API's token: only ours are served
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        topic_partitions=topics.partitions,
        topic_replication_factor=replication_factor(kafka, topics),  # Faust's own topics: as ours
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        consumer_group_instance_id=settings.group_instance_id,
        # the tables' changelog records wait this long to share a request (default: one per record); the
        # outbox's records come in whole batches. Longer would delay the next batch's outbox sends
        producer_linger=0.005,
        producer_max_batch_size=1024 * 1024,
        producer_compression_type="zstd",  # a tenth of the bytes: less work for us (CRC, copies) and the broker
        broker_heartbeat_interval=settings.session_timeout_s / 3,
        producer_acks=ACKS_ALL,
        processing_guarantee="at_least_once",
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        web_in_thread=False,
        TableManager=PromptTableManager,
        Table=PromptTable,
    )
    use_worker_transport(app)  # acks=all and idempotence; commits never pass an unprocessed record
    clear_only_suspended(app)  # else a start's second flow resume drops the committed records queued
    pipeline = Pipeline(app, settings, LineParser(parser or ParserSettings()), topics)
    before_every_flush(app, pipeline.before_commit)

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender: faust.App, revoked: set[TP], **kwargs: object) -> None:
        """Faust flushed (so wrote the cache) before it committed; what is left was not committed."""
        pipeline.forget_partitions({tp.partition for tp in revoked if tp.topic == topics.raw})

    @app.on_rebalance_complete.connect
    async def forget_reads(sender: faust.App, **kwargs: object) -> None:
        """Recovery wrote the changelogs' values into the stores."""
        pipeline.cache.forget_reads()

    @app.timer(REREAD_CHECK_S)
    async def reread_overdue() -> None:
        await pipeline.reread_overdue()

    raw = app.topic(topics.raw, key_type=bytes, value_type=bytes, partitions=topics.partitions)

    @app.agent(raw, name="pioneer-aggregate")
    async def aggregate(stream: faust.StreamT[bytes]) -> None:
        batches = take_adaptive(
            stream,
            settings.batch_size,
            settings.batch_max_bytes,
            settings.batch_busy_within_s,
            pipeline.backlog,
        )
        async for events in batches:
            try:
                await pipeline.process(list(events))
            except Exception as error:
                # Faust restarts a crashed agent and the web server keeps answering: say so in /health
                pipeline.last_crash = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {error!r}"
                raise

    register_api(app, pipeline, settings.api_token.get_secret_value() if settings.api_token else None)

    @app.page("/metrics")
    async def metrics(self: View, request: Request) -> Response:
        """Prometheus metrics: counters and gauges without user, notebook or session labels (no token)."""
        body = generate_latest(pipeline.metrics.registry)
        return self.bytes(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return app
