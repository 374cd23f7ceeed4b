"""The emotions: Russell's quadrants of arousal and valence (model.md section 1).

The one home of their names, their order (Q1..Q4), their levels and the axis names, so that
"opposite", "quadrant 3" and "the valence axis" mean the same thing everywhere.
"""

from __future__ import annotations

from emocompose.errors import UsageError

# arousal is carried by z_r (rhythm), valence by z_k (key)
AXES = ("arousal", "valence")
# name -> (arousal, valence), 1 = high, in quadrant order: happy is Q1, ..., calm is Q4
EMOTIONS = {"happy": (1, 1), "tense": (1, 0), "sad": (0, 0), "calm": (0, 1)}
NAMES = tuple(EMOTIONS)


def quadrant(name: str) -> str:
    """'Q1'..'Q4' for an emotion name."""
    return f"Q{NAMES.index(name) + 1}"


def from_quadrant(number: int) -> tuple[int, int]:
    """(arousal, valence) of quadrant 1..4."""
    if not 1 <= number <= 4:
        raise ValueError(f"no quadrant {number}")
    return EMOTIONS[NAMES[number - 1]]


def emotion_of(arousal: int, valence: int) -> str:
    return next(k for k, v in EMOTIONS.items() if v == (arousal, valence))


def index_of(arousal: int, valence: int) -> int:
    """0..3, the position of the quadrant of (arousal, valence) in NAMES."""
    return NAMES.index(emotion_of(arousal, valence))


def heard(q: dict) -> str:
    """The emotion a q(y|x) ({'arousal': [p_low, p_high], 'valence': [...]}) gives most weight."""
    return emotion_of(int(q["arousal"][1] >= 0.5), int(q["valence"][1] >= 0.5))


def flipped(name: str, across: tuple[int, int]) -> str:
    """The emotion with the levels `across` (arousal, valence; 1: flip it) flipped."""
    a, v = EMOTIONS[name]
    return emotion_of(a ^ across[0], v ^ across[1])


def opposite(name: str) -> str:
    """The emotion with both levels flipped (happy <-> sad, tense <-> calm)."""
    return flipped(name, (1, 1))


def parse_emotion(name: str) -> str:
    """The emotion's name from a name or a quadrant (any case): 'Sad', 'q3' -> 'sad'."""
    key = name.strip().lower()
    if key[:1] == "q" and key[1:] in ("1", "2", "3", "4"):
        key = NAMES[int(key[1:]) - 1]
    if key not in EMOTIONS:
        raise UsageError(f"unknown emotion {name!r}; choose happy, tense, sad or calm (or Q1-Q4)")
    return key


def levels(name: str) -> tuple[float, float]:
    """The emotion as a point in [-1, 1]^2 (arousal, valence): -1 low, 1 high."""
    a, v = EMOTIONS[parse_emotion(name)]
    return 2.0 * a - 1, 2.0 * v - 1
