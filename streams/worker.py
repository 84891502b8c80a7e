"""Run a Faust worker for one scenario in this process (what `agentstream worker` does)."""

from __future__ import annotations

import asyncio
import logging

from streams.settings import Settings


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    """Blocks until SIGTERM/SIGINT; Faust then finishes in-flight batches, flushes, commits, leaves."""
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        pass
    import faust

    from streams.app import build_pipeline, declare_topics

    pipeline = build_pipeline(settings)
    declare_topics(pipeline)
    logging.getLogger("faust").setLevel(loglevel.upper())
    worker = faust.Worker(pipeline.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
