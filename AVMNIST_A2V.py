"""AVMNIST audio -> vision: a frozen wav2vec2 (teacher) helps an image ResNet-18 (student).

    python AVMNIST_A2V.py --data_root /your/own/avmnist_path        # the README command's values
    python AVMNIST_A2V.py --demo                                    # built-in small data

In training the teacher hears the spoken digit of another, uniformly drawn training item (the paper's
unpaired setting); validation and test report the latent loss against the item's own recording.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from datasets.avmnist import (
    NUM_CLASSES,
    AvmnistSplits,
    collate_arrays,
    load_avmnist,
    wav_paths,
)
from datasets.collate import WaveformFiles
from models.pretrained import feature_dim
from models.resnet import ImageResNetStudent
from models.wav2vec2 import WAV2VEC2_MODELS, Wav2Vec2Teacher
from utils.config import (
    FirstChoiceFallback,
    add_avmnist_options,
    announce_demo,
    parse_script_args,
    script_parser,
)
from utils.experiment import Experiment, Student
from utils.optim import StepDecay
from utils.run import run_script

SCRIPT = "AVMNIST_A2V"
TAG = "AVMNIST A->V"
# The README command's values (it passes --mj_model resnet18, which means base here).
DEFAULTS = dict(epochs=30, learning_rate=1e-3, batch_size=32, optim="adam", lam=0.3, n_times=3, random_seed=42,
                lr_decay_step=25, lr_decay_ratio=0.1, mj_model="base")
DEMO = dict(epochs=4, batch_size=32, n_times=1, num_workers=0)
DEMO_NOTE = "a tiny randomly initialised wav2vec2 teacher"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = script_parser(SCRIPT, __doc__, DEFAULTS)
    add_avmnist_options(parser, images="the student's images")
    parser.add_argument("--mj_model", action=FirstChoiceFallback, known=tuple(WAV2VEC2_MODELS),
                        help="the wav2vec2 teacher: base (wav2vec2-base-960h) or large (another value means base)")
    return parse_script_args(parser, argv, required="--data_root", demo_settings=demo_settings)


def demo_settings(demo_dir: Path) -> dict[str, Any]:
    """--demo: real handwritten digits with digits spoken by espeak-ng, and a tiny random teacher."""
    from datasets.tools.demo import build_demo_avmnist  # demo code, imported only under --demo
    from models.tiny import demo_tiny_wav2vec2

    announce_demo(demo_dir, DEMO_NOTE)
    return {**DEMO, "data_root": str(build_demo_avmnist(demo_dir)), "teacher_path": demo_tiny_wav2vec2(demo_dir)}


def build_experiment(args: argparse.Namespace) -> Experiment:
    # The student reads images; the teacher hears each item's spoken digit (WAVs, only with a teacher).
    data = load_avmnist(args.data_root, pca=args.pca, images=True, spectrograms=False)
    teacher_inputs = WaveformFiles(wav_paths(data)) if args.lam > 0 else None
    teacher = Wav2Vec2Teacher(args.mj_model, args.teacher_path, seed=args.random_seed) if args.lam > 0 else None
    return Experiment(
        tag=TAG,
        num_classes=NUM_CLASSES,
        feature_dim=feature_dim(WAV2VEC2_MODELS[args.mj_model], args.teacher_path),
        splits=AvmnistSplits(data, student_inputs=data.images),
        build_student=build_student,
        schedule=StepDecay(args.lr_decay_step, args.lr_decay_ratio),
        precise_bn=args.precise_bn,
        teacher=teacher,
        teacher_inputs=teacher_inputs,
    )


def build_student(args: argparse.Namespace, dim: int) -> Student:
    return Student(ImageResNetStudent(dim, NUM_CLASSES), collate_arrays)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, build and run; the exit code is 0, 1 (a diverged trial), 2 (bad input) or 130 (Ctrl-C)."""
    return run_script(SCRIPT, parse_args, build_experiment, argv)


if __name__ == "__main__":
    sys.exit(main())
