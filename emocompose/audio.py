"""MIDI to audio: every track played with its General MIDI instrument from a SoundFont, mixed to
16-bit stereo PCM WAV. Pure numpy, so it needs no system library.

A note sounds as each zone of its instrument that covers its key and velocity: the zone's
sample read at the key's pitch (linear interpolation, looped while the key is held), shaped by
the volume envelope (delay, attack, hold, decay to sustain, release after the key lifts) and
panned. The sustain pedal holds notes until it lifts, as a piano's dampers do, and each track's
first volume and expression settings scale it. Each zone's waveform at a key, and its envelope,
is computed once and shared by every note on that key, so a piece renders about a hundred times
faster than it plays (`benchmarks/render_speed.py`).
"""

from __future__ import annotations

import io
import os
import wave
from dataclasses import dataclass

import numpy as np

from emocompose.errors import InputError, LimitError, UsageError, check_share
from emocompose.presets import REVERB
from emocompose.presets import SAMPLE_RATE as RATE
from emocompose.soundfont import DRUM_BANK, SoundFont, Zone

RATES = (8_000, 192_000)  # the sample rates accepted
HEADROOM = 2.0  # master gain; a mix that would clip is scaled down as a whole (`to_wav`)
SILENCE_CB = 600.0  # a voice 60 dB below its peak has ended (the RT60 of acoustics): inaudible under others
TAIL_S = 0.5  # silence left after the last note
ROOM_S = 1.2  # the room's reverberation time (to -60 dB), a small hall
LOOP_TABLE = 2048  # frames at least in the tiled table of a looped sample (`Renderer._wave`)
BLOCK = 1 << 16  # frames per block of the room's overlap-add convolution


@dataclass(frozen=True)
class Note:
    """One note to play, in seconds."""

    start: float
    end: float
    key: int
    velocity: int
    bank: int
    program: int
    gain: float  # the track's volume and expression


def notes_from_midi(data: bytes, name: str, empty_ok: bool = False) -> list[Note]:
    """The notes of MIDI bytes (checked ones: `midi.midi_bytes`) in seconds, with each track's
    instrument, the sustain pedal applied and the track's volume (CC 7) and expression (CC 11)
    taken from their first values."""
    from symusic import Score

    from emocompose.midi import limit

    try:
        score = Score.from_midi(data).to("second")
    except Exception as exc:  # symusic raises RuntimeError/ValueError with a C++ message
        raise InputError(f"unreadable MIDI: {(str(exc).splitlines() or [type(exc).__name__])[0][:200]}", name) from None
    notes = []
    for tr in score.tracks:
        arr = tr.notes.numpy()
        if not len(arr["time"]):
            continue
        start = arr["time"].astype(np.float64)
        end = start + np.maximum(arr["duration"].astype(np.float64), 0.01)
        end = _restruck(start, _pedal(end, tr.pedals.numpy()), arr["pitch"])
        ctl = tr.controls.numpy()
        gain = 1.0
        for number in (7, 11):
            values = ctl["value"][ctl["number"] == number]
            gain *= (int(values[0]) / 127) ** 2 if len(values) else 1.0
        bank = DRUM_BANK if tr.is_drum else 0  # a drum track's program picks its kit
        program = int(tr.program)
        notes += [Note(float(s), float(e), int(k), int(v), bank, program, gain)
                  for s, e, k, v in zip(start, end, arr["pitch"], arr["velocity"]) if v > 0]  # fmt: skip
    if not notes and not empty_ok:
        raise InputError("contains no notes to play", name)
    if len(notes) > limit("EMOCOMPOSE_MAX_NOTES"):
        raise LimitError(f"over {limit('EMOCOMPOSE_MAX_NOTES')} notes (raise the limit with EMOCOMPOSE_MAX_NOTES)", name)
    minutes = max((n.end for n in notes), default=0.0) / 60
    if minutes > limit("EMOCOMPOSE_MAX_AUDIO_MINUTES"):
        raise LimitError(f"{minutes:.0f} minutes long, over the audio limit of {limit('EMOCOMPOSE_MAX_AUDIO_MINUTES')} "
                         "(raise it with EMOCOMPOSE_MAX_AUDIO_MINUTES)", name)  # fmt: skip
    return notes


def _pedal(end: np.ndarray, pedals: dict) -> np.ndarray:
    """Note ends moved to the lifting of a sustain pedal that is down when the key is released."""
    if not len(pedals["time"]):
        return end
    down = pedals["time"].astype(np.float64)
    up = down + pedals["duration"].astype(np.float64)
    i = np.searchsorted(down, end, side="right") - 1  # the last pedal pressed before the release
    held = (i >= 0) & (end < up[np.maximum(i, 0)])
    return np.where(held, np.maximum(end, up[np.maximum(i, 0)]), end)


def _restruck(start: np.ndarray, end: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Note ends cut where the same key is struck again, as synthesizers (and a piano's hammer)
    do: overlapping notes on one key otherwise ring on for as long as the file forgets them."""
    order = np.lexsort((start, key))
    s, k = start[order], key[order]
    nxt = np.full(len(s), np.inf)
    same = (k[1:] == k[:-1]) & (s[1:] > s[:-1])
    nxt[:-1][same] = s[1:][same]
    out = end.copy()
    out[order] = np.minimum(end[order], nxt)
    return out


class Renderer:
    """Plays notes through one SoundFont at one sample rate."""

    def __init__(self, font: SoundFont, rate: int = RATE):
        if not RATES[0] <= rate <= RATES[1]:
            raise UsageError(f"sample rate must be {RATES[0]}..{RATES[1]} Hz, got {rate}")
        self.font, self.rate = font, rate

    def render(self, notes: list[Note]) -> np.ndarray:
        """Stereo float32 audio, shape (samples, 2)."""
        played = [(n, self.font.zones(n.bank, n.program, n.key, n.velocity)) for n in notes]
        played = [(n, zs) for n, zs in played if zs]
        spans = [[self._span(n, z) for z in zs] for n, zs in played]
        ends = [int(n.start * self.rate) + max(t for _, t in sp) for (n, _), sp in zip(played, spans)]
        out = np.zeros((2, max(ends, default=0) + int(TAIL_S * self.rate)), np.float32)
        # how far each (zone, key) is read and held, and each zone released, over the whole piece
        need_wave: dict[tuple[int, int], int] = {}
        need_on: dict[tuple[int, int], int] = {}
        need_release: dict[int, int] = {}
        zones = {}
        for (n, zs), sp in zip(played, spans):
            for z, (held, total) in zip(zs, sp):
                k = (z.uid, n.key)
                zones[z.uid] = z
                need_wave[k] = max(need_wave.get(k, 0), total)
                need_on[k] = max(need_on.get(k, 0), held)
                need_release[z.uid] = max(need_release.get(z.uid, 0), total - held)
        waves = {k: self._wave(zones[k[0]], k[1], n) for k, n in need_wave.items()}
        on = {k: self._on_envelope(zones[k[0]], k[1], n) for k, n in need_on.items()}
        release = {k: self._release(zones[k], n) for k, n in need_release.items()}
        # notes that sound alike (the same zones, key and length: real music repeats them, layered
        # instruments sound several zones a note) are mixed once and added in at each onset
        alike = lambda i: (tuple(z.uid for z in played[i][1]), played[i][0].key, spans[i])
        last = sound = None
        for i in sorted(range(len(played)), key=alike):
            if alike(i) != last:
                last, sound = alike(i), _mix(*played[i], spans[i], waves, on, release)
            n = played[i][0]
            level = HEADROOM * n.gain * (n.velocity / 127) ** 2  # the spec's default velocity curve
            at = int(n.start * self.rate)
            out[:, at : at + sound.shape[1]] += sound * level
        return np.ascontiguousarray(out.T)

    def _span(self, note: Note, zone: Zone) -> tuple[int, int]:
        """Samples the key is held, and samples the voice is audible: to the end of its
        release, of a one-shot sample, or of a decay that falls to silence while held."""
        held = max(int((note.end - note.start) * self.rate), 1)
        total = held + int(zone.release * SILENCE_CB / 1000 * self.rate)
        if zone.loop is None:
            total = min(total, int((zone.end - zone.start) / self._step(zone, note.key)))
        if zone.sustain_cb >= SILENCE_CB:
            hold_s, decay_s = zone.envelope_times(note.key)
            silent = zone.delay + zone.attack + hold_s + decay_s * SILENCE_CB / 1000
            total = min(total, int(silent * self.rate))
        total = max(total, 1)
        return max(min(held, total), 1), total

    def _step(self, zone: Zone, key: int) -> float:
        """Sample frames advanced per output frame."""
        cents = (key - zone.root) * zone.scale + zone.cents
        return 2.0 ** (cents / 1200.0) * zone.rate / self.rate

    def _wave(self, zone: Zone, key: int, total: int) -> np.ndarray:
        """The zone's sample read at `key`'s pitch for `total` output frames. A looped sample,
        past its loop end, repeats the loop: one table of whole loops is read and tiled, its
        length rounded to whole frames (which retunes it by under half a cent)."""
        step = self._step(zone, key)
        seg = self.font.data[zone.start : zone.end + 1]
        if zone.loop is None:
            return _read(seg, np.minimum(np.arange(total) * step, len(seg) - 1.0))
        ls, le = zone.loop[0] - zone.start, zone.loop[1] - zone.start
        j0 = min(total, int(np.ceil(le / step)))  # the first frame at or past the loop end
        head = _read(seg, np.arange(j0) * step)
        if j0 == total:
            return head
        length = le - ls
        loops = int(np.ceil(LOOP_TABLE * step / length))
        n = int(round(loops * length / step))
        phase = (j0 * step - ls) % length + np.arange(n) * (loops * length / n)
        table = _read(seg, ls + np.mod(phase, length))
        return np.concatenate([head, np.resize(table, total - j0)])

    def _on_envelope(self, zone: Zone, key: int, n: int) -> np.ndarray:
        """Gain per sample while the key is held: silent through the delay, a linear attack, the
        hold, then a decay of 100 dB per decay time (linear in decibels) to the sustain level.
        Built piece by piece, so a sustaining instrument costs little beyond the array."""
        hold_s, decay_s = zone.envelope_times(key)
        r = self.rate
        d, a = int(zone.delay * r), int((zone.delay + zone.attack) * r)
        h = int((zone.delay + zone.attack + hold_s) * r)
        s = h + int(zone.sustain_cb / 1000 * decay_s * r)  # where the decay reaches the sustain level
        env = np.empty(n, np.float32)
        env[:d] = 0.0
        env[d:a] = np.arange(max(min(a, n) - d, 0), dtype=np.float32) / max(a - d, 1)
        env[a:h] = 1.0
        decay = np.arange(max(min(s, n) - h, 0), dtype=np.float32) * (1000.0 / max(decay_s * r, 1e-3))
        env[h:s] = np.power(10.0, -decay / 200.0, dtype=np.float32)
        env[s:] = 10.0 ** (-zone.sustain_cb / 200.0)
        return env

    def _release(self, zone: Zone, n: int) -> np.ndarray:
        """Gain per sample after the key lifts, relative to where the envelope stood: 100 dB
        per release time."""
        t = np.arange(n, dtype=np.float32) / self.rate
        return np.power(10.0, -t * (1000.0 / max(zone.release, 1e-3)) / 200.0, dtype=np.float32)


def reverb(audio: np.ndarray, rate: int, wet: float = REVERB) -> np.ndarray:
    """The mix in a room: convolved with an impulse response of exponentially decaying noise,
    different in each ear (a fixed seed, so the same input gives the same bytes), and `wet` of
    it added to the dry sound. Overlap-add in blocks keeps the memory to a few blocks."""
    if wet <= 0:
        return audio
    n_ir = int(ROOM_S * rate)
    t = np.arange(n_ir) / rate
    ir = np.random.default_rng(0).standard_normal((n_ir, 2)) * np.power(10.0, -3 * t / ROOM_S)[:, None]
    ir[: int(0.01 * rate)] = 0  # the first reflections arrive after 10 ms
    ir /= np.sqrt((ir**2).sum(axis=0))  # unit energy: the room neither louder nor softer than the dry sound
    size = 1 << int(np.ceil(np.log2(BLOCK + n_ir)))
    spectrum = np.fft.rfft(ir, size, axis=0)
    out = np.zeros((len(audio) + n_ir, 2), np.float32)
    for at in range(0, len(audio), BLOCK):
        block = np.fft.irfft(np.fft.rfft(audio[at : at + BLOCK], size, axis=0) * spectrum, size, axis=0)
        k = min(size, len(out) - at)
        out[at : at + k] += block[:k]
    out *= wet
    out[: len(audio)] += (1 - wet) * audio
    return out


def _mix(note: Note, zones: tuple[Zone, ...], spans: list[tuple[int, int]], waves: dict, on: dict,
         release: dict) -> np.ndarray:  # fmt: skip
    """(2, samples): a note's zones at unit velocity, each at its gain and panned (equal power),
    from the waveforms and envelopes `Renderer.render` made for the piece."""
    sound = np.zeros((2, max(t for _, t in spans)), np.float32)
    for z, (held, total) in zip(zones, spans):
        k = (z.uid, note.key)
        voice = waves[k][:total] * z.gain
        voice[:held] *= on[k][:held]
        if total > held:
            voice[held:] *= on[k][held - 1] * release[z.uid][: total - held]
        for channel, side in enumerate((np.sqrt(0.5 - z.pan), np.sqrt(0.5 + z.pan))):
            if side > 0:  # stereo samples come as zone pairs panned hard left and right
                sound[channel, :total] += voice * side
    return sound


def _read(seg: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """`seg` at fractional positions, by linear interpolation."""
    i = pos.astype(np.int32)
    frac = (pos - i).astype(np.float32)
    lo, hi = seg[i], seg[np.minimum(i + 1, len(seg) - 1)]
    hi -= lo
    hi *= frac
    hi += lo
    return hi


def to_wav(audio: np.ndarray, rate: int) -> bytes:
    """16-bit PCM stereo WAV bytes; a mix that would clip is scaled down to fit."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0.99:
        audio = audio * (0.99 / peak)
    pcm = np.round(audio * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def load_font(path: str | None) -> SoundFont:
    """The soundfont at `path`, or the default General MIDI one."""
    from emocompose.soundfont import default_soundfont

    return SoundFont(path or default_soundfont())


class AudioOut:
    """WAV copies of a command's MIDI outputs (`--audio`), named as the MIDI with .wav. The
    soundfont is read when this is made, so a bad one fails before any decoding."""

    def __init__(self, out: str | None, many: bool, soundfont: str | None = None, rate: int = RATE,
                 room: float = REVERB):  # fmt: skip
        from emocompose.outputs import Destination

        check_share("reverb", room)
        self.dest = Destination(out, many=many)
        self.renderer = Renderer(load_font(soundfont), rate)
        self.room = room

    def write(self, name: str, midi: bytes, source: str | None = None) -> tuple[str, float]:
        """Render `midi` (read from the file `source`, named in errors; None: a result of ours, which
        may be silent) to the output `name` with .wav; returns where it went and the seconds of audio."""
        notes = notes_from_midi(midi, source or name, empty_ok=source is None)
        audio = reverb(self.renderer.render(notes), self.renderer.rate, self.room)
        path = self.dest.write(os.path.splitext(name)[0] + ".wav", to_wav(audio, self.renderer.rate))
        return path, len(audio) / self.renderer.rate
