"""AVMNIST audio -> vision: a frozen wav2vec2 (teacher) helps an image ResNet-18 (student).

    python AVMNIST_A2V.py --data_root /your/own/avmnist_path        # the README command's values
"""

from __future__ import annotations

import argparse
import sys

from datasets.avmnist import NUM_CLASSES, avmnist_splits, collate_arrays, draw_avmnist_split, load_avmnist, wav_paths
from datasets.collate import WaveformFiles
from datasets.pairing import OtherSamplePartners
from models.pretrained import feature_dim
from models.resnet import ImageResNetStudent
from models.wav2vec2 import Wav2Vec2Teacher
from utils.trials import Experiment, script_main

SCRIPT = "AVMNIST_A2V"


def build_experiment(args: argparse.Namespace) -> Experiment:
    # The student reads images; the teacher hears each item's spoken digit (WAVs, only with a teacher).
    data = load_avmnist(args.data_root, pca=args.pca, images=True, spectrograms=False)
    dim = feature_dim(args.mj_model, args.teacher_path)
    teacher_inputs = WaveformFiles(wav_paths(data)) if args.lam > 0 else None
    teacher = Wav2Vec2Teacher(args.mj_model, args.teacher_path) if args.lam > 0 else None
    return Experiment(
        tag="AVMNIST A->V",
        num_classes=NUM_CLASSES,
        feature_dim=dim,
        draw_split=lambda rng: draw_avmnist_split(data, rng),
        build_splits=lambda record: avmnist_splits(data, record, data.images),
        build_student=lambda: ImageResNetStudent(dim, NUM_CLASSES),
        collate_for=lambda student: collate_arrays,
        unpaired_partners=lambda train, rng: OtherSamplePartners(train.teacher_keys, rng),
        schedule="step",
        teacher=teacher,
        teacher_inputs=teacher_inputs,
    )


main = script_main(SCRIPT, build_experiment)


if __name__ == "__main__":
    sys.exit(main())
