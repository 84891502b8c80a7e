"""The draws' digests of a large replay, hashed in a child process while this one joins and perceives.

An epsilon-greedy policy's draws come from two blake2b per event (its decision id, then `Draw`):
about a second per million events, holding the GIL (hashlib releases it only for long inputs), and
needed only once the join plan and the perception are done, which take about as long. So a child
(`python -m`, importing little) hashes them meanwhile. If it cannot, they are hashed here: the
result is the same bytes either way.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
from array import array

from streams.core.scenario import DRAW_DIGEST_SIZE, draw_digests_of_ids

PARALLEL_MIN_EVENTS = 100_000  # below this the child's start-up costs more than it saves


class DrawDigests:
    """`draw_digests_of_ids(prefix, lasts, salt)`, started now, `result()` when needed."""

    def __init__(self, prefix: tuple[str, ...], lasts: list[bytes], salt: bytes, parallel: bool) -> None:
        self.args = (prefix, lasts, salt)
        self.digests: bytes | None = None
        self.from_child = False  # whether the child's digests were used (else hashed here)
        self.child: subprocess.Popen[bytes] | None = None
        if not parallel:
            return
        try:
            self.child = subprocess.Popen(
                [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        except OSError:
            return
        # One buffer and the lengths: pickled at C speed, unlike a list of a million bytes objects.
        payload = pickle.dumps((prefix, b"".join(lasts), array("i", map(len, lasts)), salt), protocol=5)
        self.feeder = threading.Thread(target=self._feed, args=(payload,), name="draws-feeder", daemon=True)
        self.feeder.start()

    def _feed(self, payload: bytes) -> None:
        assert self.child is not None and self.child.stdin is not None
        try:
            self.child.stdin.write(payload)
            self.child.stdin.close()
        except OSError:  # the child died: `result` hashes here
            pass

    def result(self) -> bytes:
        """The digests (each policy drawing from them asks: they are hashed once)."""
        if self.digests is None:
            prefix, lasts, salt = self.args
            if self.child is not None:
                self.feeder.join()  # the child reads all its input before it writes
                assert self.child.stdout is not None
                out = self.child.stdout.read()
                self.child.stdout.close()
                self.child.wait()
                self.child = None
                if len(out) == len(lasts) * DRAW_DIGEST_SIZE:
                    self.digests, self.from_child = out, True
            if self.digests is None:
                self.digests = draw_digests_of_ids(prefix, lasts, salt)
        return self.digests


def _main() -> None:
    prefix, joined, lengths, salt = pickle.loads(sys.stdin.buffer.read())
    lasts, at = [], 0
    for length in lengths:
        lasts.append(joined[at : at + length])
        at += length
    sys.stdout.buffer.write(draw_digests_of_ids(prefix, lasts, salt))


if __name__ == "__main__":
    _main()
