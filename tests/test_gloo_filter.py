"""gloo's connection banners are dropped from a multi-process run's stdout, whatever the
chunks they arrive in; every other byte passes, in order (issue 19 item 10)."""

from __future__ import annotations

import pytest

from jaxcnn.platform.distributed import _BannerFilter

TEXT = (b"training 4 members, process 1 of 2\n"
        b"[Gloo] Rank 0 is connected to 1 peer ranks. Expected number of connected peer "
        b"ranks is : 1\n"
        b"[Gloo] Rank 1 is connected to 1 peer ranks. Expected number of connected peer "
        b"ranks is : 1\n"
        b"compiled in 44.7 s\n"
        b"[Glow] not a banner\n"
        b"a last line without newline")
KEPT = (b"training 4 members, process 1 of 2\ncompiled in 44.7 s\n[Glow] not a banner\n"
        b"a last line without newline")


@pytest.mark.parametrize("size", [1, 2, 3, 7, 12, 13, 64, len(TEXT)])
def test_banners_are_dropped_in_any_chunking(size):
    out = []
    lines = _BannerFilter(out.append)
    for i in range(0, len(TEXT), size):
        lines.feed(TEXT[i:i + size])
    lines.close()
    assert b"".join(out) == KEPT


def test_a_partial_line_that_cannot_be_a_banner_passes_at_once():
    """A prompt or progress text without a newline is not held back."""
    out = []
    lines = _BannerFilter(out.append)
    lines.feed(b"epoch 1/2 ")
    assert b"".join(out) == b"epoch 1/2 "
    lines.feed(b"[Gl")  # mid-line: already passing, so no banner can start here
    assert b"".join(out) == b"epoch 1/2 [Gl"
