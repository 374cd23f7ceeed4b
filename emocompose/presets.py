"""The defaults of the latent operations (and of hearing their results), as named presets: the one
place the CLI, the Python API and `evaluate` read them from. Light on purpose (no torch, no numpy), so `--help` can show them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingConfig:
    """How tokens are drawn from the decoder."""

    temperature: float = 1.0
    # a nucleus over the pitches only (`sampling.probabilities`): on the shipped model both realism
    # and valence came out better than with one over every token, which also cuts the tails of
    # rhythm and note length; none at all let stray pitches widen the range (README, "Latent operations")
    top_p: float = 0.95
    seed: int = 0


# composing from the prior
GENERATE = SamplingConfig(temperature=1.0, top_p=0.95)
# rewriting a piece (transform) samples as composing does. It sampled cooler (0.8, nucleus 0.9)
# on the thought that the piece's own latents already say much; measured on 160 EMOPIA val clips
# rewritten toward the opposite quadrant (two seeds, melody kept), the cooler draws wrote shorter
# notes, more onsets and fewer chords: the realism test told them from real `test` clips 0.96 /
# 0.95 / 0.90 of the time at lambda 1 / 0.5 / 0.25 against 0.92 / 0.93 / 0.86, and the judge heard
# the target at lambda 1 in 0.86 of them against 0.93.
TRANSFORM = GENERATE
# swap keeps the cooler draws: sampled as composing does, its outputs kept less of the key they
# take (evaluate's 32 pairs: key cosine to A after a rhythm swap 0.49 against 0.55, to B after a
# key swap 0.46 against 0.50)
SWAP = SamplingConfig(temperature=0.8, top_p=0.9)

BARS = 20  # bars per generated piece
# The share of onsets whose lowest note is below C3, in EMOPIA's labelled `train` clips (happy
# 0.279, tense 0.357, sad 0.176, calm 0.201): what `generate` holds each piece's left hand near (`bass`)
BASS_ONSETS = {"happy": 0.28, "tense": 0.36, "sad": 0.18, "calm": 0.20}
# The share of onsets whose highest note lies within a whole tone of the previous onset's, in the
# same clips (happy 0.298, tense 0.281, sad 0.268, calm 0.210): what `generate` holds each piece's
# top voice near (`top_voice`)
TOP_STEPS = {"happy": 0.30, "tense": 0.28, "sad": 0.27, "calm": 0.21}
# How much longer generated notes sound than the decoder reads them (`sampling.BarPlan.legato`).
# Mean log length in beats as heard, over 50 pieces a quadrant (happy / tense / sad / calm), against
# EMOPIA `train` clips' 0.04 / -0.09 / 0.51 / 0.59: -0.02 / -0.28 / 0.35 / 0.54 as drawn, 0.04 /
# -0.22 / 0.47 / 0.60 at 0.2, 0.06 / -0.19 / 0.53 / 0.63 at 0.3. At 0.2 happy, sad and calm notes
# sound within 0.04 of real ones; tense ones, 18% of them cut by a key struck again, stay shorter.
# Realism over six seed sets 0.677 (0.690 at 0.1, 0.680 at 0.3) against 0.707 (journal, session 27)
LEGATO = 0.2
ECHO = 0.15  # share of generated bars that repeat the onsets of the bar ECHO_BACK before (`echo`)
ECHO_BACK = 4
PROMPT_BARS = 8  # new bars after a prompt (`generate --prompt`)
# Correlation of one piece's bar latents when generating. Measured: in 40 EMOPIA val clips the
# bars' posterior means share 62% (z_r) and 66% (z_k) of their variance with their piece's mean.
COHERENCE = 0.6
# Pieces decoded per output, of which the one the model's own encoder hears as most like the
# target is kept (`--candidates`). Measured with evaluate's judge: best of 4 helped the step-3,000
# model (valence 0.68 -> 0.84, 32 pieces per emotion) but not the step-4,900 one (0.75 -> 0.62
# over 16 per emotion, benchmarks/candidates.py; 0.60 -> 0.65 over 10 in evaluate; transform
# 0.60 -> 0.58) and cost 3.2x the time, so one decoding is the default.
CANDIDATES = 1
# How far a generated piece strays from the key its z_k is centred on: the share of the prior's
# spread kept in the part of z_k its bars share (each bar moves around the piece at the prior's
# spread; z_r keeps all of it). Measured on evaluate's three seed sets of 100 pieces: at the
# prior's spread (1.0) the decoder landed on the key asked in 0.63-0.66 of pieces and its mode in
# 0.73-0.78, so the judge heard valence in 0.74-0.82; at 0.5, 0.86-0.93, 0.90-0.95 and 0.94-0.97
# (benchmarks/sampling_realism.py). Narrowing the bars' own moves too (before session 20) held the
# key a little more often (0.90-0.98 of pieces against 0.87-0.92, six seed sets) but made adjacent
# bars' harmony more alike than real music's (0.72 against 0.65), the realism test's first tell.
KEY_SPREAD = 0.5
# From this lambda on, a rewrite is in the target's mode: transform moves the melody into it and
# names the new key (below it the latents have not yet crossed half way, and the key is the source's).
MODE_LAMBDA = 0.5

# hearing a result (`audio`): CD rate, and the share of the mix sent through a small hall, since
# dry soundfont samples sound boxed-in
SAMPLE_RATE = 44_100
REVERB = 0.15
