"""Sound sources of the synthetic scenes.

Every source is a function ``source(rng, n, sr, **params) -> float32 waveform of n samples`` at
unit RMS; the scene recipe sets its level. Sources run at the scene's working rate (half the
output rate, see ``synthetic.scenes``), so nothing here goes above ``0.45 * sr``. Event
placement wraps around the end of the buffer, so the room's circular convolution sees a seamless
loop.
"""
from __future__ import annotations

import numpy as np

from tinyasc.data.synthetic.dsp import (
    CONTROL_RATE, F32, add_wrapped, band_gain, bump_gain, control_points, decaying_burst, event_times, filtered,
    control_hop, harmonic_table, harmonic_tables, harmonics_below, oscillator, phase_index, rfft_freqs, shaped_noise, smooth,
    smooth_points, tilt_gain, unit_rms, upsample,
)


# ----------------------------------------------------------------------------- ambiences

def background(rng, n, sr, slope=-3.0, low=20.0):
    """The scene's bed of diffuse noise; its colour (dB/octave) varies per recording."""
    f = rfft_freqs(n, sr)
    return shaped_noise(rng, n, tilt_gain(f, slope) * band_gain(f, low, None))


def distant_traffic(rng, n, sr, cutoff=400.0, sway=0.4):
    """The roar of the city further away: brown-ish, low-passed, slowly swelling."""
    f = rfft_freqs(n, sr)
    x = shaped_noise(rng, n, tilt_gain(f, -4.0) * band_gain(f, 30.0, cutoff, order=2))
    return unit_rms(x * np.exp(F32(sway) * smooth(rng, n, sr, 0.3)))


def hum(rng, n, sr, f0=100.0, decay=1.2, harmonics=12, noise=0.5):
    """Ventilation: a fan's blade-pass tone with harmonics over a broadband air noise."""
    f = rfft_freqs(n, sr)
    table = harmonic_table(harmonics_below(f0, sr, decay, harmonics, rng, 6.0), rng)
    tone = oscillator(table, f0 * (1 + 0.003 * smooth(rng, n, sr, 0.5)), n, sr, rng)
    air = shaped_noise(rng, n, tilt_gain(f, -5.0) * bump_gain(f, rng.uniform(200, 800), 8.0, 1.5))
    return unit_rms(tone + F32(noise) * air)


def wind(rng, n, sr, cutoff=150.0, gust=0.8):
    """Wind on the microphone: a deep rumble that comes in gusts."""
    f = rfft_freqs(n, sr)
    x = shaped_noise(rng, n, band_gain(f, 10.0, cutoff, order=3))
    return unit_rms(x * np.exp(F32(gust) * smooth(rng, n, sr, 0.7)))


def leaves(rng, n, sr, low=1500.0, gust=0.8):
    """Rustling foliage: bright noise with a fast, gusty flutter."""
    f = rfft_freqs(n, sr)
    x = shaped_noise(rng, n, band_gain(f, low, None, order=2))
    flutter = np.exp(F32(gust) * smooth(rng, n, sr, 0.6) + F32(0.5) * smooth(rng, n, sr, 12.0))
    return unit_rms(x * flutter)


def water(rng, n, sr, centre=2000.0):
    """A fountain: broad hiss with a fast bubbling modulation."""
    f = rfft_freqs(n, sr)
    x = shaped_noise(rng, n, bump_gain(f, centre, 12.0, 1.5) * band_gain(f, 150.0, None))
    return unit_rms(x * np.exp(F32(0.5) * smooth(rng, n, sr, 40.0)))


def rattle(rng, n, sr, rate=40.0, brightness=3000.0):
    """Loose panels and fittings in a vehicle: dense metallic ticks that follow the road."""
    out = np.zeros(n, F32)
    tick = decaying_burst(rng, sr, 0.02, 0.003, lambda f: bump_gain(f, brightness, 20.0, 0.7))
    road = np.exp(0.8 * smooth_points(rng, control_points(n, sr), 1.0))
    starts = event_times(rng, n, sr, rate)
    levels = road[starts // control_hop(sr)] * rng.uniform(0.3, 1.0, starts.size)
    for start, level in zip(starts, levels):
        add_wrapped(out, tick * F32(level), start)
    return unit_rms(out)


def hiss(rng, n, sr, rate=0.3):
    """Pneumatic doors and brakes: bursts of bright noise that die away."""
    out = np.zeros(n, F32)
    for start in event_times(rng, n, sr, rate, minimum=1):
        seconds = rng.uniform(0.3, 1.2)
        add_wrapped(out, decaying_burst(rng, sr, seconds, seconds / 3, lambda f: band_gain(f, 2500.0, None)), start)
    return unit_rms(out)


# ----------------------------------------------------------------------------- people

VOWEL_FORMANTS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))


def syllable_envelope(rng, points: int, rate: float = 4.5, speak=(0.8, 3.0), pause=(0.2, 1.2)):
    """Control-grid envelope (0..1) of one voice: phrases of syllables separated by pauses.

    Returns the envelope and, per control point, the index of the vowel being spoken.
    """
    env = np.zeros(points, F32)
    vowel = np.zeros(points, np.int32)
    t = int(rng.uniform(-pause[1], pause[1]) * CONTROL_RATE)
    while t < points:
        phrase_end = t + int(rng.uniform(*speak) * CONTROL_RATE)
        while t < phrase_end:
            length = max(int(CONTROL_RATE / (rate * rng.uniform(0.7, 1.4))), 4)
            lo, hi = max(t, 0), min(t + length, points)
            if hi > lo:
                env[lo:hi] = np.sin(np.pi * (np.arange(lo, hi) - t + 0.5) / length) ** 0.6 * rng.uniform(0.5, 1.0)
                vowel[lo:hi] = rng.integers(len(VOWEL_FORMANTS))
            t += length
        t += int(rng.uniform(*pause) * CONTROL_RATE)
    return env, vowel


def vowel_tables(rng, f0: float, sr: int) -> np.ndarray:
    """Wavetables [vowels, TABLE] of a voice at pitch f0: a -6 dB/octave glottal series through
    each vowel's three formants."""
    k = np.arange(1, max(int(0.45 * sr / (f0 * 1.6)), 1) + 1, dtype=np.float64)
    formants = np.asarray(VOWEL_FORMANTS, dtype=np.float64)[:, :, None]  # [vowel, formant, 1]
    peaks = np.asarray([24.0, 20.0, 14.0])[None, :, None]
    boost = 10 ** (peaks * np.exp(-0.5 * (np.log2(k * f0 / formants) / 0.15) ** 2) / 20) - 1
    return harmonic_tables(k ** -1.0 * (1 + boost.sum(axis=1)), rng)


def talker(rng, n, sr, f0=140.0, rate=4.5, lively=0.12):
    """One voice: formant-shaped harmonics gated into syllables, the vowel changing per syllable,
    and fricative noise at syllable onsets."""
    points = control_points(n, sr)
    env, vowel = syllable_envelope(rng, points, rate)
    pitch = F32(f0) * F32(2.0) ** (F32(lively) * smooth_points(rng, points, 2.5))
    voiced = vowel_tables(rng, f0, sr)[np.repeat(vowel, control_hop(sr))[:n], phase_index(upsample(pitch, n, sr), n, sr)]
    onsets = np.maximum(np.diff(env, prepend=F32(0.0)), 0.0) * F32(rng.uniform(0.5, 3.0))
    frication = shaped_noise(rng, n, band_gain(rfft_freqs(n, sr), 3500.0, None)) * upsample(onsets, n, sr)
    return unit_rms(voiced * upsample(env, n, sr) + frication)


def children(rng, n, sr):
    """Children playing: high, lively voices."""
    return talker(rng, n, sr, f0=rng.uniform(240.0, 380.0), rate=rng.uniform(4.5, 6.5), lively=0.3)


def babble(rng, n, sr, talkers=10):
    """A crowd: speech-shaped noise whose modulation fades as the number of talkers grows."""
    points = control_points(n, sr)
    env = np.mean([syllable_envelope(rng, points, rng.uniform(3.5, 6.0))[0]
                   for _ in range(int(min(talkers, 12)))], axis=0)
    env = env + F32(0.25 * np.sqrt(max(talkers - 12, 0) / 12.0))  # beyond a dozen voices: a steady murmur
    f = rfft_freqs(n, sr)
    shape = band_gain(f, 120.0, 5000.0) * bump_gain(f, 500.0, 8.0, 1.2) * tilt_gain(f, -2.0)
    return unit_rms(shaped_noise(rng, n, shape) * upsample(env, n, sr))


def footsteps(rng, n, sr, walkers=2, hardness=0.5):
    """People walking: each walker has a shoe (a click's colour) and a pace (1.6-2.2 steps/s)."""
    out = np.zeros(n, F32)
    for _ in range(int(walkers)):
        bright = 400.0 + 4000.0 * hardness * rng.uniform(0.6, 1.4)
        step = decaying_burst(rng, sr, 0.06, rng.uniform(0.006, 0.02),
                              lambda f: band_gain(f, 80.0, bright, order=1) * bump_gain(f, 150.0, 6.0, 1.0))
        period, level = sr / rng.uniform(1.6, 2.2), rng.uniform(0.2, 1.0)
        start, span = rng.uniform(0, n), rng.uniform(0.3, 1.0) * n  # some walkers only pass through
        for t in np.arange(start, start + span, period):
            add_wrapped(out, step * F32(level * rng.uniform(0.6, 1.0)), int(t + rng.normal(0, 0.02 * sr)))
    return unit_rms(out)


def suitcase(rng, n, sr, count=2):
    """Wheeled luggage or trolleys rolling past: a rattle at the wheels' rate under a pass-by."""
    out = np.zeros(n, F32)
    for _ in range(int(count)):
        m = int(rng.uniform(1.5, 4.0) * sr)
        t = np.arange(m, dtype=F32) / F32(sr)
        f = rfft_freqs(m, sr)
        roll = shaped_noise(rng, m, band_gain(f, 250.0, 3500.0) * bump_gain(f, rng.uniform(600, 1500), 8.0, 1.0))
        clack = np.abs(np.sin(F32(np.pi * rng.uniform(8.0, 25.0)) * t)) ** 8
        passing = np.sin(F32(np.pi) * t / t[-1]) ** 2
        add_wrapped(out, roll * (F32(0.4) + clack) * passing * F32(rng.uniform(0.4, 1.0)), rng.integers(n))
    return unit_rms(out)


def birds(rng, n, sr, species=2, rate=1.0):
    """Birdsong: each species repeats its own chirp (pitch, sweep, length, trill) at random times."""
    out = np.zeros(n, F32)
    for _ in range(int(species)):
        centre = rng.uniform(2000.0, min(6500.0, 0.3 * sr))
        sweep, seconds = rng.uniform(-1.2, 1.2), rng.uniform(0.03, 0.2)
        trill, gap = int(rng.integers(1, 8)), rng.uniform(0.04, 0.12)
        m = int(seconds * sr)
        u = np.arange(m, dtype=np.float64) / m
        phase = 2 * np.pi * np.cumsum(centre * 2 ** (sweep * (u - 0.5) + 0.2 * np.sin(2 * np.pi * u))) / sr
        chirp = ((np.sin(phase) + 0.2 * np.sin(2 * phase)) * np.sin(np.pi * u) ** 2).astype(F32)
        level = rng.uniform(0.3, 1.0)
        for start in event_times(rng, n, sr, rate / species, minimum=1):
            for j in range(trill):
                add_wrapped(out, chirp * F32(level * rng.uniform(0.5, 1.0)), start + int(j * (seconds + gap) * sr))
    return unit_rms(out)


# ----------------------------------------------------------------------------- signals and music

def _events(rng, n, sr, rate, make_event):
    out = np.zeros(n, F32)
    for start in event_times(rng, n, sr, rate, minimum=1):
        add_wrapped(out, make_event(), start)
    return unit_rms(out)


def bell_note(sr, f0, seconds, partials, decay):
    """A struck metal partial series; higher partials die faster."""
    t = np.arange(int(seconds * sr), dtype=np.float64) / sr
    note = sum(np.sin(2 * np.pi * f0 * r * t) * np.exp(-t * decay * r) / (1 + i)
               for i, r in enumerate(partials) if f0 * r < 0.45 * sr)
    return (note * np.minimum(t / 0.003, 1.0)).astype(F32)


def chime(rng, n, sr, pitch=800.0, rate=0.1):
    """The gong before an announcement: two to four bell notes stepping through a chord."""
    steps = [[0, 4, 7], [7, 4, 0], [0, 4, 7, 12], [12, 7], [0, 5, 9, 12]][rng.integers(5)]
    gap = rng.uniform(0.3, 0.6)
    out = np.zeros(int((gap * len(steps) + 1.5) * sr), F32)
    for i, s in enumerate(steps):
        note = bell_note(sr, pitch * 2 ** (s / 12), 1.5, (1.0, 2.0, 3.0, 4.2), 2.0)
        out[int(i * gap * sr):int(i * gap * sr) + note.size] += note
    return _events(rng, n, sr, rate, lambda: out)


def announcement(rng, n, sr, seconds=4.0):
    """A voice through a public-address loudspeaker: band-limited, peaky, a little overdriven."""
    m = min(int(seconds * sr), n)
    f = rfft_freqs(m, sr)
    voice = talker(rng, m, sr, f0=rng.uniform(100.0, 220.0), rate=4.0)
    voice = filtered(voice, band_gain(f, 350.0, 4000.0, order=3) * bump_gain(f, rng.uniform(1500, 3000), 8.0, 0.8))
    out = np.zeros(n, F32)
    add_wrapped(out, np.tanh(F32(2.0) * unit_rms(voice)), rng.integers(n))
    return unit_rms(out)


def beeps(rng, n, sr, pitch=2000.0, rate=0.1):
    """Door-closing warning: a run of short square-ish beeps."""
    on, count = rng.uniform(0.08, 0.2), int(rng.integers(3, 7))
    period = on * rng.uniform(1.6, 2.4)
    t = np.arange(int(period * count * sr)) / sr
    beep = oscillator(harmonic_table([1.0, 0.0, 0.33, 0.0, 0.2]), pitch, t.size, sr) * ((t % period) < on)
    return _events(rng, n, sr, rate, lambda: beep)


def bell(rng, n, sr, pitch=1000.0, rate=0.1):
    """A tram's warning bell: ding-ding."""
    ding = bell_note(sr, pitch, 0.8, (1.0, 2.4, 3.9, 5.3), 3.0)
    twice = np.zeros(ding.size + int(0.35 * sr), F32)
    twice[:ding.size] += ding
    twice[int(0.3 * sr):int(0.3 * sr) + ding.size] += ding
    return _events(rng, n, sr, rate, lambda: twice)


def horn(rng, n, sr, pitch=420.0, rate=0.1):
    """A car horn: a buzzy one- or two-tone blast."""
    table = harmonic_table(harmonics_below(pitch * 1.26, sr, 1.0, 20))

    def blast():
        m = int(rng.uniform(0.15, 1.0) * sr)
        tone = oscillator(table, pitch, m, sr) + F32(rng.random() < 0.5) * oscillator(table, pitch * 1.26, m, sr)
        return tone * np.minimum(np.minimum(np.arange(m), m - np.arange(m)) / (0.01 * sr), 1.0).astype(F32)
    return _events(rng, n, sr, rate, blast)


def squeal(rng, n, sr, pitch=3500.0, rate=0.15):
    """Brakes, or wheels in a curve: a piercing tone with vibrato."""
    table = harmonic_table(harmonics_below(pitch, sr, 1.0, 3))
    pitch = min(pitch, 0.4 * sr)

    def screech():
        m = int(rng.uniform(0.4, 2.0) * sr)
        t = np.arange(m, dtype=F32) / F32(sr)
        freq = pitch * (1 + 0.01 * np.sin(F32(2 * np.pi * rng.uniform(4, 10)) * t))
        return oscillator(table, freq, m, sr) * np.sqrt(np.sin(F32(np.pi) * np.arange(m) / m))
    return _events(rng, n, sr, rate, screech)


def music(rng, n, sr, tempo=110.0, brightness=1.8):
    """Shop music from ceiling speakers: a four-chord loop with bass, a kick and hi-hats."""
    beat = 60.0 / tempo
    bar = int(4 * beat * sr)
    key = 130.8 * 2 ** (rng.integers(0, 12) / 12)
    progression = [[0, 7, 9, 5], [0, 5, 7, 5], [9, 5, 0, 7], [0, 9, 5, 7]][rng.integers(4)]
    table = harmonic_table(harmonics_below(4 * key, sr, brightness, 10, rng, 3.0), rng)
    kick = bell_note(sr, 55.0, 0.25, (1.0,), 25.0)
    hat = decaying_burst(rng, sr, 0.05, 0.01, lambda f: band_gain(f, 0.3 * sr, None))
    out = np.zeros(n, F32)
    for i, start in enumerate(range(0, n, bar)):
        root = key * 2 ** (progression[i % 4] / 12)
        m = min(bar, n - start)
        chord = sum(oscillator(table, root * 2 ** (s / 12), m, sr, rng) for s in (0, 4 if i % 2 else 3, 7))
        chord = chord + F32(1.5) * oscillator(table, root / 2, m, sr, rng)
        out[start:start + m] += F32(0.3) * chord * np.exp(-np.arange(m, dtype=F32) / F32(1.5 * bar))
        for b in range(8):
            add_wrapped(out, F32(0.5) * hat, start + int(b * beat / 2 * sr))
            if b % 2 == 0:
                add_wrapped(out, F32(2.0) * kick, start + int(b * beat / 2 * sr))
    return unit_rms(filtered(out, band_gain(rfft_freqs(n, sr), 150.0, None, order=2)))


# ----------------------------------------------------------------------------- vehicles

def engine(rng, n, sr, f0=35.0, rev=0.15, rough=0.5):
    """A combustion engine inside or nearby: firing harmonics over a low roar that beats at half
    the firing rate (the uneven stroke of a diesel); the revs follow the driver."""
    firing = upsample(F32(f0) * np.exp(F32(rev) * smooth_points(rng, control_points(n, sr), 0.4)), n, sr)
    tone = oscillator(harmonic_table(harmonics_below(2 * f0, sr, 0.9, 40, rng, 8.0), rng), firing, n, sr, rng)
    beat = oscillator(harmonic_table([1.0]), firing / 2, n, sr, rng)
    roar = shaped_noise(rng, n, band_gain(rfft_freqs(n, sr), 30.0, rng.uniform(300.0, 900.0), order=2))
    return unit_rms(tone + roar * (F32(1.0) + F32(rough) * beat))


def traffic(rng, n, sr, rate=0.5, distance=8.0):
    """Vehicles passing by: tyre noise and engine rumble rise and fall with 1/r, and the nearest
    vehicles add an engine tone whose pitch drops as they pass (Doppler)."""
    dur = n / sr
    count = max(int(rng.poisson(rate * dur)), 1)
    centre, speed = rng.uniform(0, dur, count), rng.uniform(7.0, 16.0, count)
    closest = distance * rng.uniform(0.5, 2.0, count)
    t = np.arange(control_points(n, sr)) / CONTROL_RATE
    lag = (t[None, :] - centre[:, None] + dur / 2) % dur - dur / 2  # circular time from closest approach
    r = np.hypot(closest[:, None], speed[:, None] * lag)
    gain = rng.uniform(0.5, 1.5, count)[:, None] * closest[:, None] / r
    f = rfft_freqs(n, sr)
    tyres = shaped_noise(rng, n, band_gain(f, 200.0, 4000.0) * bump_gain(f, 1000.0, 6.0, 1.5))
    rumble = shaped_noise(rng, n, band_gain(f, 30.0, 350.0))
    out = tyres * upsample(gain.sum(0), n, sr) + F32(0.8) * rumble * upsample((gain ** 1.5).sum(0), n, sr)
    table = harmonic_table(harmonics_below(70.0, sr, 1.0, 30, rng, 6.0), rng)
    for i in np.argsort(closest)[:2]:  # engine tones of the nearest vehicles
        radial = speed[i] ** 2 * lag[i] / r[i]
        pitch = rng.uniform(25.0, 60.0) / (1 + radial / 343.0)
        out += F32(0.7) * oscillator(table, upsample(pitch, n, sr), n, sr, rng) * upsample(gain[i] ** 1.2, n, sr)
    return unit_rms(out)


def speed_profile(rng, points: int, top: float, scenario: str) -> np.ndarray:
    """Speed (m/s) on the control grid of a vehicle that cruises, starts, stops, or dwells at a stop."""
    u = np.linspace(0, 1, points)
    cruise = top * (1 + 0.05 * smooth_points(rng, points, 0.3))
    ramp = np.clip((u - rng.uniform(-0.3, 0.6)) / rng.uniform(0.4, 0.9), 0, 1)
    if scenario == "start":
        return cruise * ramp
    if scenario == "stop":
        return cruise * ramp[::-1]
    if scenario == "dwell":  # standing at a stop for part of the recording
        return cruise * np.clip(np.abs(u - rng.uniform(0.3, 0.7)) * 6 - 1.2, 0, 1)
    return cruise


RAILWAYS = {  # top speed (m/s), motor whine (Hz per m/s), roar low-pass (Hz), roar and clack levels
    "metro": dict(top=(12.0, 22.0), whine=(50.0, 110.0), roar=(300.0, 2500.0), roar_gain=1.2, clack=1.0),
    "tram": dict(top=(6.0, 14.0), whine=(70.0, 160.0), roar=(150.0, 1200.0), roar_gain=0.6, clack=0.6),
}


def railway(rng, n, sr, kind="metro", scenario="cruise"):
    """An electric train from inside: motor whine rising with speed (loudest when pulling away),
    wheel roar growing with speed, and the double clack of the bogies over each rail joint."""
    spec = RAILWAYS[kind]
    points = control_points(n, sr)
    top = rng.uniform(*spec["top"])
    speed = speed_profile(rng, points, top, scenario)
    effort = (speed / top) * (0.3 + np.abs(np.gradient(speed) * CONTROL_RATE))
    out = np.zeros(n, F32)
    for ratio in rng.uniform(*spec["whine"], size=2):
        table = harmonic_table(harmonics_below(ratio * top, sr, 1.5, 4, rng, 6.0), rng)
        out += oscillator(table, upsample(ratio * speed, n, sr), n, sr, rng) * upsample(effort, n, sr)
    f = rfft_freqs(n, sr)
    roar = shaped_noise(rng, n, band_gain(f, 40.0, rng.uniform(*spec["roar"])) * bump_gain(f, rng.uniform(100, 400), 8.0, 1.0))
    out += F32(spec["roar_gain"]) * roar * upsample((0.05 + speed / top) ** 1.5, n, sr)
    position = np.cumsum(speed) / CONTROL_RATE
    rail = rng.uniform(15.0, 25.0)  # metres between joints
    joints = np.searchsorted(position, np.arange(rail, position[-1], rail))
    clack = decaying_burst(rng, sr, 0.08, 0.02, lambda f: band_gain(f, 60.0, 2500.0, order=1))
    for j in joints:
        v = max(speed[min(j, points - 1)], 0.5)
        for axle in (0.0, 2.5 / v):  # the two axles of a bogie
            add_wrapped(out, clack * F32(spec["clack"] * 4.0 * v / top), int((j / CONTROL_RATE + axle) * sr))
    return unit_rms(out)


def platform_train(rng, n, sr, scenario="stop"):
    """A metro train heard from the platform, arriving or leaving: duller, swelling as it nears."""
    ride = railway(rng, n, sr, "metro", scenario)
    near = np.linspace(0.2, 1.0, n, dtype=F32)
    near = near if scenario == "stop" else near[::-1]
    return unit_rms(filtered(ride, band_gain(rfft_freqs(n, sr), None, rng.uniform(1500.0, 5000.0), order=1)) * near ** 2)


def jet(rng, n, sr, rise=True):
    """An aircraft taxiing or taking off, heard through the terminal's glass: a low swell."""
    f = rfft_freqs(n, sr)
    x = shaped_noise(rng, n, band_gain(f, 40.0, 500.0, order=2) * bump_gain(f, rng.uniform(2000, 4000), 10.0, 0.5))
    swell = np.linspace(0.1, 1.0, n, dtype=F32)
    return unit_rms(x * (swell if rise else swell[::-1]))
