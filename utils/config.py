"""The command line: the options every script shares and their checks.

A script states its README defaults, its teacher choice, its data-path options and its `--demo`
settings itself; `parse_script_args` then applies what every script shares (the demo defaults, the
checks, the device), and checks, before any data or model is loaded, the folders the run will write to
and a `--split_file` it will read. The original code gave all four scripts one copied parser, so a
command copied between scripts may carry the other family's original options: they are still accepted,
hidden from `--help`, and ignored with a notice.

`--resume RUN_DIR`, `--eval_only RUN_DIR` and `--run_name NAME` once its run has begun run with the options recorded
in the run's args.json (utils/recorded_options.py).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from utils.device import resolve_device
from utils.distributed import from_main, is_main, launched_world_size
from utils.experiment import InputError
from utils.recorded_options import check_recorded_options, check_recorded_processes, earlier_run, recorded_defaults
from utils.run_files import read_split_file

# The options of the original scripts (all four shared one parser).
ORIGINAL_OPTIONS = ("--data_root", "--audio_dir", "--text_dir", "--random_seed", "--batch_size", "--epochs",
                    "--learning_rate", "--lr_decay_ratio", "--lr_decay_step", "--language_model", "--mj_model",
                    "--optim", "--lam", "--version", "--pca", "--gpu_ids", "--n_times")
DEMO_DIR = Path.home() / ".cache" / "one-modality-demo"
MAX_SEED = 2**32 - 1  # trial k seeds NumPy with random_seed + k
MAX_AUDIO_SECONDS = 3600.0  # an hour: beyond any utterance (IEMOCAP's longest last about 35 s)



def str2bool(value: str) -> bool:
    """Parse true/false, yes/no, 1/0 (the original's `type=bool` turned "False" into True)."""
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1", "t", "y"):
        return True
    if lowered in ("false", "no", "0", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, yes/no or 1/0, got {value!r}")


def _number(kind: type, value: str, expected: str, check: Callable[[Any], bool]) -> Any:
    try:
        number = kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None
    if not math.isfinite(number) or not check(number):  # inf and nan are no number of any option
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
    return number


def unit_interval(value: str) -> float:
    return _number(float, value, "a number in [0, 1]", lambda x: 0.0 <= x <= 1.0)


def positive_int(value: str) -> int:
    return _number(int, value, "an integer >= 1", lambda x: x >= 1)


def non_negative_int(value: str) -> int:
    return _number(int, value, "an integer >= 0", lambda x: x >= 0)


def positive_float(value: str) -> float:
    return _number(float, value, "a finite number > 0", lambda x: x > 0)


def audio_seconds(value: str) -> float:
    return _number(float, value, f"seconds in (0, {MAX_AUDIO_SECONDS}]", lambda x: 0 < x <= MAX_AUDIO_SECONDS)


def folder_name(value: str) -> str:
    """A run's own folder name under <output_dir>/<script>/: one name, not a path."""
    if value.strip() != value or value in ("", ".", "..") or "/" in value or "\\" in value:
        raise argparse.ArgumentTypeError(f"expected a folder name (no '/', not empty), got {value!r}")
    return value


def path_text(value: str) -> str:
    """A path option's value: an empty one is an unset shell variable, not the current folder."""
    if not value.strip():
        raise argparse.ArgumentTypeError(f"expected a path, got {value!r}")
    return value


def device_name(value: str) -> str:
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")


def gpu_ids(value: str) -> str:
    if all(part.strip().isdigit() for part in value.split(",")):
        return value
    raise argparse.ArgumentTypeError(f"expected comma-separated GPU numbers such as 0 or 0,1, got {value!r}")


def script_parser(script: str, description: str, defaults: dict[str, Any]) -> argparse.ArgumentParser:
    """A script's parser with the options every script shares, and the script's own default values."""
    parser = argparse.ArgumentParser(prog=f"{script}.py", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(**defaults)  # also applies to the options the script adds next
    add_training_options(parser)
    return parser


class FirstChoiceFallback(argparse.Action):
    """A choice where any other value means the first choice, with a notice (the README itself passes
    `--mj_model resnet18` to the audio-teacher script A2V)."""

    def __init__(self, option_strings: list[str], dest: str, known: Sequence[str], **kwargs: Any) -> None:
        super().__init__(option_strings, dest, metavar="{" + ",".join(known) + "}", **kwargs)
        self.known = tuple(known)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, value: Any,
                 option_string: str | None = None) -> None:
        if value not in self.known:
            print(f"notice: {option_string} {value!r} is not one of {', '.join(self.known)}; using {self.known[0]}",
                  file=sys.stderr)
            value = self.known[0]
        setattr(namespace, self.dest, value)


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The options every script shares: the original training options and the new run options."""
    training = parser.add_argument_group("training (the original options)")
    training.add_argument("--random_seed", type=int, help="trial k uses seed random_seed + k")
    training.add_argument("--n_times", type=positive_int, help="number of seeded trials")
    training.add_argument("--epochs", type=positive_int, help="training epochs of each trial")
    training.add_argument("--batch_size", type=positive_int, help="samples per training step")
    training.add_argument("--learning_rate", type=positive_float, help="the optimizer's learning rate")
    training.add_argument("--optim", choices=("sgd", "adam", "adamw"),
                          help="adam / adamw (weight decay 5e-4), sgd (momentum 0.9, weight decay 5e-4)")
    training.add_argument("--lam", type=unit_interval,
                          help="weight of the feature loss: (1 - lam) CE + lam MSE; 0 = the student alone, no teacher")
    training.add_argument("--gpu_ids", type=gpu_ids, default="0", help="comma-separated; CUDA runs on the first")
    training.add_argument("--version", default="", help="free text, recorded in args.json")

    run = parser.add_argument_group("run")
    run.add_argument("--device", type=device_name, default="auto",
                     help="auto, cpu, cuda or cuda:N (wins over --gpu_ids)")
    run.add_argument("--num_workers", type=non_negative_int, help="DataLoader workers (default 4 on CUDA, 0 on CPU)")
    run.add_argument("--output_dir", type=path_text, default="runs", help="every run writes a new folder inside it")
    run.add_argument("--teacher_path", type=path_text,
                     help="local teacher weights (Hugging Face folder or ResNet .pth), or 'random'")
    run.add_argument("--pairing", choices=("unpaired", "paired"), default="unpaired",
                     help="the teacher's training input: another sample's (the paper) or the sample's own (ablation)")
    run.add_argument("--teacher_cache", choices=("on", "off"), default="on",
                     help="on: each teacher feature computed once; off: the teacher runs in the loop")
    run.add_argument("--cache_dir", type=path_text, help="also keep teacher features on disk here, reused across runs")
    run.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none",
                     help="autocast: bf16 (CPU or CUDA) or fp16 (CUDA, with a gradient scaler)")
    run.add_argument("--deterministic", action="store_true", help="deterministic kernels (cudnn, cuBLAS)")
    run.add_argument("--compile", action="store_true",
                     help="torch.compile the student's training step (its first steps compile it: a minute or more)")
    run.add_argument("--subset", type=positive_int, help="keep the first N samples of each split")
    run.add_argument("--split_file", type=path_text, help="reuse the split.json of an earlier trial")
    run.add_argument("--demo", action="store_true", help="run on the built-in small data and models")
    run.add_argument("--demo_dir", type=path_text, default=str(DEMO_DIR),
                     help="where the demo data and models are built and kept")
    run.add_argument("--no_progress", action="store_true", help="no progress bars")
    run.add_argument("--tensorboard", action="store_true",
                     help="also log each trial for TensorBoard in trialK/tensorboard (needs the tensorboard package)")
    earlier = run.add_mutually_exclusive_group()
    earlier.add_argument("--run_name", metavar="NAME", type=folder_name,
                         help="the run's folder is <output_dir>/<script>/NAME; the same command again continues it "
                              "(as --resume does) and on a finished run trains nothing")
    earlier.add_argument("--resume", metavar="RUN_DIR", type=path_text,
                         help="continue an interrupted run in its folder, with its options (only --epochs may grow)")
    earlier.add_argument("--eval_only", metavar="RUN_DIR", type=path_text,
                         help="evaluate each finished trial's best.pt of a run on its recorded test split, with the "
                              "run's options; writes a new folder, never the run's")


def add_avmnist_options(parser: argparse.ArgumentParser, images: str) -> None:
    """AVMNIST's data folder, its images (`images` says whose they are) and the StepLR schedule."""
    avmnist = parser.add_argument_group("AVMNIST")
    avmnist.add_argument("--data_root", type=path_text,
                         help="the AVMNIST folder (original layout, or MultiBench's without WAVs)")
    avmnist.add_argument("--pca", type=str2bool, default=True,
                         help=f"{images}: PCA images (true) or the raw ones (false); true/false, yes/no, 1/0")
    avmnist.add_argument("--precise_bn", type=non_negative_int, default=8192, metavar="N",
                         help="before every evaluation, recompute the student's BatchNorm statistics as a true "
                              "average over N training samples (or all, if fewer); 0 = training's running averages "
                              "(the original)")
    avmnist.add_argument("--lr_decay_step", type=positive_int, help="StepLR: epochs between learning-rate decays")
    avmnist.add_argument("--lr_decay_ratio", type=positive_float, help="StepLR: factor of each decay")


def add_iemocap_options(parser: argparse.ArgumentParser, student: str) -> None:
    """IEMOCAP's data selection, the pretrained `student` to start from, and the original warm-up schedule."""
    iemocap = parser.add_argument_group("IEMOCAP")
    iemocap.add_argument("--audio_dir", type=path_text, help="the folder holding IEMOCAP/ (or IEMOCAP/ itself)")
    iemocap.add_argument("--text_dir", type=path_text, help="folder of <stem>.json transcripts (key 'Utterance'); "
                                            "default: the release's dialog/transcriptions")
    iemocap.add_argument("--classes", type=int, choices=(6, 4), default=6,
                         help="6 (neu hap ang sad exc fru) or 4 (exc merged into hap, fru dropped)")
    iemocap.add_argument("--split", choices=("random", "session"), default="random",
                         help="random per utterance (the original) or session (Session5 test, Session4 val)")
    iemocap.add_argument("--max_audio_seconds", type=audio_seconds,
                         help="keep the first S seconds of every utterance (student and teacher alike)")
    iemocap.add_argument("--warmup_epochs", type=non_negative_int, default=2,
                         help="linear warm-up epochs of the original schedule (with 2, epoch 1 runs at lr 0); 0 = none")
    iemocap.add_argument("--student_path", type=path_text,
                         help=f"local weights to start the student from instead of {student} "
                              "(a Hugging Face folder), or 'random'")
    iemocap.add_argument("--gradient_checkpointing", action="store_true",
                         help="the student keeps fewer activations and computes them again in the backward pass: "
                              "less memory (long utterances), more compute, the same results")


def announce_demo(demo_dir: Path, note: str) -> None:
    """The one stderr line that says where the demo lives and what its models are."""
    print(f"demo: data and models in {demo_dir}; {note}", file=sys.stderr)


def parse_script_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None, required: str | None = None,
                      demo_settings: Callable[[Path], dict[str, Any]] | None = None) -> argparse.Namespace:
    """Parse a script's options and check them; errors exit 2 through argparse. Then check, before any data
    or model is loaded, the folders the run writes to and the split file it reads (InputError).

    `required` is the data option needed unless `--demo` (None: the data needs no option); with `--demo`,
    `demo_settings(demo_dir)` builds (or reuses) the demo data and returns the defaults it runs with (options
    given still win). A script without `demo_settings` has no demo. `args.earlier` is the run the command
    continues or evaluates (an `EarlierRun`), or None.
    """
    _accept_other_original_options(parser)
    script = parser.prog.removesuffix(".py")
    first = argparse.ArgumentParser(prog=parser.prog, add_help=False)  # the options that change the defaults
    first.add_argument("--demo", action="store_true")
    first.add_argument("--demo_dir", type=path_text, default=str(DEMO_DIR))
    first.add_argument("--output_dir", type=path_text, default="runs")
    earlier_options = first.add_mutually_exclusive_group()
    earlier_options.add_argument("--resume", type=path_text)
    earlier_options.add_argument("--eval_only", type=path_text)
    earlier_options.add_argument("--run_name", type=folder_name)
    wanted, _ = first.parse_known_args(argv)
    earlier = from_main(earlier_run(script, wanted) if is_main() else None)
    if wanted.demo and demo_settings is None:
        parser.error("this script has no --demo; give its data option")
    if wanted.demo:
        try:
            parser.set_defaults(**demo_settings(Path(wanted.demo_dir)))
        except OSError as error:  # built on first use: a file or a read-only folder in the way
            raise InputError(f"--demo_dir {wanted.demo_dir}: cannot build the demo there ({error}); "
                             "expected a folder this user can write to") from None
    if earlier:
        parser.set_defaults(**recorded_defaults(parser, earlier.recorded, earlier.folder / "args.json"))
    args = parser.parse_args(argv)
    args.script = script
    args.earlier = earlier
    _ignore_other_original_options(args)
    if earlier:
        check_recorded_options(args, earlier)
    if earlier and not args.eval_only:
        args.resume = str(earlier.folder)
        check_recorded_processes(earlier)
    if args.amp == "fp16" and not resolve_device(args.device, args.gpu_ids).type == "cuda":
        parser.error("--amp fp16 needs CUDA (use --amp bf16 on the CPU)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device} asked for CUDA, but no CUDA device is available")
    if required and not args.demo and getattr(args, required.removeprefix("--")) is None:
        parser.error(f"{required} is required (or --demo for the built-in data)")
    last_seed = args.random_seed + args.n_times - 1
    if args.random_seed < 0 or last_seed > MAX_SEED:
        parser.error(f"--random_seed {args.random_seed} with --n_times {args.n_times} gives trial seeds "
                     f"{args.random_seed}..{last_seed}; expected seeds in 0..{MAX_SEED} (NumPy's range)")
    if args.batch_size % launched_world_size():
        parser.error(f"--batch_size {args.batch_size} is the global batch and must divide among the "
                     f"{launched_world_size()} processes; expected a multiple of {launched_world_size()}")
    if args.num_workers is None:
        args.num_workers = 4 if resolve_device(args.device, args.gpu_ids).type == "cuda" else 0
    check_run_paths(args)
    return args


_OTHER_FAMILY = "other_family_options"


def _accept_other_original_options(parser: argparse.ArgumentParser) -> None:
    """The original options this script does not use: accepted, hidden from --help."""
    for name in ORIGINAL_OPTIONS:
        try:
            parser.add_argument(name, dest=f"{_OTHER_FAMILY}:{name}", help=argparse.SUPPRESS)
        except argparse.ArgumentError:  # the script's own option
            continue


def _ignore_other_original_options(args: argparse.Namespace) -> None:
    """Drop the hidden options from `args`, with one notice naming those that were given."""
    given = []
    for dest in [d for d in vars(args) if d.startswith(_OTHER_FAMILY)]:
        if getattr(args, dest) is not None:
            given.append(dest.split(":", 1)[1])
        delattr(args, dest)
    if given:
        print(f"notice: {args.script}.py does not use {', '.join(given)} (an option of the other experiments); "
              "ignored", file=sys.stderr)


def check_run_paths(args: argparse.Namespace) -> None:
    """The run folder's parent and `--cache_dir` can be made and written to; `--split_file` is a valid split."""
    check_writable_folder(Path(args.output_dir) / args.script, "--output_dir", args.output_dir)
    if args.cache_dir is not None:
        check_writable_folder(Path(args.cache_dir), "--cache_dir", args.cache_dir)
    if args.split_file is not None:
        read_split_file(args.split_file)


def check_writable_folder(folder: Path, option: str, given: str) -> None:
    """`folder` is a folder, or can be made one, that this user can write to (`option given` says where it
    came from). Checks the nearest part of the path that exists."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{option} {given}: {existing} is a file; expected a folder (or a path where one can be made)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{option} {given}: cannot write to {existing}; expected a folder this user can write to")
