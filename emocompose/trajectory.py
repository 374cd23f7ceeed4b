"""Emotion over time: a piece in segments of bars, each with its emotion, and the glide of the
latents from one to the next (`generate --emotion calm:8,tense:8,happy:4 --transition 2`).

A trajectory is written `EMOTION:BARS,...`, or for one axis `VALUE:BARS,...` with values in
[-1, 1] (`--arousal 0.8:8,-0.5:12`); a plain `happy` or `0.5` is one segment as long as the
piece. Light on purpose (no torch, no numpy): the command line checks a trajectory before the
model loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from emocompose import emotions
from emocompose.errors import UsageError

TRANSITION = 2  # bars over which the latents glide from one segment's emotion to the next


@dataclass(frozen=True)
class Segment:
    bars: int
    levels: tuple[float, float]  # arousal, valence in [-1, 1]: -1 the low component, 1 the high one

    @property
    def emotion(self) -> str:
        return emotions.emotion_of(int(self.levels[0] >= 0), int(self.levels[1] >= 0))


def _parts(spec: str, what: str) -> list[tuple[str, int | None]]:
    """'a:8,b:4' -> [('a', 8), ('b', 4)]; 'a' -> [('a', None)]."""
    parts = []
    for item in spec.split(","):
        value, sep, bars = item.strip().partition(":")
        if not value:
            raise UsageError(f"{what} {spec!r}: an empty segment (write them as VALUE:BARS,VALUE:BARS)")
        if sep:
            try:
                n = int(bars)
            except ValueError:
                raise UsageError(f"{what} {spec!r}: {bars!r} is not a whole number of bars") from None
            if n < 1:
                raise UsageError(f"{what} {spec!r}: a segment needs at least one bar, got {n}")
            parts.append((value, n))
        else:
            parts.append((value, None))
    if len(parts) > 1 and any(n is None for _, n in parts):
        raise UsageError(f"{what} {spec!r}: give every segment its bars (VALUE:BARS,VALUE:BARS)")
    return parts


def _level(value: str, axis: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise UsageError(f"{axis} {value!r} is not a number in [-1, 1]") from None
    if not -1.0 <= x <= 1.0:
        raise UsageError(f"{axis} must be in [-1, 1], got {x:g}")
    return x


def _lengths(parts: list[tuple[str, int | None]], bars: int | None, default: int, what: str) -> list[int]:
    """Each segment's bars: as written (their sum must agree with `bars` if given), or for one
    plain segment `bars` (else `default`)."""
    if parts[0][1] is None:
        return [bars if bars is not None else default]
    total = sum(n for _, n in parts)
    if bars is not None and bars != total:
        raise UsageError(f"{what} adds up to {total} bars but --bars is {bars}; give one or make them agree")
    return [n for _, n in parts]


def plan(emotion: str | None, arousal: str | None, valence: str | None, bars: int | None, default: int) -> list[Segment]:
    """The segments of a piece from a named emotion (or trajectory of them), or from arousal
    and valence (each a value or a trajectory of values; their segments may differ: the piece
    changes where either does)."""
    if emotion is not None:
        if arousal is not None or valence is not None:
            raise UsageError("give an emotion, or arousal and valence, not both")
        parts = _parts(emotion, "emotion")
        lengths = _lengths(parts, bars, default, "the emotion trajectory")
        return [Segment(n, emotions.levels(name)) for (name, _), n in zip(parts, lengths)]
    if arousal is None or valence is None:
        raise UsageError("give an emotion (happy, tense, sad, calm), or both arousal and valence")
    parts = {axis: _parts(spec, axis) for axis, spec in zip(emotions.AXES, (arousal, valence))}
    # a plain value lasts as long as the other axis's segments, when they are written out
    written = [sum(n for _, n in p) for p in parts.values() if p[0][1] is not None]
    fill = bars if bars is not None or not written else written[0]
    axes = [[(_level(v, axis), n) for (v, _), n in zip(p, _lengths(p, fill if p[0][1] is None else bars, default, axis))]
            for axis, p in parts.items()]  # fmt: skip
    totals = [sum(n for _, n in ax) for ax in axes]
    if len(set(totals)) > 1:
        raise UsageError(f"arousal adds up to {totals[0]} bars and valence to {totals[1]}; they must agree")
    # cut the piece where either axis changes
    out, i, j, left_a, left_v = [], 0, 0, axes[0][0][1], axes[1][0][1]
    while i < len(axes[0]):
        n = min(left_a, left_v)
        out.append(Segment(n, (axes[0][i][0], axes[1][j][0])))
        left_a, left_v = left_a - n, left_v - n
        if left_a == 0 and (i := i + 1) < len(axes[0]):
            left_a = axes[0][i][1]
        if left_v == 0 and (j := j + 1) < len(axes[1]):
            left_v = axes[1][j][1]
    return out


def check_transition(transition: int) -> int:
    if transition < 0:
        raise UsageError(f"transition must be 0 or more bars, got {transition}")
    return transition


def weights(segments: list[Segment], transition: int = TRANSITION) -> list[list[float]]:
    """Per bar, how much of each segment's emotion it carries (rows sum to one): all of its own
    segment's, except over `transition` bars centred on each change, where the weight glides
    linearly from one segment to the next (at most as long as the shorter of the two)."""
    total = sum(s.bars for s in segments)
    rows = []
    for k, s in enumerate(segments):
        rows += [[1.0 if j == k else 0.0 for j in range(len(segments))] for _ in range(s.bars)]
    for k, (_, start) in enumerate(spans(segments)[:-1]):  # start: the first bar of segment k + 1
        t = min(check_transition(transition), segments[k].bars, segments[k + 1].bars)
        for i in range(start - t // 2, start - t // 2 + t):
            w = (i - (start - t / 2) + 0.5) / t  # the next segment's share, rising through the glide
            if 0 <= i < total:
                rows[i] = [0.0] * len(segments)
                rows[i][k], rows[i][k + 1] = 1 - w, w
    return rows


def spans(segments: list[Segment]) -> list[tuple[int, int]]:
    """Each segment's first bar and the bar after its last."""
    out, start = [], 0
    for s in segments:
        out.append((start, start + s.bars))
        start += s.bars
    return out


def bar_levels(segments: list[Segment]):
    """(bars, 2) numpy array: each bar's arousal and valence in {0, 1}, its segment's (in a glide,
    the segment it lies mostly in)."""
    import numpy as np

    levels = np.array([[int(s.levels[0] >= 0), int(s.levels[1] >= 0)] for s in segments], np.int64)
    return levels[np.asarray(weights(segments)).argmax(1)]


def label(segments: list[Segment]) -> str:
    """A name for the piece: its emotions in order ('calm-tense-happy'); one emotion's own name."""
    names = [s.emotion for s in segments]
    return "-".join(n for i, n in enumerate(names) if i == 0 or n != names[i - 1])
