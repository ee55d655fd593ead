"""Statistics across seeds: paired comparisons, the sequential decisions, rounds of
seeds."""
