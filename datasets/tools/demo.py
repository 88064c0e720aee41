"""Small real-ish demo data, built on first use and cached: `python -m datasets.tools.demo [--demo_dir D]`.

- AVMNIST: scikit-learn's 1,797 real handwritten digits (8×8, upscaled to 28×28 like MNIST), each
  paired by label with the digit's word spoken by espeak-ng; the voices of the test split are held
  out from training. Written in the original AVMNIST layout (`datasets.tools.avmnist_writer`).
- IEMOCAP: a mini tree of spoken sentences in the real IEMOCAP layout, 5 sessions, 6 emotions
  carried both by word choice and by prosody (rate, pitch and vocal effort: e.g. anger fast, high and
  pressed, sadness slow, low and lax), plus a few utterances with labels that loaders must drop
  (xxx, sur, fea).

Both builds are deterministic and atomic: a complete build is reused, anything else at the target
(no marker, other parameters) is removed and rebuilt, never read.
"""

import argparse
import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import lfilter
from sklearn.datasets import load_digits

from datasets.tools.avmnist_writer import (
    AUDIO_RATE,
    AVMNISTSplit,
    build_atomically,
    cycle_pools,
    is_complete,
    pca_reconstruct,
    wav_bytes,
    write_avmnist,
)
from datasets.tools.speech import VOICES, synthesizer
from utils.config import DEMO_DIR

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEST_FRACTION = 0.22  # of each class: 1,797 digits -> 1,402 train / 395 test
TEST_VOICE_FRACTION = 0.25  # 33 of the 133 voices speak only in the test split
# The 28×28 images are linear upscales of 8×8 ones, so they span at most 64 dimensions and 196
# components would reproduce them exactly. AVMNIST keeps 196 of 784 (a quarter); keep a quarter of 64.
DEMO_PCA_COMPONENTS = 16
_SEED = 0
_RATES = (130, 230)  # words per minute, per demo speaker
_PITCHES = (20, 80)

IEMOCAP_RATE = 16000
EMOTIONS = ("neu", "hap", "ang", "sad", "exc", "fru")
DROPPED_LABELS = ("xxx", "sur", "fea")  # real IEMOCAP labels outside the 6 classes
_DROPPED_PER_LABEL = 2


def _cached_build(out: Path, write: Callable[[Path], None], stamp: Mapping[str, object]) -> Path:
    """`out` if it holds a complete build with this `stamp` (bump its version when the output changes)."""
    if is_complete(out, stamp):
        return out
    if out.exists():
        # Half-written, interrupted, or built with other parameters: never read it.
        shutil.rmtree(out)
    return build_atomically(out, write, stamp)


# ----------------------------------------------------------------------------------------- AVMNIST


def build_demo_avmnist(root: Path, per_class: int | None = None) -> Path:
    """Build (or reuse) the demo AVMNIST at `root/avmnist` and return that folder.

    `per_class` keeps only the first N >= 2 digits of each class (tests); None keeps all 1,797.
    Besides the AVMNIST layout, `demo_meta.json` records every item's speaker (voice, rate, pitch).
    """
    if per_class is not None and per_class < 2:
        raise ValueError(f"per_class={per_class}: expected at least 2 (one train and one test item per class)")
    stamp = {"builder": "demo-avmnist", "version": 1, "per_class": per_class}
    return _cached_build(Path(root) / "avmnist", lambda folder: _write_demo_avmnist(folder, per_class), stamp)


def _mnist_like(pixels: np.ndarray) -> np.ndarray:
    """8×8 digits in 0..16 -> uint8 28×28: upscaled to a 20×20 box with a 4-pixel margin, as MNIST."""
    images = torch.from_numpy(pixels.astype(np.float32))[:, None]
    images = F.pad(F.interpolate(images, size=(20, 20), mode="bilinear", align_corners=False), (4, 4, 4, 4))
    return np.clip(np.rint(images[:, 0].numpy() * (255.0 / 16.0)), 0, 255).astype(np.uint8)


def _stratified_split(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same share of every class goes to the test split; both splits in a shuffled order."""
    test = []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        test.append(members[: min(max(1, round(TEST_FRACTION * members.size)), members.size - 1)])
    test = np.concatenate(test)
    train = np.setdiff1d(np.arange(labels.size), test)
    return rng.permutation(train), rng.permutation(test)


def _write_demo_avmnist(folder: Path, per_class: int | None) -> None:
    digits = load_digits()
    keep = np.sort(np.concatenate([np.flatnonzero(digits.target == d)[:per_class] for d in range(10)]))
    labels = digits.target[keep].astype(np.int64)
    images = _mnist_like(digits.images[keep])
    rng = np.random.default_rng(_SEED)
    train_items, test_items = _stratified_split(labels, rng)

    # A speaker is a voice with its own rate and pitch; test speakers use voices never heard in training.
    voices = [VOICES[i] for i in rng.permutation(len(VOICES))]
    speakers = [
        {
            "voice": voice,
            "rate": int(rng.integers(*_RATES, endpoint=True)),
            "pitch": int(rng.integers(*_PITCHES, endpoint=True)),
        }
        for voice in voices
    ]
    n_test_voices = round(TEST_VOICE_FRACTION * len(voices))
    speaker_ids = {"test": list(range(n_test_voices)), "train": list(range(n_test_voices, len(voices)))}

    clip_of: dict[tuple[int, int], int] = {}  # (digit, speaker) -> clip: each distinct utterance once
    clips: list[np.ndarray] = []
    item_speakers: dict[str, np.ndarray] = {}
    clip_index: dict[str, np.ndarray] = {}
    for name, items in (("train", train_items), ("test", test_items)):
        split_labels = labels[items]
        item_speakers[name] = cycle_pools(split_labels, {d: speaker_ids[name] for d in range(10)})
        indices = []
        for digit, speaker_id in zip(split_labels.tolist(), item_speakers[name].tolist()):
            key = (digit, speaker_id)
            if key not in clip_of:
                speaker = speakers[speaker_id]
                clip_of[key] = len(clips)
                clips.append(
                    synthesizer().say(DIGIT_WORDS[digit], speaker["voice"], speaker["rate"], speaker["pitch"], AUDIO_RATE)
                )
            indices.append(clip_of[key])
        clip_index[name] = np.asarray(indices, np.int64)

    train_pca, test_pca = pca_reconstruct(images[train_items], images[test_items], DEMO_PCA_COMPONENTS)
    write_avmnist(
        folder,
        AVMNISTSplit(labels[train_items], images[train_items], train_pca, clip_index["train"]),
        AVMNISTSplit(labels[test_items], images[test_items], test_pca, clip_index["test"]),
        clips,
    )
    meta = {
        "source": "sklearn.datasets.load_digits + espeak-ng (espeakng-loader)",
        "pca_components": DEMO_PCA_COMPONENTS,
        "speakers": speakers,
        "train_voices": sorted(voices[i] for i in speaker_ids["train"]),
        "test_voices": sorted(voices[i] for i in speaker_ids["test"]),
        "train_speaker": item_speakers["train"].tolist(),
        "test_speaker": item_speakers["test"].tolist(),
        "train_source_index": keep[train_items].tolist(),  # rows of load_digits()
        "test_source_index": keep[test_items].tolist(),
    }
    (folder / "demo_meta.json").write_text(json.dumps(meta, indent=1))


# ----------------------------------------------------------------------------------------- IEMOCAP


@dataclass(frozen=True)
class _Style:
    rate: int  # words per minute
    pitch: int  # espeak-ng 0..99, 50 = the voice's own
    effort: float  # vocal effort as spectral tilt, -1 (lax, dark) .. 1 (pressed, bright); see _vocal_effort
    vad: tuple[float, float, float]  # valence, activation, dominance as IEMOCAP rates them (1..5)
    annotation: str  # an evaluator's category, as in the `C-E1:` lines
    templates: tuple[str, ...]


# Rate and pitch alone overlap between emotions once the voices' own differences are added (a male
# voice's high is a female voice's low): without the effort below, logistic regression on log-mel
# statistics scored 21 % (chance 17 %) on sentence templates it had not heard, so only the words told
# the emotions apart, which a small audio model cannot learn from 120 sentences. Vocal effort, the
# spectral tilt that rises with arousal (sad < neu < fru < hap < exc < ang), holds across voices as
# in real emotional speech (with it: 70 %); here it is deliberately strong.
_STYLES = {
    "neu": _Style(170, 50, -0.6, (3.0, 2.5, 2.5), "Neutral",
                  ("I will check {topic} tomorrow.", "We talked about {topic} today.", "The note is about {topic}.")),
    "hap": _Style(190, 66, 0.5, (4.0, 3.0, 3.0), "Happiness",
                  ("I love {topic} so much!", "I am so happy about {topic}.", "What a lovely day for {topic}.")),
    "ang": _Style(235, 74, 0.95, (1.5, 4.0, 4.0), "Anger",
                  ("I hate {topic}, get out!", "How dare you ruin {topic}!", "I am furious about {topic}!")),
    "sad": _Style(130, 24, -0.95, (2.0, 1.5, 2.0), "Sadness",
                  ("I miss {topic} so much.", "I lost {topic}.", "I feel empty without {topic}.")),
    "exc": _Style(215, 84, 0.8, (4.5, 4.0, 3.5), "Excited",
                  ("Wow, we got {topic}! Amazing!", "I can't wait for {topic}!", "Yes, {topic} is incredible!")),
    "fru": _Style(180, 40, 0.0, (2.0, 3.5, 3.0), "Frustration",
                  ("Why is {topic} broken again?", "Ugh, {topic} never works.", "I keep fixing {topic} for nothing.")),
    "xxx": _Style(175, 50, 0.0, (2.5, 3.0, 3.0), "Other", ("Well, {topic}, I guess.",)),
    "sur": _Style(200, 78, 0.5, (3.5, 3.5, 2.5), "Surprise", ("Oh! Really, {topic}?",)),
    "fea": _Style(200, 70, 0.3, (2.0, 3.5, 1.5), "Fear", ("Please, {topic} scares me.",)),
}
_TOPICS = ("the car", "the dinner", "my sister", "the letter", "the job", "the trip", "the house", "the phone")
# Each session has one female and one male actor, as in IEMOCAP.
_SESSION_VOICES = {
    1: {"F": "en-us+f2", "M": "en-us+m3"},
    2: {"F": "en-gb-x-rp+f4", "M": "en-gb-x-rp+m1"},
    3: {"F": "en-gb-scotland+f1", "M": "en-gb-scotland+m7"},
    4: {"F": "en-029+f3", "M": "en-029+m2"},
    5: {"F": "en+f5", "M": "en+m4"},
}
_EMO_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def build_demo_iemocap(root: Path, per_class: int = 25) -> Path:
    """Build (or reuse) the mini IEMOCAP at `root/iemocap` and return it (the `--audio_dir`).

    Under it: `IEMOCAP/Session{1..5}/{sentences/wav,dialog/EmoEvaluation,dialog/transcriptions}`
    as in the real release, and the `--text_dir` folder `IEMOCAP/texts/<stem>.json`.
    `per_class` utterances per emotion, spread evenly over the 5 sessions.
    """
    stamp = {"builder": "demo-iemocap", "version": 3, "per_class": per_class}
    return _cached_build(Path(root) / "iemocap", lambda folder: _write_demo_iemocap(folder, per_class), stamp)


def demo_iemocap_options(demo_dir: Path) -> dict[str, str]:
    """`--audio_dir` and `--text_dir` of the demo IEMOCAP under `demo_dir`, built on first use."""
    audio_dir = build_demo_iemocap(demo_dir)
    return {"audio_dir": str(audio_dir), "text_dir": str(audio_dir / "IEMOCAP" / "texts")}


def _write_demo_iemocap(folder: Path, per_class: int) -> None:
    rng = np.random.default_rng(_SEED)
    counts = {label: per_class for label in EMOTIONS} | {label: _DROPPED_PER_LABEL for label in DROPPED_LABELS}
    sessions: dict[int, list[tuple[str, str]]] = {s: [] for s in _SESSION_VOICES}
    for label_index, (label, count) in enumerate(counts.items()):
        templates = _STYLES[label].templates
        for j in range(count):
            text = templates[j % len(templates)].format(topic=_TOPICS[(j + label_index) % len(_TOPICS)])
            sessions[j % len(sessions) + 1].append((label, text))

    base = folder / "IEMOCAP"
    texts = base / "texts"
    texts.mkdir(parents=True)
    for session, utterances in sessions.items():
        session_dir = base / f"Session{session}"
        dialogs = (f"Ses0{session}F_impro01", f"Ses0{session}M_script01_1")
        order = rng.permutation(len(utterances))
        for dialog_number, dialog in enumerate(dialogs):
            evaluation, transcription = [_EMO_HEADER], []
            wav_dir = session_dir / "sentences" / "wav" / dialog
            wav_dir.mkdir(parents=True)
            turns = {"F": 0, "M": 0}
            end = 0.0
            for turn, index in enumerate(order[dialog_number::len(dialogs)]):  # the dialogs share the session
                label, text = utterances[index]
                style = _STYLES[label]
                gender = "FM"[turn % 2]
                stem = f"{dialog}_{gender}{turns[gender]:03d}"
                turns[gender] += 1
                rate = style.rate + int(rng.integers(-12, 13))
                pitch = style.pitch + int(rng.integers(-6, 7))
                wave = synthesizer().say(text, _SESSION_VOICES[session][gender], rate, pitch, IEMOCAP_RATE)
                wave = _vocal_effort(wave, style.effort)
                (wav_dir / f"{stem}.wav").write_bytes(wav_bytes(wave, IEMOCAP_RATE))
                start = end + float(rng.uniform(0.3, 1.2))
                end = start + wave.size / IEMOCAP_RATE
                valence, activation, dominance = style.vad
                evaluation.append(
                    f"[{start:.4f} - {end:.4f}]\t{stem}\t{label}\t[{valence:.4f}, {activation:.4f}, {dominance:.4f}]\n"
                    f"C-E1:\t{style.annotation};\t()\nC-E2:\t{style.annotation};\t()\n"
                    f"A-E1:\tval {round(valence)}; act {round(activation)}; dom  {round(dominance)};\t()\n\n"
                )
                transcription.append(f"{stem} [{start:08.4f}-{end:08.4f}]: {text}\n")
                (texts / f"{stem}.json").write_text(json.dumps({"Utterance": text}))
            for sub, lines in (("EmoEvaluation", evaluation), ("transcriptions", transcription)):
                (session_dir / "dialog" / sub).mkdir(parents=True, exist_ok=True)
                (session_dir / "dialog" / sub / f"{dialog}.txt").write_text("".join(lines))


def _vocal_effort(wave: np.ndarray, effort: float) -> np.ndarray:
    """Tilt the spectrum as vocal effort does (espeak-ng has no such control), keeping the peak.

    effort > 0: first-order pre-emphasis, highs up to +20·log10(1 + effort) dB, lows down (pressed);
    effort < 0: one-pole low-pass, highs down to 20·log10((1 + effort) / (1 - effort)) dB (lax); 0: as is.
    """
    if effort > 0:
        tilted = lfilter([1.0, -effort], [1.0], wave)
    elif effort < 0:
        tilted = lfilter([1.0 + effort], [1.0, effort], wave)
    else:
        return wave
    return (tilted * (np.abs(wave).max() / np.abs(tilted).max())).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    """Build both demo data sets and print where they are."""
    parser = argparse.ArgumentParser(prog="python -m datasets.tools.demo", description="Build (or reuse) the demo data.")
    parser.add_argument("--demo_dir", type=Path, default=DEMO_DIR, help="cache folder (default: %(default)s)")
    args = parser.parse_args(argv)
    for name, build in (("AVMNIST", build_demo_avmnist), ("IEMOCAP", build_demo_iemocap)):
        start = time.perf_counter()
        path = build(args.demo_dir)
        print(f"{name} demo data: {path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
