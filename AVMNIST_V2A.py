"""AVMNIST vision -> audio: a frozen ImageNet ResNet (teacher) helps a spectrogram ResNet-18 (student).

    python AVMNIST_V2A.py --data_root /your/own/avmnist_path        # the README command's values
    python AVMNIST_V2A.py --demo                                    # built-in small data

In training the teacher sees the digit image of another, uniformly drawn training item (the paper's
unpaired setting); validation and test report the latent loss against the item's own image.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from datasets.avmnist import (
    NUM_CLASSES,
    AvmnistSplits,
    ImageTeacherInputs,
    collate_arrays,
    load_avmnist,
)
from models.pretrained import feature_dim
from models.resnet import RESNETS, ResNetTeacher, SpectrogramResNetStudent
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

SCRIPT = "AVMNIST_V2A"
TAG = "AVMNIST V->A"
# The README command's values.
DEFAULTS = dict(epochs=30, learning_rate=1e-3, batch_size=32, optim="adam", lam=0.3, n_times=3, random_seed=42,
                lr_decay_step=25, lr_decay_ratio=0.1, mj_model="resnet18")
# --demo: the 112x112 spectrogram student is the costliest step on a CPU, so fewer training items, two epochs (a
# third did not raise the validation accuracy) and BatchNorm statistics from 128 of them (4 batches), not all 640.
DEMO = dict(epochs=2, batch_size=32, subset=640, n_times=1, num_workers=0, teacher_path="random", precise_bn=128)
DEMO_NOTE = "a randomly initialised ResNet-18 teacher (ImageNet weights are not installable offline)"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = script_parser(SCRIPT, __doc__, DEFAULTS)
    add_avmnist_options(parser, images="the teacher's images")
    parser.add_argument("--mj_model", action=FirstChoiceFallback, known=tuple(RESNETS),
                        help="the ImageNet teacher (another value means resnet18)")
    return parse_script_args(parser, argv, required="--data_root", demo_settings=demo_settings)


def demo_settings(demo_dir: Path) -> dict[str, Any]:
    """--demo: real handwritten digits with digits spoken by espeak-ng, built once under `demo_dir`."""
    from datasets.tools.demo import build_demo_avmnist  # demo code, imported only under --demo

    announce_demo(demo_dir, DEMO_NOTE)
    return {**DEMO, "data_root": str(build_demo_avmnist(demo_dir))}


def build_experiment(args: argparse.Namespace) -> Experiment:
    # The student reads spectrograms; the teacher sees images (only loaded when there is a teacher).
    data = load_avmnist(args.data_root, pca=args.pca, images=args.lam > 0, spectrograms=True)
    teacher = ResNetTeacher(args.mj_model, args.teacher_path, seed=args.random_seed) if args.lam > 0 else None
    return Experiment(
        tag=TAG,
        num_classes=NUM_CLASSES,
        feature_dim=feature_dim(RESNETS[args.mj_model], args.teacher_path),
        splits=AvmnistSplits(data, student_inputs=data.spectrograms),
        build_student=build_student,
        schedule=StepDecay(args.lr_decay_step, args.lr_decay_ratio),
        precise_bn=args.precise_bn,
        teacher=teacher,
        teacher_inputs=ImageTeacherInputs(data, args.pca) if teacher else None,
    )


def build_student(args: argparse.Namespace, dim: int) -> Student:
    return Student(SpectrogramResNetStudent(dim, NUM_CLASSES), collate_arrays)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, build and run; the exit code is 0, 1 (a diverged trial), 2 (bad input) or 130 (Ctrl-C)."""
    return run_script(SCRIPT, parse_args, build_experiment, argv)


if __name__ == "__main__":
    sys.exit(main())
