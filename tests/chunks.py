"""Helpers for tests that drive ``runner.train_members`` directly."""

from __future__ import annotations

from collections.abc import Callable, Iterable


def finished_members(chunks: Iterable) -> list:
    """Every MemberResult of the chunks ``train_members`` yields, in the order they came."""
    return [r for chunk in chunks for r in chunk.results]


class PerChunk:
    """Checkpoints chosen by a function of the chunk (``runner.ChunkCheckpoints``)."""

    def __init__(self, choose: Callable[[list], object]):
        self.choose = choose

    def for_chunk(self, members: list) -> object:
        return self.choose(members)
