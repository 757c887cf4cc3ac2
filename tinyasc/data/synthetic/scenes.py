"""Scene recipes of the synthetic dataset: which sources make each of the ten TAU scenes.

A recipe is a table with one row per source: the probability that a recording contains it, its
level range (dB RMS, full scale) and the ranges of its parameters. A recording (one place and
time) draws its rows and parameters once, so its segments share a character; the draws, not the
source list, separate most classes, and the rows overlap on purpose (metro / tram / metro_station
share railway sounds, the squares and streets share people and traffic, the halls share voices).
The space sets the room: reverberation time and how much reverberation reaches the device.
"""
from __future__ import annotations

import numpy as np

from tinyasc.data.synthetic import sources as src
from tinyasc.data.synthetic.dsp import F32, band_gain, rfft_freqs, tilt_gain

SPACES = {  # rt60: reverberation time (s); wet: reverberant / direct amplitude
    "open": dict(rt60=(0.15, 0.5), wet=(0.0, 0.15)),
    "street": dict(rt60=(0.3, 0.9), wet=(0.05, 0.3)),
    "cabin": dict(rt60=(0.15, 0.5), wet=(0.15, 0.45)),
    "tunnel": dict(rt60=(0.3, 0.9), wet=(0.2, 0.5)),
    "mall": dict(rt60=(0.7, 1.6), wet=(0.4, 0.9)),
    "station": dict(rt60=(1.0, 2.2), wet=(0.4, 1.0)),
    "terminal": dict(rt60=(1.4, 3.0), wet=(0.5, 1.0)),
}

SCENES = {
    "airport": dict(space="terminal", rows=[
        # source           p     level dB      parameters
        ("background",   1.0, (-46, -38), dict(slope=(-5.0, -2.0))),
        ("hum",          0.8, (-50, -40), dict(f0=(45.0, 120.0))),
        ("babble",       1.0, (-40, -30), dict(talkers=(6, 30))),
        ("talker",       0.5, (-40, -28), dict(f0=(90.0, 230.0))),
        ("footsteps",    0.7, (-46, -34), dict(walkers=(1, 4), hardness=(0.3, 0.9))),
        ("suitcase",     0.85, (-44, -32), dict(count=(1, 4))),
        ("chime",        0.25, (-40, -30), dict(pitch=(500.0, 1000.0))),
        ("announcement", 0.35, (-38, -28), dict(seconds=(3.0, 6.0))),
        ("jet",          0.2, (-48, -38), dict(rise=[True, False])),
    ]),
    "bus": dict(space="cabin", rows=[
        ("background",   1.0, (-44, -36), dict(slope=(-7.0, -4.0))),
        ("engine",       1.0, (-34, -24), dict(f0=(22.0, 50.0), rev=(0.05, 0.3), rough=(0.2, 0.8))),
        ("rattle",       0.7, (-46, -36), dict(rate=(15.0, 60.0), brightness=(1500.0, 5000.0))),
        ("talker",       0.5, (-40, -30), dict(f0=(90.0, 230.0))),
        ("babble",       0.4, (-44, -36), dict(talkers=(2, 8))),
        ("traffic",      0.5, (-44, -34), dict(rate=(0.1, 0.6), distance=(6.0, 20.0))),
        ("beeps",        0.2, (-42, -32), dict(pitch=(800.0, 2500.0))),
        ("hiss",         0.2, (-44, -34), dict(rate=(0.1, 0.3))),
    ]),
    "metro": dict(space="tunnel", rows=[
        ("background",   1.0, (-42, -32), dict(slope=(-6.0, -3.0))),
        ("railway",      1.0, (-30, -20), dict(kind="metro", scenario=["cruise", "cruise", "start", "stop"])),
        ("squeal",       0.3, (-44, -32), dict(pitch=(2000.0, 6000.0))),
        ("talker",       0.4, (-40, -30), dict(f0=(90.0, 230.0))),
        ("babble",       0.5, (-44, -34), dict(talkers=(3, 10))),
        ("beeps",        0.3, (-42, -32), dict(pitch=(800.0, 2500.0))),
        ("announcement", 0.2, (-40, -30), dict(seconds=(2.0, 4.0))),
    ]),
    "metro_station": dict(space="station", rows=[
        ("background",   1.0, (-46, -38), dict(slope=(-5.0, -2.0))),
        ("hum",          0.6, (-50, -40), dict(f0=(45.0, 120.0))),
        ("platform_train", 0.8, (-36, -24), dict(scenario=["start", "stop"])),
        ("babble",       1.0, (-42, -32), dict(talkers=(4, 20))),
        ("footsteps",    0.8, (-44, -34), dict(walkers=(1, 5), hardness=(0.3, 0.9))),
        ("chime",        0.3, (-40, -30), dict(pitch=(500.0, 1000.0))),
        ("announcement", 0.35, (-38, -28), dict(seconds=(3.0, 6.0))),
        ("squeal",       0.2, (-46, -34), dict(pitch=(2000.0, 6000.0))),
        ("beeps",        0.3, (-44, -34), dict(pitch=(800.0, 2500.0))),
    ]),
    "park": dict(space="open", rows=[
        ("background",   1.0, (-52, -42), dict(slope=(-8.0, -4.0))),
        ("distant_traffic", 0.8, (-48, -36), dict(cutoff=(200.0, 600.0))),
        ("birds",        0.85, (-46, -32), dict(species=(1, 4), rate=(0.3, 2.0))),
        ("wind",         0.5, (-48, -34), dict(cutoff=(80.0, 250.0), gust=(0.4, 1.2))),
        ("leaves",       0.5, (-50, -38), dict(low=(1000.0, 3000.0))),
        ("talker",       0.3, (-46, -34), dict(f0=(90.0, 230.0))),
        ("children",     0.3, (-46, -34), dict()),
        ("footsteps",    0.3, (-50, -40), dict(walkers=(1, 2), hardness=(0.05, 0.4))),
        ("water",        0.15, (-48, -38), dict(centre=(800.0, 3000.0))),
    ]),
    "public_square": dict(space="open", rows=[
        ("background",   1.0, (-46, -38), dict(slope=(-6.0, -3.0))),
        ("distant_traffic", 1.0, (-44, -34), dict(cutoff=(250.0, 700.0))),
        ("babble",       0.9, (-42, -32), dict(talkers=(5, 25))),
        ("talker",       0.6, (-42, -30), dict(f0=(90.0, 230.0))),
        ("footsteps",    0.8, (-46, -34), dict(walkers=(1, 4), hardness=(0.2, 0.8))),
        ("birds",        0.5, (-48, -36), dict(species=(1, 2), rate=(0.2, 1.0))),
        ("water",        0.4, (-46, -36), dict(centre=(800.0, 3000.0))),
        ("children",     0.3, (-46, -34), dict()),
        ("traffic",      0.15, (-46, -36), dict(rate=(0.05, 0.2), distance=(15.0, 30.0))),
        ("wind",         0.3, (-50, -38), dict(cutoff=(80.0, 250.0), gust=(0.4, 1.2))),
    ]),
    "shopping_mall": dict(space="mall", rows=[
        ("background",   1.0, (-46, -38), dict(slope=(-5.0, -2.0))),
        ("hum",          0.7, (-50, -40), dict(f0=(45.0, 120.0))),
        ("babble",       1.0, (-40, -30), dict(talkers=(10, 40))),
        ("talker",       0.6, (-40, -28), dict(f0=(90.0, 230.0))),
        ("music",        0.8, (-44, -32), dict(tempo=(85.0, 130.0), brightness=(1.2, 2.5))),
        ("footsteps",    0.7, (-46, -34), dict(walkers=(1, 4), hardness=(0.2, 0.9))),
        ("children",     0.3, (-46, -34), dict()),
        ("chime",        0.1, (-42, -32), dict(pitch=(500.0, 1000.0))),
        ("suitcase",     0.15, (-46, -36), dict(count=(1, 2))),
    ]),
    "street_pedestrian": dict(space="street", rows=[
        ("background",   1.0, (-46, -38), dict(slope=(-6.0, -3.0))),
        ("distant_traffic", 1.0, (-42, -32), dict(cutoff=(250.0, 800.0))),
        ("traffic",      0.8, (-40, -30), dict(rate=(0.1, 0.4), distance=(5.0, 15.0))),
        ("babble",       0.8, (-42, -32), dict(talkers=(3, 15))),
        ("talker",       0.7, (-42, -30), dict(f0=(90.0, 230.0))),
        ("footsteps",    0.9, (-44, -32), dict(walkers=(1, 5), hardness=(0.2, 0.9))),
        ("suitcase",     0.2, (-46, -36), dict(count=(1, 2))),
        ("birds",        0.2, (-50, -38), dict(species=(1, 2), rate=(0.2, 1.0))),
        ("horn",         0.1, (-42, -32), dict(pitch=(350.0, 500.0))),
        ("music",        0.1, (-48, -38), dict(tempo=(85.0, 130.0), brightness=(1.2, 2.5))),
    ]),
    "street_traffic": dict(space="open", rows=[
        ("background",   1.0, (-44, -34), dict(slope=(-6.0, -3.0))),
        ("distant_traffic", 1.0, (-40, -30), dict(cutoff=(300.0, 900.0))),
        ("traffic",      1.0, (-32, -22), dict(rate=(0.3, 1.5), distance=(4.0, 15.0))),
        ("engine",       0.3, (-38, -28), dict(f0=(22.0, 50.0), rev=(0.05, 0.2), rough=(0.2, 0.8))),
        ("horn",         0.25, (-40, -30), dict(pitch=(350.0, 500.0))),
        ("talker",       0.2, (-46, -34), dict(f0=(90.0, 230.0))),
        ("footsteps",    0.3, (-48, -38), dict(walkers=(1, 2), hardness=(0.2, 0.8))),
        ("birds",        0.1, (-50, -40), dict(species=(1, 2), rate=(0.2, 1.0))),
        ("wind",         0.3, (-48, -36), dict(cutoff=(80.0, 250.0), gust=(0.4, 1.2))),
    ]),
    "tram": dict(space="cabin", rows=[
        ("background",   1.0, (-44, -36), dict(slope=(-6.0, -3.0))),
        ("railway",      1.0, (-34, -24), dict(kind="tram", scenario=["cruise", "start", "stop", "dwell"])),
        ("traffic",      0.6, (-44, -34), dict(rate=(0.1, 0.6), distance=(6.0, 20.0))),
        ("bell",         0.3, (-42, -32), dict(pitch=(700.0, 1400.0))),
        ("squeal",       0.3, (-44, -32), dict(pitch=(2000.0, 6000.0))),
        ("beeps",        0.3, (-42, -32), dict(pitch=(800.0, 2500.0))),
        ("talker",       0.5, (-40, -30), dict(f0=(90.0, 230.0))),
        ("babble",       0.4, (-44, -34), dict(talkers=(2, 10))),
    ]),
}
SCENE_LABELS = tuple(sorted(SCENES))

SOURCES = {name: getattr(src, name) for rows in SCENES.values() for name, *_ in rows["rows"]}


def draw(rng, value):
    """One draw from a recipe entry: (lo, hi) floats -> uniform, (lo, hi) ints -> integer in
    [lo, hi], list -> one of its items, anything else -> itself."""
    if isinstance(value, tuple):
        lo, hi = value
        if isinstance(lo, int) and isinstance(hi, int):
            return int(rng.integers(lo, hi + 1))
        return float(rng.uniform(lo, hi))
    if isinstance(value, list):
        return value[int(rng.integers(len(value)))]
    return value


def room_response(rng, n: int, sr: int, rt60: float, wet: float) -> np.ndarray:
    """Transfer function (rfft bins) of direct sound plus a diffuse exponential tail.

    The tail is noise decaying by 60 dB in rt60 seconds, high frequencies faster (air and
    absorption), applied by circular convolution so the 10 s loop is reverberant from its start.
    """
    m = min(int(1.5 * rt60 * sr), n)
    t = np.arange(m, dtype=F32) / sr
    f = rfft_freqs(n, sr)
    tail = np.zeros(n, F32)
    tail[:m] = rng.standard_normal(m).astype(F32) * np.exp(-6.9 * t / rt60)
    tail[:int(0.01 * sr)] = 0.0  # pre-delay before the first reflections
    tail_spec = np.fft.rfft(tail) * band_gain(f, None, rng.uniform(3000.0, 8000.0), order=1)
    energy = np.sqrt(np.mean(np.abs(tail_spec) ** 2))  # Parseval: the tail's total energy
    return (1.0 + (wet / max(energy, 1e-9)) * tail_spec).astype(np.complex64)


def render_scene(rng, scene: str, n: int, sr: int) -> np.ndarray:
    """One recording of ``scene``, n samples at sr, as its rfft spectrum at the listening position.

    The sources and the room run at half the output rate (half the cost); the octave above is
    filled by spectral band replication, as in HE-AAC: the top octave of the working band,
    mirrored back and forth (so the spectrum stays continuous at the joins) and rolled off.
    Mirroring keeps the temporal envelope, so a footstep or a chirp stays one event across the band.
    """
    work_n, work_sr = n // 2, sr // 2
    recipe = SCENES[scene]
    mix = np.zeros(work_n, F32)
    for name, probability, level, params in recipe["rows"]:
        if rng.random() >= probability:
            continue
        kwargs = {key: draw(rng, value) for key, value in params.items()}
        mix += SOURCES[name](rng, work_n, work_sr, **kwargs) * F32(10 ** (draw(rng, level) / 20))
    space = SPACES[recipe["space"]]
    low = np.fft.rfft(mix) * room_response(rng, work_n, work_sr, draw(rng, space["rt60"]), draw(rng, space["wet"]))
    edge = low.size - 1  # the bin of sr / 4
    spectrum = np.empty(n // 2 + 1, np.complex64)
    spectrum[:edge] = 2 * low[:edge]  # twice the length, same amplitude
    half = edge - edge // 2
    fold = np.arange(spectrum.size - edge) % (2 * half)  # a triangle wave over the top octave
    source = np.where(fold < half, edge - 1 - fold, edge // 2 + fold - half)
    air = tilt_gain(rfft_freqs(n, sr)[edge:], rng.uniform(-10.0, -7.0), ref=sr / 4)  # dB/octave above sr / 4
    spectrum[edge:] = 2 * low[source] * air
    return spectrum
