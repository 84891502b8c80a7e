"""The worker's malloc settings (glibc only; elsewhere they are no-ops that say so)."""

from __future__ import annotations

import platform

import pytest

from streams import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt and malloc_trim")
def test_glibc_takes_the_arena_limit_and_trims() -> None:
    assert allocator.limit_arenas(8) is True  # glibc's own default for this machine's cores
    garbage = [bytes(200) for _ in range(200_000)]  # ~50 MB in small blocks, then freed
    del garbage
    assert allocator.trim() is True


def test_without_a_c_library_both_say_nothing_was_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_LIBC", None)
    assert allocator.limit_arenas() is False and allocator.trim() is False
