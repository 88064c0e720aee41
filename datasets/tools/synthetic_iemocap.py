"""A small synthetic IEMOCAP tree in the release's layout, for tests and smoke runs.

Every labelled utterance is a noisy tone whose pitch and loudness rhythm depend on its class, and a
sentence holding one class-specific word between fillers, so both modalities carry the label.
The tree also holds what the selection must skip: labels outside the six classes, a label line
without a WAV, a WAV without a label line, header and annotator lines, non-utterance transcript lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from datasets.iemocap import LABELS_6, SESSIONS
from utils.experiment import InputError

_PITCH_HZ = (220.0, 330.0, 440.0, 587.0, 740.0, 880.0)
_RHYTHM_HZ = (2.0, 7.0, 11.0, 1.0, 9.0, 4.0)
_WORDS = (
    ("okay", "fine", "usual", "normal"),
    ("happy", "glad", "lovely", "pleased"),
    ("angry", "furious", "hate", "outraged"),
    ("sad", "miss", "crying", "lonely"),
    ("excited", "amazing", "wow", "thrilled"),
    ("frustrated", "annoying", "stuck", "useless"),
)
_FILLERS = ("well", "I think", "you know", "honestly", "right now", "about that", "today", "so")
_DROPPED_LABELS = ("xxx", "sur", "fea", "oth", "dis")
_EMO_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


@dataclass
class _Turn:
    stem: str
    label: str
    start: float
    end: float
    text: str
    has_wav: bool = True
    has_label_line: bool = True


def _tone(label: str, seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A class-coloured tone: pitch and amplitude rhythm carry the class; unknown labels get random ones."""
    if label in LABELS_6:
        k = LABELS_6.index(label)
        pitch, rhythm = _PITCH_HZ[k] * rng.uniform(0.97, 1.03), _RHYTHM_HZ[k]
    else:
        pitch, rhythm = rng.uniform(150.0, 1000.0), rng.uniform(1.0, 12.0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * rhythm * t + rng.uniform(0, 2 * np.pi))
    wave = rng.uniform(0.3, 0.6) * envelope * np.sin(2 * np.pi * pitch * t) + 0.03 * rng.standard_normal(t.size)
    return np.clip(wave, -1.0, 1.0)


def _sentence(label: str, rng: np.random.Generator) -> str:
    """A filler sentence, with one word of the class's vocabulary for the six labels."""
    words = [str(rng.choice(_FILLERS))]
    if label in LABELS_6:
        words.append(str(rng.choice(_WORDS[LABELS_6.index(label)])))
    words.append(str(rng.choice(_FILLERS)))
    sentence = " ".join(words)
    return sentence[0].upper() + sentence[1:] + "."


def _emo_block(turn: _Turn) -> str:
    """One EmoEvaluation entry: the tab-separated '[' line, then annotator lines to ignore."""
    return (
        f"[{turn.start:.4f} - {turn.end:.4f}]\t{turn.stem}\t{turn.label}\t[2.5000, 3.0000, 2.5000]\n"
        f"C-E1:\tNeutral;\t()\nA-E1:\tval 3; act 2; dom  2;\t()\n\n"
    )


def write_synthetic_iemocap(out: Path, per_class: int = 6, seed: int = 0, sample_rate: int = 16000) -> Path:
    """Write ``out/IEMOCAP/Session1..5`` (WAVs, EmoEvaluation, transcriptions) and ``out/IEMOCAP/texts``.

    ``per_class`` labelled utterances per class of the six, spread over the five sessions, plus a few
    the selection drops. Deterministic for ``seed``. Returns ``out`` (the folder holding ``IEMOCAP/``).
    """
    out = Path(out)
    tree = out / "IEMOCAP"
    if tree.exists():
        raise InputError(f"{tree} already exists: expected a folder without an IEMOCAP/ tree")
    rng = np.random.default_rng(seed)
    labels = [label for label in LABELS_6 for _ in range(per_class)]
    rng.shuffle(labels)

    # (session, dialog name) -> turns; each session has one improvised and one scripted dialog.
    dialogs: dict[tuple[int, str], list[_Turn]] = {}
    for session in SESSIONS:
        dialogs[session, f"Ses0{session}F_impro01"] = []
        dialogs[session, f"Ses0{session}M_script01_1"] = []
    keys = list(dialogs)
    speaker_counts: dict[tuple[str, str], int] = {}
    # Five consecutive turns land in five sessions: one dropped label per session.
    for i, label in enumerate(labels + list(_DROPPED_LABELS)):
        # Round-robin over the sessions, alternating their two dialogs from round to round.
        key = keys[2 * (i % len(SESSIONS)) + (i // len(SESSIONS)) % 2]
        turns = dialogs[key]
        speaker = "FM"[len(turns) % 2]
        count = speaker_counts.get((key[1], speaker), 0)
        speaker_counts[key[1], speaker] = count + 1
        # A few clips under 0.22 s exercise the collate's time-masking minimum.
        seconds = rng.uniform(0.1, 0.2) if i % 7 == 3 else rng.uniform(0.3, 1.0)
        start = turns[-1].end + rng.uniform(0.2, 1.0) if turns else rng.uniform(1.0, 5.0)
        turns.append(_Turn(f"{key[1]}_{speaker}{count:03d}", label, start, start + seconds, _sentence(label, rng)))

    # Per session, a valid label line whose WAV is absent and a WAV without a label line.
    for session in SESSIONS:
        dialog = f"Ses0{session}F_impro01"
        turns = dialogs[session, dialog]
        for suffix, has_wav in (("F900", False), ("M900", True)):
            start = turns[-1].end + 0.5
            turn = _Turn(f"{dialog}_{suffix}", "neu", start, start + 0.5, _sentence("neu", rng), has_wav, not has_wav)
            turns.append(turn)

    texts_dir = tree / "texts"
    texts_dir.mkdir(parents=True)
    for (session, dialog), turns in dialogs.items():
        session_dir = tree / f"Session{session}"
        wav_dir = session_dir / "sentences" / "wav" / dialog
        emo_dir = session_dir / "dialog" / "EmoEvaluation"
        trans_dir = session_dir / "dialog" / "transcriptions"
        for folder in (wav_dir, emo_dir, trans_dir):
            folder.mkdir(parents=True, exist_ok=True)
        emo_lines = [_EMO_HEADER]
        trans_lines = []
        for turn in turns:
            if turn.has_wav:
                wave = _tone(turn.label, turn.end - turn.start, sample_rate, rng)
                sf.write(wav_dir / f"{turn.stem}.wav", wave, sample_rate, subtype="PCM_16")
            if turn.has_label_line:
                emo_lines.append(_emo_block(turn))
            trans_lines.append(f"{turn.stem} [{turn.start:08.4f}-{turn.end:08.4f}]: {turn.text}\n")
            (texts_dir / f"{turn.stem}.json").write_text(json.dumps({"Utterance": turn.text}), encoding="utf-8")
        trans_lines.append("M: [BREATHING] (not an utterance line)\n")
        (emo_dir / f"{dialog}.txt").write_text("".join(emo_lines), encoding="utf-8")
        (trans_dir / f"{dialog}.txt").write_text("".join(trans_lines), encoding="utf-8")
    return out
