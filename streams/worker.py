"""Run a Faust worker for one scenario in this process (what `agentstream worker` does)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from streams import taskdump
from streams.settings import Settings

CLEAN_MARKER = "clean-shutdown"
log = logging.getLogger(__name__)


def trust_local_tables(tabledir: Path) -> None:
    """Keep the RocksDB tables only if the last run ended cleanly; then arm the next check.

    A batch's table writes go into RocksDB before the broker acknowledged their changelog records,
    so after a crash RocksDB can hold changes its changelog never got; a restart on it would not
    apply them again (the offsets say they are applied) and a later restore elsewhere would lack
    them. After an unclean end the tables are dropped and restored from their changelogs.
    """
    marker = tabledir.parent / CLEAN_MARKER
    if tabledir.exists() and any(tabledir.iterdir()) and not marker.exists():
        log.warning("the last run did not stop cleanly: restoring the tables from their changelogs")
        shutil.rmtree(tabledir)
    marker.unlink(missing_ok=True)


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    """Blocks until SIGTERM/SIGINT; Faust then finishes in-flight batches, flushes, commits, leaves."""
    from streams.allocator import limit_arenas

    limit_arenas()  # before any thread of the worker starts
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        pass
    import faust

    from streams.app import build_pipeline, declare_topics
    from streams.gcpolicy import settle

    pipeline = build_pipeline(settings)
    tabledir = Path(pipeline.app.conf.tabledir)
    trust_local_tables(tabledir)
    declare_topics(pipeline)
    logging.getLogger("faust").setLevel(loglevel.upper())

    class Worker(faust.Worker):
        def _on_sigusr2(self) -> None:  # mode's opens pdb on the worker's stdin
            taskdump.log_state(pipeline.app)

    worker = Worker(pipeline.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    settle(settings.gc_gen0_threshold)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code in (0, None):  # stopped by a signal: committed, flushed, RocksDB closed
            (tabledir.parent / CLEAN_MARKER).touch()
        raise
