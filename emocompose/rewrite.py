"""What `transform` does around the model to keep the user's piece: the melody to hold (moved
into the target's mode), the source whose rhythm, texture and harmony are held with it (in the
target's mode, re-timed where arousal changes with `--keep texture`), tempo and dynamics that
follow the target's arousal, and the source's instruments given back to the notes the model
wrote on its piano.

The model learned piano music, so it reads every pitched note as piano (`melody.piano_view`)
and writes piano. `restore_instruments` then puts the melody on the track class it came from,
hands the other notes to the source's pitched track classes by register (each note to the
class whose notes in the source lie nearest in pitch), and copies the drums as they were.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from emocompose.features import global_key, is_major
from emocompose.grid import Grid
from emocompose.melody import Melody, find_melody, mode_moved, pitched, to_mode
from emocompose.midi import DRUMS
from emocompose.presets import MODE_LAMBDA
from emocompose.tokenizer import TokenizerConfig

# what transform holds fixed: the melody; the melody and the source's texture (its rhythm re-timed
# where arousal changes, `retimed`); or nothing (the latents alone)
KEEP = ("melody", "texture", "none")
# Mean velocity of real EMOPIA clips by arousal (high 78, low 54; model issue): at lambda 1 the
# melody's mean and the other notes' move to the target's, only toward it (a loud piece made
# happy stays loud).
TARGET_VELOCITY = {0: 54.0, 1: 78.0}
# Tempo steps (5.7% each, `TokenizerConfig.tempo_bins`) at lambda 1 when arousal changes: 3 is
# about 18% faster toward high arousal or slower toward low, within what a performer would take.
TEMPO_STEPS = 3
DENSER = 0.5  # toward high arousal a rewrite may write up to 1.5x the source's notes per bar at lambda 1
THIN = 0.4  # toward low arousal `retimed` leaves out up to this share of a bar's accompaniment onsets


def per_bar(target, bars: int) -> np.ndarray:
    """(bars, 2) arousal and valence in {0, 1} of a target given for the whole piece, or per bar
    already (an emotion over time)."""
    t = np.asarray(target, np.int64)
    return np.broadcast_to(t, (bars, 2)) if t.ndim == 1 else t


def held_melody(grid: Grid, config: TokenizerConfig, target, lam: float) -> Melody:
    """The source's melody as the rewrite writes it: in the target's mode from MODE_LAMBDA on,
    its velocities moved toward the target arousal's by lam (`target` (arousal, valence) or
    per bar, `per_bar`)."""
    t = per_bar(target, grid.n_bars)
    mel = find_melody(grid, config)
    if lam >= MODE_LAMBDA:
        mel = to_mode(mel, grid, config, major=t[:, 1].astype(bool))
    if not len(mel):
        return mel
    return replace(mel, vel=_toward_arousal_by_bar(mel.vel, mel.bar, t[:, 0], config, lam))


def toward_arousal(vel: np.ndarray, config: TokenizerConfig, arousal: int, lam: float) -> np.ndarray:
    """Velocity bins moved together, by lam, from their mean toward TARGET_VELOCITY[arousal],
    only in that direction."""
    if not len(vel):
        return vel
    values = config.velocity_value(vel).astype(np.float64)
    shift = lam * (TARGET_VELOCITY[arousal] - values.mean())
    shift = max(shift, 0.0) if arousal else min(shift, 0.0)
    return config.velocity_bin(np.round(values + shift))


def _toward_arousal_by_bar(vel: np.ndarray, bar: np.ndarray, arousal: np.ndarray, config, lam: float) -> np.ndarray:
    """`toward_arousal` for the notes of each arousal level together (`arousal` per bar)."""
    out = vel.copy()
    level = arousal[bar]
    for a in np.unique(level).tolist():
        out[level == a] = toward_arousal(vel[level == a], config, a, lam)
    return out


def melody_in_key(grid: Grid, config: TokenizerConfig, key: int) -> Melody:
    """The source's melody carried into `key` (0-23), as `in_key` says."""
    mel = find_melody(grid, config)
    return replace(mel, pitch=in_key(mel.pitch, mel.bar, grid, config, key))


def view_in_key(view: Grid, config: TokenizerConfig, key: int) -> Grid:
    """The source's piano view with every note carried into `key`, as `in_key` says: the rhythm,
    texture and harmony a key swap holds under the melody carried there."""
    return replace(view, pitch=in_key(view.pitch, view.bar, view, config, key))


def in_key(pitch: np.ndarray, bar: np.ndarray, grid: Grid, config: TokenizerConfig, key: int) -> np.ndarray:
    """Pitches of `grid`'s bars `bar` carried into `key` (0-23): moved into its mode by scale
    degree, then by the smallest step (up to a tritone) from the source's key to its tonic."""
    step = (key % 12 - global_key(grid, config) % 12 + 6) % 12 - 6
    return np.clip(mode_moved(pitch, bar, grid, config, bool(is_major(key))) + step, 0, 127)


def holds_rhythm(target, source: tuple[int, int], lam: float) -> bool:
    """Whether a rewrite keeps the source's rhythm (its onsets, notes per onset and lengths):
    below MODE_LAMBDA, and at any lambda where no bar's target arousal differs from the source's.
    Why: arousal is the rhythm's (z_r, model.md), so a change of valence alone is a change of key
    and mode, which the source's rhythm carries as a key swap does."""
    return lam < MODE_LAMBDA or bool((np.asarray(target)[..., 0] == source[0]).all())


def held_source(view: Grid, config: TokenizerConfig, target, lam: float) -> Grid:
    """The source (its piano view) whose rhythm, texture and harmony a rewrite holds
    (`holds_rhythm`): as it is below MODE_LAMBDA, and from there moved into the target's mode
    by scale degree as the melody is (`held_melody`): a C major chord under a tune made minor
    becomes C minor. choice: with the mode's pitches left to the model, 80 EMOPIA val clips made
    the other valence were told from real test clips more often than with the model's own rhythm
    (0.82 against 0.78 at lambda 1, on pitch-class entropy and spread)."""
    if lam < MODE_LAMBDA:
        return view
    major = per_bar(target, view.n_bars)[:, 1].astype(bool)
    return replace(view, pitch=mode_moved(view.pitch, view.bar, view, config, major))


def note_budget(grid: Grid, mel: Melody, target, lam: float) -> np.ndarray:
    """Per bar, the most notes a rewrite writes besides the melody: as many as the source has
    there (at least as many as its melody notes, so a bare tune gets an accompaniment), and up to
    DENSER times more by lam toward high arousal. Why: with the rhythm under the melody free, the
    model wrote about twice the source's notes whatever the target (32 EMOPIA test clips), so a
    piece made sad came out busier than it went in."""
    bars = grid.n_bars
    others = np.bincount(grid.bar[pitched(grid)], minlength=bars)
    melody = np.bincount(mel.bar, minlength=bars)
    base = np.maximum(others - melody, melody)
    return np.ceil(base * (1 + lam * DENSER * per_bar(target, bars)[:, 0])).astype(np.int64)


def tempo_bins(grid: Grid, config: TokenizerConfig, target, source: tuple[int, int], lam: float) -> np.ndarray:
    """The bars' tempo bins, each faster or slower by up to TEMPO_STEPS (times lam) where its
    target's arousal differs from the source's."""
    arousal = per_bar(target, grid.n_bars)[:, 0]
    step = np.where(arousal == source[0], 0, int(round(lam * TEMPO_STEPS)) * np.where(arousal == 1, 1, -1))
    return np.clip(grid.bar_tempo + step, 0, config.tempo_bins - 1)


def restore_instruments(out: Grid, source: Grid, mel: Melody | None) -> Grid:
    """`out` (written on the piano) with the source's track classes, programs and drums."""
    src_pitched = pitched(source)
    classes = np.unique(source.track[src_pitched])
    track = np.empty(out.n_notes, np.int64)
    is_mel = np.zeros(out.n_notes, bool)
    if mel is not None and len(mel):
        # the melody's notes are where the hold wrote them: at their onsets, on top
        at = {(s, p): int(source.track[i]) for s, p, i in zip(mel.step.tolist(), mel.pitch.tolist(), mel.index.tolist())}
        for n, key in enumerate(zip(out.onsets.tolist(), out.pitch.tolist())):
            if key in at:
                is_mel[n], track[n] = True, at[key]
    rest = src_pitched.copy()  # the source's notes that are not the melody
    if mel is not None and len(mel):
        rest[mel.index] = False
    # the classes with notes besides the melody take the other notes (a melody-only line keeps
    # its own track); a source that is all melody gives them to the melody's class
    means = [(float(source.pitch[rest & (source.track == c)].mean()), int(c)) for c in classes
             if (rest & (source.track == c)).any()] or [(0.0, int(c)) for c in classes[:1]]  # fmt: skip
    centres = np.array([m for m, _ in means])
    track[~is_mel] = np.array([c for _, c in means])[np.abs(out.pitch[~is_mel, None] - centres[None]).argmin(1)] \
        if len(classes) else 0
    return replace(out, track=track, programs=dict(source.programs)).merged(source.take(source.track == DRUMS))


def continued_instruments(new: Grid, prompt: Grid) -> Grid:
    """Bars written on the piano after `prompt`, given its pitched track classes by register
    (`restore_instruments`) and, in each new bar of its meter, the drums of its last bar."""
    last = prompt.n_bars - 1
    drums = prompt.take((prompt.track == DRUMS) & (prompt.bar == last))
    bars = np.flatnonzero(new.bar_positions == prompt.bar_positions[last])
    k = drums.n_notes
    looped = drums.take(np.tile(np.arange(k), len(bars)))
    looped = replace(looped, bar=np.repeat(bars, k))
    return restore_instruments(new, prompt.take(prompt.track != DRUMS).merged(looped), None)


def dynamics(out: Grid, config: TokenizerConfig, mel: Melody | None, arousal, lam: float) -> Grid:
    """`out` with its notes besides the melody (held already) moved as `toward_arousal` says:
    the whole piece's dynamics follow the target's arousal (one, or per bar), not the melody's
    alone."""
    rest = pitched(out)
    if mel is not None and len(mel):
        rest &= ~mel.notes_in(out)
    vel = out.vel.copy()
    level = np.broadcast_to(np.asarray(arousal, np.int64), (out.n_bars,))
    vel[rest] = _toward_arousal_by_bar(out.vel[rest], out.bar[rest], level, config, lam)
    return replace(out, vel=vel)


def gutted(out: Grid, source: Grid) -> str | None:
    """A warning when the output keeps under half the source's pitched notes per bar."""
    n_src, n_out = int(pitched(source).sum()), int(pitched(out).sum())
    if n_out == 0:
        return "the output has no notes"
    if n_out < 0.5 * n_src:
        return f"the output has {n_out} notes against the source's {n_src}: under half"
    return None


def retimed(view: Grid, config: TokenizerConfig, melody: Melody, step: np.ndarray, lam: float) -> Grid:
    """The source (its piano view, `held_source`) with its accompaniment, the notes besides
    `melody`, re-timed by lam in the bars where arousal changes (`step` per bar: 1 toward high, -1
    toward low, 0 none). Toward low, up to THIN of a bar's onsets are left out, each time the one
    closest after the one before it (a run thins, a syncopation stays), and the notes kept sound
    on to the bar's end, as under the pedal; toward high, up to DENSER as many chords as the bar
    has onsets are struck again half way (on the eighths) to the next onset, those with the
    longest gaps first. choice: 80 EMOPIA val clips made the other arousal at lambda 1 (two
    seeds) were told from real test clips in 0.59 of cases against 0.86 with the rhythm under
    the melody the model's, and judged the target arousal in 0.89 against 0.93; on one seed, the
    notes kept sounding only to the next onset kept, 0.61 and 0.78, and the onsets on the weakest
    beats left out instead (the rest more on the beat than real music), 0.80 and 0.70."""
    on, acc = view.onsets, ~melody.notes_in(view)
    starts, fit, eighth = view.bar_starts, config.fit_table, max(config.positions_per_quarter // 2, 1)
    longest = len(fit) - 1
    dur, keep, again = view.dur.copy(), np.ones(view.n_notes, bool), []  # again: (note, onset, duration bin)
    for t in np.flatnonzero(step).tolist():
        mine = acc & (view.bar == t)
        steps = np.unique(on[mine]).tolist()
        end = int(starts[t + 1])
        if step[t] < 0:
            for _ in range(int(round(lam * THIN * len(steps)))):
                if len(steps) < 2:
                    break
                steps.pop(int(np.diff(steps).argmin()) + 1)
            keep[mine & ~np.isin(on, steps)] = False
            for i in np.flatnonzero(mine & keep).tolist():
                dur[i] = max(dur[i], fit[min(end - on[i], longest)])
        else:
            gaps = np.diff(steps + [end])
            for k in np.argsort(-gaps, kind="stable")[: int(round(lam * DENSER * len(steps)))].tolist():
                half = gaps[k] // 2 // eighth * eighth
                if half == 0:
                    break
                for i in np.flatnonzero(mine & (on == steps[k])).tolist():
                    dur[i] = min(dur[i], fit[half])
                    again.append((i, steps[k] + half, min(view.dur[i], fit[min(gaps[k] - half, longest)])))
    out = replace(view, dur=dur).take(keep)
    if not again:
        return out
    note, at, length = (np.array(x, np.int64) for x in zip(*again))
    bar = np.searchsorted(starts, at, side="right") - 1
    return out.merged(replace(view.take(note), bar=bar, pos=at - starts[bar], dur=length.astype(view.dur.dtype)))
