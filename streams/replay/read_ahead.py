"""Reading the scenario's topics in a child process while this one parses what it sent.

Taking a record out of librdkafka (a `Message` object, its key and value copied) costs about a
microsecond with the GIL held, so a reading thread does not overlap the parsing; a process does.
The child sends each fetch as `EnvelopeLines` (one buffer and the key lengths: pickled with one
copy) and, at the end, the counts and the feedback range it read, so this process's
`ScenarioRange` can read the same records again (the per-event engine after the columnar one
declined). Asked for the live log, it then reads and parses the actions topic (a million action
records: a few seconds of JSON) while this process parses and replays the records.
"""

from __future__ import annotations

import gc
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from streams.replay.sources import Bound, EnvelopeLines, ScenarioRange, SourceError, read_live_actions

if TYPE_CHECKING:
    from streams.replay.live_log import LiveLog

LiveRequest = tuple[Bound, tuple[str, ...]]  # the live actions from this bound, by these action names


def _read(scenario_range: ScenarioRange, live: LiveRequest | None, conn: Connection) -> None:
    try:
        for kind, batch in scenario_range.batches():
            conn.send(EnvelopeLines.of(kind, batch))
        r = scenario_range
        conn.send(("done", r.events, r.feedback, r.feedback_range))
        if live is not None:
            since, actions = live
            conn.send(("live", read_live_actions(r.settings, actions, since)))
    except Exception as exc:  # the parent raises it: a SourceError keeps its message
        conn.send(("error", isinstance(exc, SourceError), f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class ReadAhead:
    """A child process reading `scenario_range.batches()` from the moment this is made; `lines()`
    gives what it read, and afterwards `scenario_range` holds the ranges read (as if it had read
    them itself); then `live()` the live log, if `live` asked for it. `close()` stops the child if
    it is still reading."""

    def __init__(self, scenario_range: ScenarioRange, live: LiveRequest | None = None) -> None:
        # A plain child (`python -m`), not multiprocessing's spawn: that one re-runs the caller's
        # main module, and a fork would copy librdkafka's threads' state.
        self.range, self.wants_live = scenario_range, live is not None
        self.live_pending = False  # the records are all read; the live log is next
        read_fd, write_fd = os.pipe()
        self.child = subprocess.Popen(
            [sys.executable, "-m", __name__, str(write_fd)], stdin=subprocess.PIPE, pass_fds=(write_fd,)
        )
        os.close(write_fd)
        self.receive = Connection(read_fd, writable=False)
        assert self.child.stdin is not None
        self.child.stdin.write(pickle.dumps((scenario_range, live)))
        self.child.stdin.close()
        # Received by a thread (the pipe's read waits without the GIL): the child never waits for
        # this process, busy parsing what came before.
        self.received: queue.SimpleQueue = queue.SimpleQueue()
        self.receiver = threading.Thread(target=self._receive, name="replay-receiver", daemon=True)
        self.receiver.start()

    def _receive(self) -> None:
        while True:
            try:
                item = self.receive.recv()
            except (EOFError, OSError):
                self.received.put(None)
                return
            self.received.put(item)

    def _next(self) -> object:
        item = self.received.get()
        if item is None:
            raise SourceError(f"the topic reader stopped (exit code {self.child.wait()})")
        if isinstance(item, tuple) and item[0] == "error":
            _, expected, message = item
            raise SourceError(message if expected else f"reading the topics failed: {message}")
        return item

    def lines(self) -> Iterator[EnvelopeLines]:
        try:
            while isinstance(item := self._next(), EnvelopeLines):
                yield item
        except BaseException:
            self.close()
            raise
        r = self.range
        r.events, r.feedback, r.feedback_range = item[1:]  # type: ignore[index]
        self.live_pending = self.wants_live
        if not self.wants_live:
            self.close()

    def live(self) -> LiveLog:
        """The live log (when `live_pending`); waits for the child to have read it."""
        self.live_pending = False
        try:
            _, log = self._next()  # type: ignore[misc]
            return log
        finally:
            self.close()

    def close(self) -> None:
        if self.child.poll() is None:
            self.child.terminate()
        self.child.wait()
        self.receiver.join()  # the child's end of the pipe is closed: the receiver has stopped
        self.receive.close()


if __name__ == "__main__":
    # A million librdkafka Messages alive at a time are all tracked by the cyclic collector, which
    # traversed them again and again: 15-22% of this process's time (py-spy). They hold no cycles.
    gc.disable()
    _read(*pickle.loads(sys.stdin.buffer.read()), Connection(int(sys.argv[1]), readable=False))
