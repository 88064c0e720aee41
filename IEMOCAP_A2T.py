"""IEMOCAP audio -> text: a frozen wav2vec2 (teacher) helps a BERT emotion classifier (student).

    python IEMOCAP_A2T.py --audio_dir /your/own/IEMOCAP_path --text_dir /your/own/IEMOCAP_path/IEMOCAP/texts/
    python IEMOCAP_A2T.py --demo                     # a built-in mini IEMOCAP of spoken sentences

In training the teacher hears another, uniformly drawn training utterance (the paper's unpaired
setting); validation and test report the latent loss against the utterance's own audio.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from datasets.collate import TokenizingCollate, WaveformFiles
from datasets.iemocap import IemocapSplits, load_iemocap
from models.pretrained import feature_dim, minilm_folder
from models.text import BertTextStudent
from models.wav2vec2 import WAV2VEC2_MODELS, Wav2Vec2Teacher
from utils.config import (
    FirstChoiceFallback,
    add_iemocap_options,
    announce_demo,
    parse_script_args,
    script_parser,
)
from utils.experiment import Experiment, Student
from utils.optim import WarmupCosine
from utils.run import run_script

SCRIPT = "IEMOCAP_A2T"
TAG = "IEMOCAP A->T"
SHARES = (0.75, 0.1)  # train, val; test takes the rest
# The README command's values.
DEFAULTS = dict(epochs=30, learning_rate=5e-5, batch_size=4, optim="adam", lam=0.3, n_times=3, random_seed=1234,
                mj_model="base")
DEMO = dict(epochs=4, batch_size=8, learning_rate=1e-4, warmup_epochs=0, n_times=1, num_workers=0)
DEMO_NOTE = "a tiny randomly initialised wav2vec2 teacher and the real MiniLM BERT student"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = script_parser(SCRIPT, __doc__, DEFAULTS)
    add_iemocap_options(parser, student="bert-base-uncased")
    parser.add_argument("--mj_model", action=FirstChoiceFallback, known=tuple(WAV2VEC2_MODELS),
                        help="the wav2vec2 teacher: base (wav2vec2-base-960h) or large (another value means base)")
    return parse_script_args(parser, argv, required="--audio_dir", demo_settings=demo_settings)


def demo_settings(demo_dir: Path) -> dict[str, Any]:
    """--demo: a mini IEMOCAP of sentences spoken by espeak-ng, a tiny teacher, the real MiniLM student."""
    from datasets.tools.demo import demo_iemocap_options  # demo code, imported only under --demo
    from models.tiny import demo_tiny_wav2vec2

    announce_demo(demo_dir, DEMO_NOTE)
    return {**DEMO, **demo_iemocap_options(demo_dir), "teacher_path": demo_tiny_wav2vec2(demo_dir),
            "student_path": minilm_folder()}


def build_experiment(args: argparse.Namespace) -> Experiment:
    corpus = load_iemocap(args.audio_dir, args.text_dir, args.classes)
    # Teacher keys: utterance i's audio is key i (only the teacher hears it, so only checked with one).
    audio = WaveformFiles([u.wav_path for u in corpus.utterances], args.max_audio_seconds) if args.lam > 0 else None
    teacher = Wav2Vec2Teacher(args.mj_model, args.teacher_path, seed=args.random_seed) if args.lam > 0 else None
    return Experiment(
        tag=TAG,
        num_classes=args.classes,
        feature_dim=feature_dim(WAV2VEC2_MODELS[args.mj_model], args.teacher_path),
        splits=IemocapSplits(corpus, args.split, SHARES, student_inputs=corpus.texts),
        build_student=build_student,
        schedule=WarmupCosine(args.warmup_epochs),
        teacher=teacher,
        teacher_inputs=audio,
        detailed_metrics=True,
    )


def build_student(args: argparse.Namespace, dim: int) -> Student:
    student = BertTextStudent(dim, args.classes, args.student_path, args.gradient_checkpointing)
    return Student(student, TokenizingCollate(student.tokenize))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, build and run; the exit code is 0, 1 (a diverged trial), 2 (bad input) or 130 (Ctrl-C)."""
    return run_script(SCRIPT, parse_args, build_experiment, argv)


if __name__ == "__main__":
    sys.exit(main())
