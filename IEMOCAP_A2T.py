"""IEMOCAP audio -> text: a frozen wav2vec2 (teacher) helps a BERT emotion classifier (student).

    python IEMOCAP_A2T.py --audio_dir /your/own/IEMOCAP_path --text_dir /your/own/IEMOCAP_path/IEMOCAP/texts/

In training the teacher hears another, uniformly drawn training utterance (the paper's unpaired
setting); validation and test report the latent loss against the utterance's own audio.
"""

from __future__ import annotations

import argparse
import sys

from datasets.collate import TokenizingCollate, WaveformFiles
from datasets.iemocap import draw_iemocap_split, iemocap_splits, load_iemocap
from datasets.pairing import OtherSamplePartners
from models.pretrained import feature_dim
from models.text import BertTextStudent
from models.wav2vec2 import Wav2Vec2Teacher
from utils.trials import Experiment, script_main

SCRIPT = "IEMOCAP_A2T"
SHARES = (0.75, 0.1)  # train, val; test takes the rest


def build_experiment(args: argparse.Namespace) -> Experiment:
    corpus = load_iemocap(args.audio_dir, args.text_dir, args.classes)
    # Teacher keys: utterance i's audio is key i.
    audio = WaveformFiles([u.wav_path for u in corpus.utterances], args.max_audio_seconds)
    dim = feature_dim(args.mj_model, args.teacher_path)
    teacher = Wav2Vec2Teacher(args.mj_model, args.teacher_path) if args.lam > 0 else None
    return Experiment(
        tag="IEMOCAP A->T",
        num_classes=args.classes,
        feature_dim=dim,
        draw_split=lambda rng: draw_iemocap_split(corpus, args.split, SHARES, rng),
        build_splits=lambda record: iemocap_splits(corpus, record, corpus.texts),
        build_student=lambda: BertTextStudent(dim, args.classes, args.student_path),
        collate_for=lambda student: TokenizingCollate(student.tokenize),
        unpaired_partners=lambda train, rng: OtherSamplePartners(train.teacher_keys, rng),
        schedule="warmup_cosine",
        teacher=teacher,
        teacher_inputs=audio if teacher else None,
        detailed_metrics=True,
    )


main = script_main(SCRIPT, build_experiment)


if __name__ == "__main__":
    sys.exit(main())
