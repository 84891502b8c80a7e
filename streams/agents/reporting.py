"""Writes this worker's counters to `<metrics_path>/metrics-<pid>.json` every second."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.app import Pipeline


def register_reporting(p: Pipeline) -> None:
    path = p.settings.metrics_path / f"metrics-{os.getpid()}.json"

    @p.app.timer(interval=1.0)
    async def report() -> None:
        app = p.app
        recovered = app.tables.recovery.completed.is_set() and not app.in_recovery
        p.metrics.ready = bool(recovered and app.consumer.assignment() and not app.rebalancing)
        p.metrics.write(path)

    @p.app.on_before_shutdown.connect
    def final_report(app: object, **kwargs: object) -> None:
        p.metrics.write(path)
