"""Worked solutions of notebook 06 · Feature enrichment, and the typical mistakes
(``MISTAKES``) that each exercise's check must reject."""

from __future__ import annotations


# ----------------------------------------------------------------------------- warm-ups
def useful_taps(size: int, dilation: int) -> int:
    """Max over output cells of the 3x3 taps (offsets -d, 0, +d per axis) inside the map."""
    per_axis = max(sum(0 <= c + dilation * u < size for u in (-1, 0, 1)) for c in range(size))
    return per_axis * per_axis


def _taps_per_axis(size: int, dilation: int) -> int:
    """Counts the taps of one axis only (forgets that the 3x3 kernel has two axes)."""
    return max(sum(0 <= c + dilation * u < size for u in (-1, 0, 1)) for c in range(size))


def _taps_ignore_padding(size: int, dilation: int) -> int:
    """Counts all 9 taps, including those that fall in the zero padding."""
    return 9


def _taps_corner_cell(size: int, dilation: int) -> int:
    """Counts the taps of the corner cell (the worst case) instead of the best cell."""
    per_axis = sum(0 <= dilation * u < size for u in (-1, 0, 1))
    return per_axis * per_axis


def merge_channels(reduce_dim: int, hyper_dim: int, use_multi_similarity: bool,
                   use_attention: bool) -> int:
    """query + prototype (reduce_dim each) + prior (1) [+ hyper] [+ gam (reduce_dim)]."""
    width = 2 * reduce_dim + 1
    if use_multi_similarity:
        width += hyper_dim
    if use_attention:
        width += reduce_dim
    return width


def _merge_forgets_prior(reduce_dim: int, hyper_dim: int, use_multi_similarity: bool,
                         use_attention: bool) -> int:
    """Forgets the one-channel prior mask."""
    return merge_channels(reduce_dim, hyper_dim, use_multi_similarity, use_attention) - 1


def _merge_hyper_as_reduce(reduce_dim: int, hyper_dim: int, use_multi_similarity: bool,
                           use_attention: bool) -> int:
    """Gives the multi-similarity input reduce_dim channels instead of hyper_dim."""
    return merge_channels(reduce_dim, reduce_dim, use_multi_similarity, use_attention)


# ----------------------------------------------------------------------------- variant
def rates_for_map(size: int) -> tuple[int, int, int]:
    """Three increasing rates up to the largest one whose taps all fit the map."""
    top = (size - 1) // 2
    return max(1, top // 3), max(2, 2 * top // 3), top


def _rates_authors(size: int) -> tuple[int, int, int]:
    """Keeps the authors' 60 x 60 rates whatever the map size."""
    return 6, 12, 18


def _rates_half_size(size: int) -> tuple[int, int, int]:
    """Off by one: a rate of size // 2 already puts a tap outside an even-sized map."""
    top = size // 2
    return max(1, top // 3), max(2, 2 * top // 3), top


def _rates_all_one(size: int) -> tuple[int, int, int]:
    """One rate three times: the branches are copies and none reaches far."""
    return 1, 1, 1


# ----------------------------------------------------------------------------- experiment
def narrow_meta() -> dict:
    """`msanet-train --set` overrides: a 32-channel meta learner, nothing else changed."""
    return {"model.reduce_dim": 32}


def _narrow_without_section() -> dict:
    """Leaves out the config section: there is no top-level key `reduce_dim`."""
    return {"reduce_dim": 32}


def _narrow_wrong_knob() -> dict:
    """Narrows hyper_final instead of the meta learner."""
    return {"model.hyper_dim": 32}


def _narrow_default() -> dict:
    """Writes the toy default back: nothing changes."""
    return {"model.reduce_dim": 64}


MISTAKES = {
    "useful_taps": [_taps_per_axis, _taps_ignore_padding, _taps_corner_cell],
    "merge_channels": [_merge_forgets_prior, _merge_hyper_as_reduce],
    "rates_for_map": [_rates_authors, _rates_half_size, _rates_all_one],
    "narrow_meta": [_narrow_without_section, _narrow_wrong_knob, _narrow_default],
}
