"""``smartmeter reprocess`` on Dask distributed: the photos are fetched and read on Dask workers, in parallel;
validation and writes stay in the client, ordered per meter (``smartmeter.server.reprocess``).

``dask_reads(settings, engine, scheduler=None, workers=2)`` is a context manager yielding a ``Reads`` for
:func:`~smartmeter.server.reprocess.reprocess`. Without ``scheduler`` it starts a ``LocalCluster`` of ``workers``
processes (one thread each: a photo is read by one core) and stops it afterwards; with ``tcp://host:8786`` it
uses that cluster, whose workers need this package, the settings' image store and its secrets (environment or
secret files) and the meter profiles at the same paths. Nothing but photo keys goes out and only what was read
comes back (no photo bytes through the scheduler). Needs the ``fleet`` extra: ``pip install 'smartmeter[fleet]'``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from smartmeter.errors import ConfigError
from smartmeter.server.reprocess import Outcome, Reads, Row, read_rows
from smartmeter.server.worker import Readers
from smartmeter.settings import Settings
from smartmeter.store import open_store
from smartmeter.store.base import ImageStore

log = logging.getLogger(__name__)

_STATE: dict[str, tuple[ImageStore, Readers]] = {}  # per Dask worker process: one store and reader set per config


def read_chunk(settings: Settings, engine: str | None, rows: Sequence[Row]) -> list[Outcome]:
    """Runs on a Dask worker: fetch and read one chunk of photos (store and readers kept between chunks)."""
    key = f"{engine}|{settings.model_dump_json()}"
    if key not in _STATE:
        _STATE[key] = (open_store(settings.store), Readers(settings, engine))
    store, readers = _STATE[key]
    return read_rows(readers, store, rows)


@contextmanager
def dask_reads(settings: Settings, engine: str | None, scheduler: str | None = None,
               workers: int = 2) -> Iterator[Reads]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise ConfigError("reprocess on Dask needs dask.distributed",
                          hint="pip install 'smartmeter[fleet]', or run with --in-process") from exc
    cluster: Any = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with Client(cluster if cluster is not None else scheduler) as client:
            log.info("reprocess: Dask scheduler %s, %d workers", client.scheduler.address,
                     len(client.scheduler_info()["workers"]))
            remote = client.scatter(settings, broadcast=True)

            def reads(chunks: Sequence[Sequence[Row]]) -> Iterator[tuple[int, list[Outcome]]]:
                futures = {client.submit(read_chunk, remote, engine, list(c), pure=False): i
                           for i, c in enumerate(chunks)}
                for future, result in as_completed(futures, with_results=True):
                    yield futures[future], result

            yield reads
    finally:
        if cluster is not None:
            cluster.close()
