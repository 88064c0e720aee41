"""AVMNIST vision -> audio: a frozen ImageNet ResNet (teacher) helps a spectrogram ResNet-18 (student).

    python AVMNIST_V2A.py --data_root /your/own/avmnist_path        # the README command's values
"""

from __future__ import annotations

import argparse
import sys

from datasets.avmnist import (NUM_CLASSES, ImageTeacherInputs, avmnist_splits, collate_arrays,
                              draw_avmnist_split, load_avmnist)
from datasets.pairing import OtherSamplePartners
from models.pretrained import feature_dim
from models.resnet import ResNetTeacher, SpectrogramResNetStudent
from utils.trials import Experiment, script_main

SCRIPT = "AVMNIST_V2A"


def build_experiment(args: argparse.Namespace) -> Experiment:
    # The student reads spectrograms; the teacher sees images (only loaded when there is a teacher).
    data = load_avmnist(args.data_root, pca=args.pca, images=args.lam > 0, spectrograms=True)
    dim = feature_dim(args.mj_model, args.teacher_path)
    teacher = ResNetTeacher(args.mj_model, args.teacher_path) if args.lam > 0 else None
    return Experiment(
        tag="AVMNIST V->A",
        num_classes=NUM_CLASSES,
        feature_dim=dim,
        draw_split=lambda rng: draw_avmnist_split(data, rng),
        build_splits=lambda record: avmnist_splits(data, record, data.spectrograms),
        build_student=lambda: SpectrogramResNetStudent(dim, NUM_CLASSES),
        collate_for=lambda student: collate_arrays,
        unpaired_partners=lambda train, rng: OtherSamplePartners(train.teacher_keys, rng),
        schedule="step",
        teacher=teacher,
        teacher_inputs=ImageTeacherInputs(data, args.pca) if teacher else None,
    )


main = script_main(SCRIPT, build_experiment)


if __name__ == "__main__":
    sys.exit(main())
