"""SoundFont 2 files read into what `audio` plays: for a bank, program, key and velocity, the
zones that sound, each with its sample, loop, tuning, level, pan and volume envelope.

Follows the SoundFont 2.04 specification (E-mu/Creative, 2006): a RIFF file whose `sdta` list
holds 16-bit samples and whose `pdta` list holds presets -> instruments -> samples, each level
a list of zones of generators. Left out, as small sound-fonts barely use them: modulators
beyond the default velocity curve, filters, LFOs, the modulation envelope, chorus and reverb
sends. Compressed SF3 fonts are refused with a reason.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from emocompose.errors import InputError

# generator numbers (SF2.04 section 8.1.2)
START, END, LOOP_START, LOOP_END, START_COARSE = 0, 1, 2, 3, 4
END_COARSE, PAN, DELAY, ATTACK, HOLD, DECAY, SUSTAIN, RELEASE = 12, 17, 33, 34, 35, 36, 37, 38
KEY_TO_HOLD, KEY_TO_DECAY, INSTRUMENT, KEY_RANGE, VEL_RANGE = 39, 40, 41, 43, 44
LOOP_START_COARSE, ATTENUATION, LOOP_END_COARSE, COARSE_TUNE, FINE_TUNE = 45, 48, 50, 51, 52
SAMPLE_ID, SAMPLE_MODES, SCALE_TUNING, ROOT_KEY = 53, 54, 56, 58
RANGES = (KEY_RANGE, VEL_RANGE)
# generators a preset zone adds to its instrument's value; the others belong to instruments only
NOT_ADDITIVE = {START, END, LOOP_START, LOOP_END, START_COARSE, END_COARSE, LOOP_START_COARSE, LOOP_END_COARSE,
                INSTRUMENT, SAMPLE_ID, SAMPLE_MODES, ROOT_KEY, 46, 47, 57, *RANGES}  # fmt: skip
DEFAULTS = {DELAY: -12000, ATTACK: -12000, HOLD: -12000, DECAY: -12000, RELEASE: -12000, SCALE_TUNING: 100,
            ROOT_KEY: -1}  # fmt: skip
MAX_RELEASE_S = 3.0  # a tail longer than this is inaudible under the next notes and costs time
# the spec's E-mu hardware attenuated by 0.4 of the nominal centibels; fonts are voiced for it
ATTENUATION_SCALE = 0.4
DRUM_BANK = 128


@dataclass(frozen=True)
class Zone:
    """One sample as it sounds for a range of keys and velocities."""

    uid: int  # unique within its SoundFont, in the order zones were first asked for
    keys: tuple[int, int]
    vels: tuple[int, int]
    start: int  # offsets into SoundFont.data
    end: int
    loop: tuple[int, int] | None  # (start, end) while the key is held, None: played once
    rate: int  # the sample's own rate
    root: int  # the key at which the sample sounds at its recorded pitch
    cents: float  # tuning on top of the key's (coarse, fine, the sample's correction)
    scale: float  # cents per key (100: an equal-tempered semitone)
    gain: float  # linear, from the initial attenuation
    pan: float  # -0.5 (left) .. 0.5 (right)
    delay: float  # volume envelope, seconds
    attack: float
    hold: float
    decay: float
    sustain_cb: float  # attenuation held while the key stays down, centibels
    release: float
    key_to_hold: float  # timecents per key below 60 (high keys hold and decay for less)
    key_to_decay: float

    def envelope_times(self, key: int) -> tuple[float, float]:
        """Hold and decay in seconds for `key`."""
        return (self.hold * 2 ** (self.key_to_hold * (60 - key) / 1200),
                self.decay * 2 ** (self.key_to_decay * (60 - key) / 1200))  # fmt: skip


def _seconds(timecents: int) -> float:
    return 0.0 if timecents <= -12000 else 2.0 ** (timecents / 1200.0)


def _chunks(data: bytes, start: int, end: int, name: str) -> dict[str, tuple[int, int]]:
    """The sub-chunks (id -> byte span) between start and end; LIST chunks by their list type."""
    found, pos = {}, start
    while pos + 8 <= end:
        cid, size = struct.unpack_from("<4sI", data, pos)
        body = pos + 8
        if body + size > end:
            raise InputError(f"broken SoundFont: chunk {cid!r} runs past the file's end", name)
        key = cid.decode("latin-1")
        if key == "LIST":
            key = data[body : body + 4].decode("latin-1")
            found[key] = (body + 4, body + size)
        else:
            found[key] = (body, body + size)
        pos = body + size + (size & 1)
    return found


def _records(data: bytes, span: tuple[int, int], fmt: str, name: str, what: str) -> list[tuple]:
    size = struct.calcsize(fmt)
    start, end = span
    if (end - start) % size or end - start < size:
        raise InputError(f"broken SoundFont: its {what} table has a partial record", name)
    return [struct.unpack_from(fmt, data, p) for p in range(start, end, size)]


def _zones(bags: list[tuple], gens: list[tuple], first: int, last: int, terminal: int) -> tuple[dict, list[dict]]:
    """The global zone's generators and each local zone's, for bags first..last-1. A zone
    without the terminal generator (instrument or sample) is global only if it comes first."""
    glob, local = {}, []
    for b in range(first, last):
        zone = dict(gens[bags[b][0] : bags[b + 1][0]])  # oper -> amount, the last one winning
        if terminal in zone:
            local.append(zone)
        elif b == first:
            glob = zone
    return glob, local


def _signed(raw: int) -> int:
    return raw - 65536 if raw >= 32768 else raw


def _range(raw: int) -> tuple[int, int]:
    return raw & 0xFF, raw >> 8


class SoundFont:
    """An SF2 file in memory: samples as float32 in [-1, 1] and the preset table."""

    def __init__(self, path: str | Path):
        self.name = name = str(path)
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise InputError("no such soundfont", name) from None
        except OSError as exc:
            raise InputError(f"cannot read the soundfont: {exc.strerror}", name) from None
        if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"sfbk":
            raise InputError("not a SoundFont 2 file (no RIFF sfbk header)", name)
        top = _chunks(data, 12, min(len(data), 8 + struct.unpack_from("<I", data, 4)[0]), name)
        if "sdta" not in top or "pdta" not in top:
            raise InputError("broken SoundFont: no sample or preset data", name)
        sdta = _chunks(data, *top["sdta"], name)
        pdta = _chunks(data, *top["pdta"], name)
        ifil = _chunks(data, *top.get("INFO", (0, 0)), name).get("ifil")
        if ifil and struct.unpack_from("<H", data, ifil[0])[0] >= 3:
            raise InputError("an SF3 (compressed) soundfont; give an SF2 file", name)
        if "smpl" not in sdta or any(k not in pdta for k in ("phdr", "pbag", "pgen", "inst", "ibag", "igen", "shdr")):
            raise InputError("broken SoundFont: a table of the preset data is missing", name)
        s0, s1 = sdta["smpl"]
        self.data = (np.frombuffer(data, "<i2", (s1 - s0) // 2, s0).astype(np.float32) / 32768.0)
        read = lambda key, fmt: _records(data, pdta[key], fmt, name, key)
        phdr, pbag, pgen = read("phdr", "<20sHHHIII"), read("pbag", "<HH"), read("pgen", "<HH")
        inst, ibag, igen = read("inst", "<20sH"), read("ibag", "<HH"), read("igen", "<HH")
        self._shdr = read("shdr", "<20sIIIIIBbHH")
        self._inst = [_zones(ibag, igen, inst[i][1], inst[i + 1][1], SAMPLE_ID) for i in range(len(inst) - 1)]
        self._presets: dict[tuple[int, int], tuple[dict, list[dict]]] = {}
        for i in range(len(phdr) - 1):  # the last record is the terminal "EOP"
            _, program, bank, bag = phdr[i][:4]
            self._presets.setdefault((bank, program), _zones(pbag, pgen, bag, phdr[i + 1][3], INSTRUMENT))
        if not self._presets:
            raise InputError("the soundfont has no presets", name)
        self._made: dict[tuple, Zone] = {}
        self.zones = lru_cache(maxsize=None)(self._find)

    def preset_for(self, bank: int, program: int) -> tuple[int, int]:
        """The preset that plays (bank, program): itself, else the bank's first program
        (a drum kit missing from the font: its standard kit), else the first preset."""
        if (bank, program) in self._presets:
            return bank, program
        same_bank = sorted(p for p in self._presets if p[0] == bank)
        return same_bank[0] if same_bank else min(self._presets)

    def _find(self, bank: int, program: int, key: int, vel: int) -> tuple[Zone, ...]:
        """Every zone that sounds when `key` is struck at `vel` on (bank, program)."""
        preset = self.preset_for(bank, program)
        pglob, plocal = self._presets[preset]
        out = []
        for i, pz in enumerate(plocal):
            pz = {**pglob, **pz}
            if not _inside(pz, key, vel) or pz[INSTRUMENT] >= len(self._inst):
                continue
            iglob, ilocal = self._inst[pz[INSTRUMENT]]
            for j, iz in enumerate(ilocal):
                iz = {**iglob, **iz}
                if _inside(iz, key, vel) and iz[SAMPLE_ID] < len(self._shdr) - 1:
                    # one object per zone, whatever key and velocity found it: `audio` shares work by it
                    if (preset, i, j) not in self._made:
                        self._made[(preset, i, j)] = self._zone(len(self._made), pz, iz)
                    out.append(self._made[(preset, i, j)])
        return tuple(out)

    def _zone(self, uid: int, pz: dict, iz: dict) -> Zone:
        def gen(op: int) -> int:
            value = _signed(iz.get(op, DEFAULTS.get(op, 0))) if op not in RANGES else 0
            return value + (_signed(pz[op]) if op in pz and op not in NOT_ADDITIVE else 0)

        _, start, end, ls, le, rate, orig, corr, _, _ = self._shdr[iz[SAMPLE_ID]]
        start += gen(START) + 32768 * gen(START_COARSE)
        end += gen(END) + 32768 * gen(END_COARSE)
        ls += gen(LOOP_START) + 32768 * gen(LOOP_START_COARSE)
        le += gen(LOOP_END) + 32768 * gen(LOOP_END_COARSE)
        n = len(self.data)
        start, end = min(max(start, 0), n - 1), min(max(end, 1), n)
        loops = gen(SAMPLE_MODES) & 1 and start <= ls < le <= end and le - ls >= 2
        root = gen(ROOT_KEY)
        return Zone(
            uid=uid, keys=_intersect(pz, iz, KEY_RANGE), vels=_intersect(pz, iz, VEL_RANGE),
            start=start, end=max(end, start + 1), loop=(ls, le) if loops else None, rate=max(int(rate), 1),
            root=root if 0 <= root <= 127 else (orig if orig <= 127 else 60),
            cents=gen(COARSE_TUNE) * 100 + gen(FINE_TUNE) + corr, scale=gen(SCALE_TUNING),
            gain=10 ** (-ATTENUATION_SCALE * max(gen(ATTENUATION), 0) / 200),
            pan=min(max(gen(PAN), -500), 500) / 1000,
            delay=_seconds(gen(DELAY)), attack=_seconds(gen(ATTACK)), hold=_seconds(gen(HOLD)),
            decay=_seconds(gen(DECAY)), sustain_cb=min(max(gen(SUSTAIN), 0), 1440),
            release=min(_seconds(gen(RELEASE)), MAX_RELEASE_S),
            key_to_hold=gen(KEY_TO_HOLD), key_to_decay=gen(KEY_TO_DECAY),
        )  # fmt: skip


def _inside(zone: dict, key: int, vel: int) -> bool:
    klo, khi = _range(zone.get(KEY_RANGE, 0x7F00))
    vlo, vhi = _range(zone.get(VEL_RANGE, 0x7F00))
    return klo <= key <= khi and vlo <= vel <= vhi


def _intersect(pz: dict, iz: dict, op: int) -> tuple[int, int]:
    (a, b), (c, d) = _range(pz.get(op, 0x7F00)), _range(iz.get(op, 0x7F00))
    return max(a, c), min(b, d)


def default_soundfont() -> Path:
    """The General MIDI font that ships inside pretty_midi's wheel (TimGM6mb, by Tim Brechbill,
    GPL 2: played, not bundled with emocompose)."""
    import importlib.util

    spec = importlib.util.find_spec("pretty_midi")
    path = Path(spec.origin).parent / "TimGM6mb.sf2" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise InputError("no soundfont: install pretty_midi (it carries TimGM6mb.sf2) or give --soundfont PATH")
    return path
