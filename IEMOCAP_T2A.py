"""IEMOCAP text -> audio: a frozen language model (teacher) helps a wav2vec2 emotion classifier (student).

    python IEMOCAP_T2A.py --audio_dir /your/own/IEMOCAP_path --text_dir /your/own/IEMOCAP_path/IEMOCAP/texts/

In training the teacher reads the template "This is about Emotion {k}." with a random k, not the
utterance's transcript (the paper's unpaired setting); validation and test report the latent loss
against the utterance's own transcript, as a diagnostic.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from datasets.audio import normalize_waveform
from datasets.collate import Texts, WaveformCollate, WaveformFiles
from datasets.iemocap import draw_iemocap_split, iemocap_splits, load_iemocap
from datasets.pairing import TemplatePartners
from models.pretrained import feature_dim
from models.text import TextTeacher
from models.wav2vec2 import Wav2Vec2AudioStudent
from utils.trials import Experiment, script_main

SCRIPT = "IEMOCAP_T2A"
SHARES = (0.8, 0.1)  # train, val; test takes the rest


def template(k: int) -> str:
    return f"This is about Emotion {k}."


def build_experiment(args: argparse.Namespace) -> Experiment:
    corpus = load_iemocap(args.audio_dir, args.text_dir, args.classes)
    audio = WaveformFiles([u.wav_path for u in corpus.utterances], args.max_audio_seconds)
    # Teacher keys: 0..C-1 are the templates, C + i is utterance i's transcript.
    teacher_inputs = Texts([template(k) for k in range(args.classes)] + corpus.texts)
    dim = feature_dim(args.language_model, args.teacher_path)
    teacher = TextTeacher(args.language_model, args.teacher_path) if args.lam > 0 else None
    return Experiment(
        tag="IEMOCAP T->A",
        num_classes=args.classes,
        feature_dim=dim,
        draw_split=lambda rng: draw_iemocap_split(corpus, args.split, SHARES, rng),
        build_splits=lambda record: iemocap_splits(corpus, record, audio, key_offset=args.classes,
                                                   transform=normalize_waveform),
        build_student=lambda: Wav2Vec2AudioStudent(dim, args.classes, args.student_path),
        collate_for=lambda student: WaveformCollate(student.min_input_samples),
        unpaired_partners=lambda train, rng: TemplatePartners(np.arange(args.classes), rng),
        schedule="warmup_cosine",
        teacher=teacher,
        teacher_inputs=teacher_inputs if teacher else None,
        detailed_metrics=True,
    )


main = script_main(SCRIPT, build_experiment)


if __name__ == "__main__":
    sys.exit(main())
