"""The repository's structure: imports flow one way between the packages, and adding an experiment is one new
script and one data module (a fifth experiment written into a copy of the repository runs end to end, no existing
file edited)."""

import ast
import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO, results_of, run_as_user, run_folder

# A fifth experiment unlike AVMNIST: a new data set (scikit-learn's digits) and an image student helped by a
# frozen *text* teacher fed template sentences (the paper's vision-language recipe).
TOY_DATA = '''
"""scikit-learn's handwritten digits (1,797 images of 8x8, values 0..16), as 1x8x8 images in [0, 1]."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.utils.data import Dataset

from utils.experiment import Batch, InputError, Split

NUM_CLASSES = 10


class DigitImages(Dataset):
    """(image, label, position) of the digits at `indices`."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray, indices: np.ndarray) -> None:
        self.images, self.labels, self.indices = images, labels, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int, int]:
        index = self.indices[position]
        return self.images[index], int(self.labels[index]), position


def collate_digits(items: list[tuple[torch.Tensor, int, int]]) -> Batch:
    return Batch({"x": torch.stack([item[0] for item in items])}, torch.tensor([item[1] for item in items]),
                 np.array([item[2] for item in items]))


class DigitSplits:
    """70 / 15 / 15 % of a seeded permutation. A digit's own teacher input is the sentence of its class, whose
    key is its label."""

    def __init__(self) -> None:
        digits = load_digits()
        self.images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
        self.labels = digits.target.astype(np.int64)

    def draw(self, rng: np.random.Generator) -> dict[str, list[int]]:
        order = rng.permutation(len(self.labels)).tolist()
        n_train, n_val = int(0.7 * len(order)), int(0.15 * len(order))
        return {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}

    def build(self, record: dict[str, list]) -> dict[str, Split]:
        splits = {}
        for name, items in record.items():
            if not items or not all(type(i) is int and 0 <= i < len(self.labels) for i in items):
                raise InputError(f"split {name!r} must be digit numbers in 0..{len(self.labels) - 1}")
            indices = np.asarray(items, dtype=np.int64)
            splits[name] = Split(DigitImages(self.images, self.labels, indices), self.labels[indices])
        return splits
'''

TOY_SCRIPT = '''
"""Digits text -> vision: a frozen MiniLM (teacher) reading "This is about class k." helps an image ResNet-18.

In training the teacher reads the sentence of a random class k (the paper's vision-language recipe);
validation and test report the latent loss against the sentence of the digit's own class.
"""

import argparse
import sys
from typing import Sequence

import numpy as np

from datasets.collate import Texts
from datasets.digits import NUM_CLASSES, DigitSplits, collate_digits
from models.pretrained import feature_dim, minilm_folder
from models.resnet import ImageResNetStudent
from models.text import LANGUAGE_MODELS, TextTeacher
from utils.config import parse_script_args, positive_int, script_parser
from utils.experiment import Experiment, Student
from utils.optim import StepDecay
from utils.run import run_script

SCRIPT = "DIGITS_T2V"
TAG = "DIGITS T->V"
DEFAULTS = dict(epochs=3, learning_rate=1e-3, batch_size=32, optim="adam", lam=0.3, n_times=1, random_seed=7)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = script_parser(SCRIPT, __doc__, DEFAULTS)
    parser.add_argument("--lr_step", type=positive_int, default=10, help="epochs between learning-rate halvings")
    return parse_script_args(parser, argv)


def build_experiment(args: argparse.Namespace) -> Experiment:
    weights = args.teacher_path or minilm_folder()
    teacher = TextTeacher("bert", weights) if args.lam > 0 else None
    return Experiment(
        tag=TAG,
        num_classes=NUM_CLASSES,
        feature_dim=feature_dim(LANGUAGE_MODELS["bert"], weights),
        splits=DigitSplits(),
        build_student=build_student,
        schedule=StepDecay(args.lr_step, 0.5),
        teacher=teacher,
        teacher_inputs=Texts([f"This is about class {k}." for k in range(NUM_CLASSES)]) if teacher else None,
        unpaired_pool=np.arange(NUM_CLASSES),  # the sentences' keys
        precise_bn=1024,
    )


def build_student(args: argparse.Namespace, dim: int) -> Student:
    return Student(ImageResNetStudent(dim, NUM_CLASSES, in_channels=1), collate_digits)


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(SCRIPT, parse_args, build_experiment, argv)


if __name__ == "__main__":
    sys.exit(main())
'''


def source_files(root):
    return {path.relative_to(root): path.read_bytes() for path in root.rglob("*.py") if "tests" not in path.parts}


def test_a_fifth_experiment_is_one_script_and_one_data_module(tmp_path):
    copy = tmp_path / "repository"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".git", "tests", "runs", "__pycache__", ".venv"))
    before = source_files(copy)
    (copy / "datasets" / "digits.py").write_text(TOY_DATA.lstrip())
    (copy / "DIGITS_T2V.py").write_text(TOY_SCRIPT.lstrip())

    process = run_as_user("DIGITS_T2V.py", "--subset", "160", "--epochs", "2", "--output_dir", str(tmp_path / "runs"),
                          cwd=copy)
    results = results_of(process)
    assert process.stdout.splitlines()[-1].startswith("Overall test acc: ")
    assert process.stdout.splitlines()[-1].endswith(" DIGITS T->V")
    assert run_folder(process).parent.name == "DIGITS_T2V"
    assert results["experiment"] == "DIGITS T->V" and results["teacher"]["dim"] == 384
    (trial,) = results["trials"]
    assert trial["seed"] == 7 and trial["test"]["latent_loss"] > 0
    assert trial["test"]["acc"] > 0.3  # 10 classes: chance is 0.1; this run reached 0.77
    after = source_files(copy)
    assert after.keys() - before.keys() == {Path("DIGITS_T2V.py"), Path("datasets/digits.py")}
    assert all(after[name] == content for name, content in before.items())  # no existing file was edited


# Which of the project's packages each package may import (README, "Layout").
ALLOWED_IMPORTS = {"utils": {"utils"}, "datasets": {"utils", "datasets"}, "models": {"utils", "models"}}


def imported_packages(path):
    tree = ast.parse(path.read_text())
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    names += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    return {name.split(".")[0] for name in names} & set(ALLOWED_IMPORTS)


@pytest.mark.parametrize("package", sorted(ALLOWED_IMPORTS))
def test_imports_flow_one_way(package):
    for path in (REPO / package).rglob("*.py"):
        assert imported_packages(path) <= ALLOWED_IMPORTS[package], path


def test_utils_modules_import_only_those_above_them_in_the_readme():
    layout = (REPO / "README.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    order = [line.split("`")[1].removesuffix(".py") for line in layout.splitlines() if line.startswith("| `")]
    assert sorted(order) == sorted(path.stem for path in (REPO / "utils").glob("*.py") if path.stem != "__init__")
    for position, module in enumerate(order):
        tree = ast.parse((REPO / "utils" / f"{module}.py").read_text())
        imported = {node.module.split(".")[1] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("utils.")}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                     and node.module == "utils" for alias in node.names}
        assert imported <= set(order[:position]), (module, imported - set(order[:position]))
