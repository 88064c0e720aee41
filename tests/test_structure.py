"""The repository's structure: imports flow one way between the packages, and adding an experiment is one new
script (a fifth, toy experiment written into a copy of the repository runs end to end, no existing file edited)."""

import ast
import shutil
import textwrap

import pytest

from tests.helpers import REPO, results_of, run_folder, run_script

# AVMNIST image -> image: a frozen ResNet-18 on the digit image helps an image ResNet-18 on the same images.
TOY_SCRIPT = '''
"""AVMNIST vision -> vision: a toy experiment, as the README's "Adding an experiment" describes."""

import argparse
import sys
from typing import Sequence

from datasets.avmnist import NUM_CLASSES, AvmnistSplits, ImageTeacherInputs, collate_arrays, load_avmnist
from models.pretrained import feature_dim
from models.resnet import RESNETS, ImageResNetStudent, ResNetTeacher
from utils.config import FirstChoiceFallback, add_avmnist_options, parse_script_args, script_parser
from utils.entry import run_script
from utils.experiment import Experiment, Student

SCRIPT = "AVMNIST_V2V"
TAG = "AVMNIST V->V"
DEFAULTS = dict(epochs=2, learning_rate=1e-3, batch_size=16, optim="adam", lam=0.3, n_times=1, random_seed=7,
                lr_decay_step=25, lr_decay_ratio=0.1, mj_model="resnet18")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = script_parser(SCRIPT, __doc__, DEFAULTS)
    add_avmnist_options(parser, images="the images of teacher and student")
    parser.add_argument("--mj_model", action=FirstChoiceFallback, known=tuple(RESNETS), help="the image teacher")
    return parse_script_args(parser, argv, required="--data_root")


def build_experiment(args: argparse.Namespace) -> Experiment:
    data = load_avmnist(args.data_root, pca=args.pca, images=True, spectrograms=False)
    teacher = ResNetTeacher(args.mj_model, args.teacher_path, seed=args.random_seed) if args.lam > 0 else None
    return Experiment(tag=TAG, num_classes=NUM_CLASSES,
                      feature_dim=feature_dim(RESNETS[args.mj_model], args.teacher_path),
                      splits=AvmnistSplits(data, student_inputs=data.images), build_student=build_student,
                      schedule="step", teacher=teacher,
                      teacher_inputs=ImageTeacherInputs(data, args.pca) if teacher else None)


def build_student(args: argparse.Namespace, dim: int) -> Student:
    return Student(ImageResNetStudent(dim, NUM_CLASSES), collate_arrays)


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(SCRIPT, parse_args, build_experiment, argv)


if __name__ == "__main__":
    sys.exit(main())
'''


def source_files(root):
    return {path.relative_to(root): path.read_bytes() for path in root.rglob("*.py") if "tests" not in path.parts}


def test_a_fifth_experiment_is_one_new_script(avmnist, tiny_models, tmp_path):
    copy = tmp_path / "repository"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".git", "tests", "runs", "__pycache__", ".venv"))
    before = source_files(copy)
    (copy / "AVMNIST_V2V.py").write_text(textwrap.dedent(TOY_SCRIPT).lstrip())

    process = run_script("AVMNIST_V2V.py", "--data_root", str(avmnist), "--teacher_path", tiny_models["resnet18"],
                         "--subset", "40", "--output_dir", str(tmp_path / "runs"), cwd=copy)
    results = results_of(process)
    assert process.stdout.splitlines()[-1].startswith("Overall test acc: ")
    assert process.stdout.splitlines()[-1].endswith(" AVMNIST V->V")
    assert run_folder(process).parent.name == "AVMNIST_V2V"
    assert results["experiment"] == "AVMNIST V->V" and results["teacher"]["name"] == "resnet18"
    assert [(trial["seed"], trial["test"]["latent_loss"] > 0) for trial in results["trials"]] == [(7, True)]
    after = source_files(copy)
    assert after.keys() - before.keys() == {copy.joinpath("AVMNIST_V2V.py").relative_to(copy)}
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
