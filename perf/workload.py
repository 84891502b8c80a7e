"""The fixed workload: N risk events generated once (fixed seed) and pre-loaded into one topic.

Events only, no feedback: the decide path is what is compared, and every implementation then reads
the very same records (same partitions, same order per partition) from the beginning.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.admin import ensure_topics
from connectors.generate import RiskGenerator
from connectors.publish import Publisher, PublishResult
from streams.settings import Settings


@dataclass(frozen=True)
class Workload:
    seed: int
    events: list[tuple[str, bytes]]  # (account id: the key, transaction JSON)

    @classmethod
    def generate(cls, n: int, seed: int) -> Workload:
        records = RiskGenerator(seed).records(n)
        return cls(seed, [(r.key, r.value) for r in records if r.kind == "event"])

    def __len__(self) -> int:
        return len(self.events)


def load(settings: Settings, topic: str, workload: Workload, partitions: int) -> PublishResult:
    """Create `topic` with `partitions` and publish the workload into it, murmur2-keyed by account
    (the partitioner Java clients and Faust use), as fast as the producer goes."""
    ensure_topics(settings, [topic], partitions=partitions)
    return Publisher(settings).publish((topic, key, value) for key, value in workload.events)
