"""Reading the scenario's topics in a child process while this one parses what it sent.

Taking a record out of librdkafka (a `Message` object, its key and value copied) costs about a
microsecond with the GIL held, so a reading thread does not overlap the parsing; a process does.
The child sends each fetch as `EnvelopeLines` (one buffer, a few arrays: pickled with one copy)
and, at the end, the span it read, so this process's `ScenarioRange` can read the same records
again (the per-event engine after the columnar one declined).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from multiprocessing.connection import Connection

from streams.replay.sources import EnvelopeLines, ScenarioRange, SourceError


def _read(scenario_range: ScenarioRange, conn: Connection) -> None:
    try:
        for kind, batch in scenario_range.batches():
            conn.send(EnvelopeLines.of(kind, batch))
        r = scenario_range
        conn.send(("done", r.events, r.feedback, r.first_ms, r.last_ms, r.feedback_range))
    except Exception as exc:  # the parent raises it: a SourceError keeps its message
        conn.send(("error", isinstance(exc, SourceError), f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def lines_read_ahead(scenario_range: ScenarioRange) -> Iterator[EnvelopeLines]:
    """The records `scenario_range.batches()` reads, as lines, read by a child process; when they
    are done `scenario_range` holds the span read (as if it had read them itself)."""
    # A plain child (`python -m`), not multiprocessing's spawn: that one re-runs the caller's main
    # module, and a fork would copy librdkafka's threads' state.
    read_fd, write_fd = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-m", __name__, str(write_fd)], stdin=subprocess.PIPE, pass_fds=(write_fd,)
    )
    os.close(write_fd)
    receive = Connection(read_fd, writable=False)
    try:
        assert child.stdin is not None
        child.stdin.write(pickle.dumps(scenario_range))
        child.stdin.close()
        while True:
            try:
                item = receive.recv()
            except EOFError:
                raise SourceError(f"the topic reader stopped (exit code {child.wait()})") from None
            if isinstance(item, EnvelopeLines):
                yield item
                continue
            if item[0] == "error":
                _, expected, message = item
                raise SourceError(message if expected else f"reading the topics failed: {message}")
            _, r = item, scenario_range
            r.events, r.feedback, r.first_ms, r.last_ms, r.feedback_range = item[1:]
            return
    finally:
        receive.close()
        if child.poll() is None:
            child.terminate()
        child.wait()


if __name__ == "__main__":
    _read(pickle.loads(sys.stdin.buffer.read()), Connection(int(sys.argv[1]), readable=False))
