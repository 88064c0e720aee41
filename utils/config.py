"""The command line shared by the four scripts, with each script's README values as defaults.

All four scripts accept the original option names (the original parsers were copies of one another);
the options that only one family uses are still accepted by the others, and recorded, so that a
command copied between scripts never fails on an unknown option.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

import torch

SCRIPT_DEFAULTS: dict[str, dict[str, Any]] = {
    "AVMNIST_V2A": dict(epochs=30, learning_rate=1e-3, batch_size=32, optim="adam", lam=0.3, n_times=3,
                        random_seed=42, lr_decay_step=25, lr_decay_ratio=0.1, mj_model="resnet18"),
    "AVMNIST_A2V": dict(epochs=30, learning_rate=1e-3, batch_size=32, optim="adam", lam=0.3, n_times=3,
                        random_seed=42, lr_decay_step=25, lr_decay_ratio=0.1, mj_model="base"),
    "IEMOCAP_T2A": dict(epochs=30, learning_rate=5e-5, batch_size=4, optim="adam", lam=0.3, n_times=3,
                        random_seed=1234, lr_decay_step=25, lr_decay_ratio=0.1, mj_model="base",
                        language_model="bert"),
    "IEMOCAP_A2T": dict(epochs=30, learning_rate=5e-5, batch_size=4, optim="adam", lam=0.3, n_times=3,
                        random_seed=1234, lr_decay_step=25, lr_decay_ratio=0.1, mj_model="base",
                        language_model="bert"),
}

# Which teacher names --mj_model may pick; anything else falls back to the first, with a notice,
# because the README itself passes `--mj_model resnet18` to the audio-teacher script A2V.
MJ_MODEL_CHOICES: dict[str, tuple[str, ...]] = {
    "AVMNIST_V2A": ("resnet18", "resnet34"),
    "AVMNIST_A2V": ("base", "large"),
    "IEMOCAP_A2T": ("base", "large"),
}
LANGUAGE_MODELS = ("bert", "bert-large", "roberta")


def str2bool(value: str) -> bool:
    """Parse true/false, yes/no, 1/0 (the original's `type=bool` turned "False" into True)."""
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1", "t", "y"):
        return True
    if lowered in ("false", "no", "0", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, yes/no or 1/0, got {value!r}")


def _number(kind: type, check, expected: str):
    def parse(value: str):
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None
        if not check(number):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
        return number

    parse.__name__ = expected  # argparse names the type in its messages
    return parse


unit_interval = _number(float, lambda x: 0.0 <= x <= 1.0, "a number in [0, 1]")
positive_int = _number(int, lambda x: x >= 1, "an integer >= 1")
non_negative_int = _number(int, lambda x: x >= 0, "an integer >= 0")
positive_float = _number(float, lambda x: x > 0, "a number > 0")


def device_name(value: str) -> str:
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")


def gpu_ids(value: str) -> str:
    if all(part.strip().isdigit() for part in value.split(",")):
        return value
    raise argparse.ArgumentTypeError(f"expected comma-separated GPU numbers such as 0 or 0,1, got {value!r}")


def build_parser(script: str) -> argparse.ArgumentParser:
    defaults = SCRIPT_DEFAULTS[script]
    parser = argparse.ArgumentParser(prog=f"{script}.py", description=f"{script}: one modality model helps train another.")
    original = parser.add_argument_group("original options")
    original.add_argument("--data_root", help="AVMNIST folder (original or MultiBench layout)")
    original.add_argument("--audio_dir", help="IEMOCAP: the folder holding IEMOCAP/ (or IEMOCAP/ itself)")
    original.add_argument("--text_dir", help="IEMOCAP: folder of <stem>.json transcripts (key 'Utterance')")
    original.add_argument("--random_seed", type=int)
    original.add_argument("--batch_size", type=positive_int)
    original.add_argument("--epochs", type=positive_int)
    original.add_argument("--learning_rate", type=positive_float)
    original.add_argument("--lr_decay_ratio", type=positive_float, help="AVMNIST StepLR gamma")
    original.add_argument("--lr_decay_step", type=positive_int, help="AVMNIST StepLR step (epochs)")
    original.add_argument("--language_model", choices=LANGUAGE_MODELS, help="T2A teacher")
    original.add_argument("--mj_model", help="the teacher: resnet18|resnet34 (V2A), base|large (A2V, A2T)")
    original.add_argument("--optim", choices=("sgd", "adam", "adamw"))
    original.add_argument("--lam", type=unit_interval, help="weight of the latent loss; 0 = no teacher")
    original.add_argument("--version", default="", help="free text, recorded")
    original.add_argument("--pca", type=str2bool, default=True, help="AVMNIST: PCA images (true) or raw (false)")
    original.add_argument("--gpu_ids", type=gpu_ids, default="0", help="comma-separated; CUDA runs on the first")
    original.add_argument("--n_times", type=positive_int, help="number of seeded trials")

    new = parser.add_argument_group("new options")
    new.add_argument("--device", type=device_name, default="auto", help="auto, cpu, cuda or cuda:N")
    new.add_argument("--num_workers", type=non_negative_int, help="DataLoader workers (default 4 on CUDA, 0 on CPU)")
    new.add_argument("--output_dir", default="runs")
    new.add_argument("--teacher_path", help="local teacher weights: HF folder, ResNet .pth, or 'random'")
    new.add_argument("--student_path", help="local student init (IEMOCAP): HF folder or 'random'")
    new.add_argument("--pairing", choices=("unpaired", "paired"), default="unpaired")
    new.add_argument("--teacher_cache", choices=("on", "off"), default="on")
    new.add_argument("--cache_dir", help="keep teacher features on disk here, reused across runs")
    new.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    new.add_argument("--deterministic", action="store_true")
    new.add_argument("--subset", type=positive_int, help="keep the first N samples of each split")
    new.add_argument("--split_file", help="reuse the split.json of an earlier trial")
    new.add_argument("--demo", action="store_true", help="run on the built-in small data and models")
    new.add_argument("--demo_dir", help="where the demo data and models are built and cached")
    new.add_argument("--no_progress", action="store_true")
    iemocap = parser.add_argument_group("IEMOCAP options")
    iemocap.add_argument("--max_audio_seconds", type=positive_float)
    iemocap.add_argument("--warmup_epochs", type=non_negative_int, default=2)
    iemocap.add_argument("--classes", type=int, choices=(6, 4), default=6)
    iemocap.add_argument("--split", choices=("random", "session"), default="random")
    parser.set_defaults(**defaults)
    return parser


def parse_args(script: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the options of `script`; errors exit 2 through argparse."""
    parser = build_parser(script)
    known, _ = parser.parse_known_args(argv)
    if known.demo:
        from utils.demo import demo_defaults  # builds data on first use: only imported for --demo

        parser.set_defaults(**demo_defaults(script, known.demo_dir))
    args = parser.parse_args(argv)
    args.script = script
    choices = MJ_MODEL_CHOICES.get(script)
    if choices and args.mj_model not in choices:
        print(f"notice: --mj_model {args.mj_model!r} is not one of {', '.join(choices)}; using {choices[0]}",
              file=sys.stderr)
        args.mj_model = choices[0]
    if args.amp == "fp16" and not resolve_device(args).type == "cuda":
        parser.error("--amp fp16 needs CUDA (use --amp bf16 on the CPU)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device} asked for CUDA, but no CUDA device is available")
    needed = "--data_root" if script.startswith("AVMNIST") else "--audio_dir"
    if not args.demo and not getattr(args, needed[2:]):
        parser.error(f"{needed} is required (or --demo for the built-in data)")
    if args.num_workers is None:
        args.num_workers = 4 if resolve_device(args).type == "cuda" else 0
    return args


def resolve_device(args: argparse.Namespace) -> torch.device:
    """`--device cuda:N` wins over --gpu_ids; otherwise CUDA means cuda:<first of --gpu_ids>."""
    if args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if args.device.startswith("cuda:"):
        return torch.device(args.device)
    return torch.device(f"cuda:{int(args.gpu_ids.split(',')[0])}")
