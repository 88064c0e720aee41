"""IEMOCAP: utterance selection, transcripts, waveforms, splits and padding.

The selection reproduces ``torchaudio.datasets.IEMOCAP`` (sessions 1-5, default arguments):
the same utterances, labels and order, read without torchaudio's FFmpeg-backed loader.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from datasets.collate import LabelledItems
from utils.experiment import InputError, Split

LABELS_6 = ("neu", "hap", "ang", "sad", "exc", "fru")
# --classes 4, the field's usual protocol: exc counts as hap, fru is dropped.
LABELS_4 = ("neu", "hap", "ang", "sad")
_FOUR_CLASS = {"neu": 0, "hap": 1, "exc": 1, "ang": 2, "sad": 3}
SESSIONS = (1, 2, 3, 4, 5)
# The folder names under which the five Session folders may sit, relative to --audio_dir.
_ROOT_CANDIDATES = ("IEMOCAP", ".", "IEMOCAP_full_release")
_TRANSCRIPT_LINE = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s*(.*?)\s*$")


@dataclass(frozen=True)
class Utterance:
    """One selected utterance: its stem, WAV file, class index and session (1-5)."""

    stem: str
    wav_path: Path
    label: int
    session: int


def label_names(classes: int) -> tuple[str, ...]:
    """The class names in label order for ``--classes`` 6 or 4."""
    if classes == 6:
        return LABELS_6
    if classes == 4:
        return LABELS_4
    raise ValueError(f"classes must be 6 or 4, got {classes}")


def resolve_iemocap_root(audio_dir: str | Path) -> Path:
    """Return the folder holding Session1..Session5 for any accepted ``--audio_dir`` form.

    Accepted: the folder holding ``IEMOCAP/`` (torchaudio's ``root``), ``IEMOCAP/`` itself, or
    ``IEMOCAP_full_release`` (held, or itself).
    """
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise InputError(f"IEMOCAP folder not found: {audio_dir} (expected the folder holding IEMOCAP/)")
    candidates = [audio_dir / name for name in _ROOT_CANDIDATES]
    for candidate in candidates:
        present = [n for n in SESSIONS if (candidate / f"Session{n}").is_dir()]
        if not present:
            continue
        missing = [str(candidate / f"Session{n}") for n in SESSIONS if n not in present]
        if missing:
            raise InputError(
                f"IEMOCAP session folder missing: {', '.join(missing)} (all of Session1..Session5 are required)"
            )
        return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise InputError(f"no IEMOCAP Session1..Session5 folders found in any of: {looked}")


def _required_dir(path: Path) -> Path:
    if not path.is_dir():
        raise InputError(f"IEMOCAP folder missing: {path} (expected the release's layout)")
    return path


def _read_emotion_labels(path: Path, known_stems: set[str]) -> dict[str, str]:
    """Labels of an EmoEvaluation file, keeping torchaudio's filter: known WAV stems, six labels."""
    labels: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, 1):
            if not line.startswith("["):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3:
                raise InputError(
                    f"malformed line {line_no} in {path}: expected "
                    f"'[start - end]<TAB>stem<TAB>label<TAB>[v, a, d]'"
                )
            stem, label = fields[1], fields[2]
            if stem in known_stems and label in LABELS_6:
                labels[stem] = label
    return labels


def index_iemocap(audio_dir: str | Path, classes: int = 6) -> list[Utterance]:
    """Select utterances as ``torchaudio.datasets.IEMOCAP(root)`` does, then map to ``classes`` labels."""
    names = label_names(classes)
    root = resolve_iemocap_root(audio_dir)
    # torchaudio checks label stems against the WAVs of this and all earlier sessions, and a
    # later valid label for a stem overrides an earlier one; both are kept for identical output.
    known_stems: set[str] = set()
    labels: dict[str, str] = {}
    found: list[tuple[str, Path, int]] = []
    for session in SESSIONS:
        session_dir = root / f"Session{session}"
        wav_dir = _required_dir(session_dir / "sentences" / "wav")
        label_dir = _required_dir(session_dir / "dialog" / "EmoEvaluation")
        # torchaudio sorts the full path strings ('/' sorts before '_' and digits).
        wav_paths = sorted(wav_dir.glob("*/*.wav"), key=str)
        known_stems.update(p.stem for p in wav_paths)
        # Sorted (torchaudio leaves glob order) so that the rare conflicting relabel is deterministic.
        for label_path in sorted(label_dir.glob("*.txt")):
            labels.update(_read_emotion_labels(label_path, known_stems))
        found.extend((p.stem, p, session) for p in wav_paths if p.stem in labels)

    if classes == 6:
        mapping = {name: i for i, name in enumerate(names)}
    else:
        mapping = _FOUR_CLASS
    utterances = [
        Utterance(stem, path, mapping[labels[stem]], session)
        for stem, path, session in found
        if labels[stem] in mapping
    ]
    if not utterances:
        raise InputError(
            f"no IEMOCAP utterances with labels {', '.join(names)} found under {root} "
            f"(expected Session*/sentences/wav/*/*.wav labelled in Session*/dialog/EmoEvaluation/*.txt)"
        )
    return utterances


def _read_transcription_file(path: Path) -> dict[str, str]:
    """Stem -> text of a ``dialog/transcriptions`` file; lines that are not utterances are skipped."""
    texts: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            match = _TRANSCRIPT_LINE.match(line)
            if match:
                texts[match.group(1)] = match.group(2)
    return texts


def _json_transcript(stem: str, text_dir: Path) -> str:
    path = text_dir / f"{stem}.json"
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        raise InputError(f"transcript missing for utterance {stem}: {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"transcript of utterance {stem} unreadable: {path} ({exc})") from None
    text = record.get("Utterance") if isinstance(record, dict) else None
    if not isinstance(text, str):
        raise InputError(f"transcript of utterance {stem} invalid: {path} has no string 'Utterance' key")
    return text


def load_transcripts(
    utterances: list[Utterance], audio_dir: str | Path, text_dir: str | Path | None
) -> list[str]:
    """The transcript of every utterance, from ``<text_dir>/<stem>.json`` or the release's transcriptions."""
    if text_dir is not None:
        text_dir = Path(text_dir)
        if not text_dir.is_dir():
            raise InputError(f"text folder not found: {text_dir} (expected a folder of <stem>.json files)")
        return [_json_transcript(u.stem, text_dir) for u in utterances]

    root = resolve_iemocap_root(audio_dir)
    by_file: dict[Path, dict[str, str]] = {}
    texts = []
    for u in utterances:
        # The transcription file is named after the dialog, i.e. the WAV's folder.
        path = root / f"Session{u.session}" / "dialog" / "transcriptions" / f"{u.wav_path.parent.name}.txt"
        if path not in by_file:
            if not path.is_file():
                raise InputError(f"transcript missing for utterance {u.stem}: {path} does not exist")
            by_file[path] = _read_transcription_file(path)
        if u.stem not in by_file[path]:
            raise InputError(f"transcript missing for utterance {u.stem}: no line for it in {path}")
        texts.append(by_file[path][u.stem])
    return texts


def split_utterances(n: int, shares: tuple[float, float], rng: np.random.Generator) -> dict[str, list[int]]:
    """Seeded per-utterance split: train and val take ``int(p·n)`` shuffled indices, test the rest.

    Indices stay in shuffled order, so taking the first N of a split (``--subset``) is a random sample.
    """
    p_train, p_val = shares
    if p_train < 0 or p_val < 0 or p_train + p_val > 1:
        raise ValueError(f"split shares must be non-negative and sum to at most 1, got {shares}")
    order = rng.permutation(n).tolist()
    n_train, n_val = int(p_train * n), int(p_val * n)
    return {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }


def split_by_session(utterances: list[Utterance]) -> dict[str, list[int]]:
    """Leave-one-session-out split (``--split session``): Session5 test, Session4 val, 1-3 train."""
    split: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    part_of = {4: "val", 5: "test"}
    for i, u in enumerate(utterances):
        split[part_of.get(u.session, "train")].append(i)
    for part, session in (("train", "Session1-3"), ("val", "Session4"), ("test", "Session5")):
        if not split[part]:
            raise InputError(f"--split session: no selected utterances in {session} for the {part} split")
    return split


@dataclass
class IemocapCorpus:
    """The selected utterances and their transcripts, in torchaudio's order."""

    utterances: list[Utterance]
    texts: list[str]

    @property
    def labels(self) -> list[int]:
        return [u.label for u in self.utterances]


def load_iemocap(audio_dir: str | Path, text_dir: str | Path | None, classes: int) -> IemocapCorpus:
    utterances = index_iemocap(audio_dir, classes)
    return IemocapCorpus(utterances, load_transcripts(utterances, audio_dir, text_dir))


class IemocapSplits:
    """A trial's splits: `--split random` (per utterance, seeded, train and val `int(share·N)`) or `session`,
    recorded as [stem, label] pairs. The student reads `student_inputs[i]` (through `transform`);
    utterance i's own teacher input has key `key_offset + i`."""

    def __init__(self, corpus: IemocapCorpus, how: str, shares: tuple[float, float], student_inputs: Sequence,
                 key_offset: int = 0, transform: Callable | None = None) -> None:
        self.corpus, self.how, self.shares = corpus, how, shares
        self.student_inputs, self.key_offset, self.transform = student_inputs, key_offset, transform

    def draw(self, rng: np.random.Generator) -> dict[str, list]:
        utterances = self.corpus.utterances
        if self.how == "session":
            indices = split_by_session(utterances)
        else:
            indices = split_utterances(len(utterances), self.shares, rng)
        for name, part in indices.items():
            if not part:
                raise InputError(f"the {name} split of {len(utterances)} utterances is empty; "
                                 "expected more utterances (or a larger --subset)")
        return {name: [[utterances[i].stem, utterances[i].label] for i in part] for name, part in indices.items()}

    def build(self, record: dict[str, list]) -> dict[str, Split]:
        labels = self.corpus.labels
        return {name: Split(LabelledItems(self.student_inputs, labels, indices, self.transform),
                            indices + self.key_offset)
                for name, indices in iemocap_split_indices(self.corpus, record).items()}


def iemocap_split_indices(corpus: IemocapCorpus, record: dict[str, list]) -> dict[str, np.ndarray]:
    """Utterance indices of a split record, checked against this corpus (it may come from --split_file)."""
    position = {u.stem: i for i, u in enumerate(corpus.utterances)}
    indices, seen = {}, set()
    for name, pairs in record.items():
        part = []
        for pair in pairs:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and pair[0] in position):
                raise InputError(f"split {name!r}: {pair!r} is not a [stem, label] pair of a selected utterance")
            index = position[pair[0]]
            if corpus.utterances[index].label != pair[1]:
                raise InputError(f"split {name!r}: {pair[0]} has label {corpus.utterances[index].label} here, "
                                 f"not {pair[1]}; was the split made with another --classes?")
            if index in seen:
                raise InputError(f"split {name!r}: {pair[0]} is in more than one split")
            seen.add(index)
            part.append(index)
        if not part:
            raise InputError(f"split {name!r} is empty; expected at least one utterance")
        indices[name] = np.asarray(part, dtype=np.int64)
    return indices


