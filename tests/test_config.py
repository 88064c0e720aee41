"""Each script's command line: its README defaults, its own options in --help, the other family's original
options accepted but hidden, and bad values as argparse errors (exit 2)."""

import re

import pytest

import AVMNIST_A2V
import AVMNIST_V2A
import IEMOCAP_A2T
import IEMOCAP_T2A

README_VALUES = {
    AVMNIST_A2V: dict(epochs=30, learning_rate=1e-3, batch_size=32, optim="adam", lam=0.3, lr_decay_step=25,
                      lr_decay_ratio=0.1, n_times=3, random_seed=42),
    AVMNIST_V2A: dict(epochs=30, learning_rate=1e-3, batch_size=32, optim="adam", lam=0.3, lr_decay_step=25,
                      lr_decay_ratio=0.1, mj_model="resnet18", n_times=3, random_seed=42),
    IEMOCAP_A2T: dict(epochs=30, learning_rate=5e-5, batch_size=4, optim="adam", lam=0.3, mj_model="base",
                      n_times=3, random_seed=1234),
    IEMOCAP_T2A: dict(epochs=30, learning_rate=5e-5, batch_size=4, optim="adam", lam=0.3, language_model="bert",
                      n_times=3, random_seed=1234),
}
AVMNIST_ONLY = ("--data_root", "--pca", "--lr_decay_step", "--lr_decay_ratio")
IEMOCAP_ONLY = ("--audio_dir", "--text_dir", "--classes", "--split", "--warmup_epochs", "--max_audio_seconds",
                "--student_path")
SCRIPTS = sorted(README_VALUES, key=lambda module: module.SCRIPT)


def required(script):
    return ["--data_root", "D"] if script in (AVMNIST_A2V, AVMNIST_V2A) else ["--audio_dir", "D"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda module: module.SCRIPT)
def test_defaults_are_the_readme_values(script):
    args = script.parse_args(required(script))
    for name, value in README_VALUES[script].items():
        assert getattr(args, name) == value, name
    assert args.pairing == "unpaired" and args.teacher_cache == "on" and args.script == script.SCRIPT
    assert args.num_workers == 0  # no CUDA here


@pytest.mark.parametrize("script, own, foreign", [
    (AVMNIST_V2A, AVMNIST_ONLY + ("--mj_model",), IEMOCAP_ONLY + ("--language_model",)),
    (AVMNIST_A2V, AVMNIST_ONLY + ("--mj_model",), IEMOCAP_ONLY + ("--language_model",)),
    (IEMOCAP_T2A, IEMOCAP_ONLY + ("--language_model",), AVMNIST_ONLY + ("--mj_model",)),
    (IEMOCAP_A2T, IEMOCAP_ONLY + ("--mj_model",), AVMNIST_ONLY + ("--language_model",)),
], ids=lambda value: getattr(value, "SCRIPT", ""))
def test_help_shows_each_own_option_with_a_help_line_and_nothing_else(script, own, foreign, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.parse_args(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    options = help_text[help_text.index("options:"):]  # after the usage line and the description
    for option in own + ("--lam", "--teacher_path", "--demo", "--epochs"):
        assert re.search(rf"^  {option}\b", options, re.M), option
    for option in foreign:
        assert not re.search(rf"{option}\b", help_text), option
    # Each option's entry (its indented lines) holds a description besides its flags and metavar.
    for entry in re.split(r"\n(?=  -)", options)[1:]:
        indented = " ".join(line for line in entry.splitlines() if line.startswith(" "))
        words = [word for word in indented.split() if not word.startswith(("-", "{")) and not word.isupper()]
        assert words, entry


@pytest.mark.parametrize("script, foreign", [
    (AVMNIST_A2V, ["--audio_dir", "X", "--text_dir", "Y", "--language_model", "bert"]),
    (IEMOCAP_T2A, ["--data_root", "X", "--pca", "false", "--mj_model", "large", "--lr_decay_step", "3"]),
    (IEMOCAP_A2T, ["--language_model", "roberta", "--lr_decay_ratio", "0.5"]),
], ids=lambda value: getattr(value, "SCRIPT", ""))
def test_other_family_original_options_are_accepted_noted_once_and_dropped(script, foreign, capsys):
    args = script.parse_args([*required(script), *foreign])
    notices = [line for line in capsys.readouterr().err.splitlines() if "does not use" in line]
    assert len(notices) == 1
    for option in foreign[::2]:
        assert option in notices[0]
        assert not hasattr(args, option[2:])


def test_new_options_of_the_other_family_are_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        AVMNIST_V2A.parse_args(["--data_root", "D", "--classes", "4"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --classes" in capsys.readouterr().err


@pytest.mark.parametrize("value, expected", [("false", False), ("False", False), ("no", False), ("0", False),
                                             ("true", True), ("yes", True), ("1", True)])
def test_pca_parses_booleans(value, expected):
    assert AVMNIST_A2V.parse_args(["--data_root", "D", "--pca", value]).pca is expected


def test_readme_passes_resnet18_to_a2v_which_falls_back_to_base(capsys):
    args = AVMNIST_A2V.parse_args(["--data_root", "D", "--mj_model", "resnet18"])
    assert args.mj_model == "base"
    notices = [line for line in capsys.readouterr().err.splitlines() if "--mj_model 'resnet18'" in line]
    assert len(notices) == 1


@pytest.mark.parametrize("bad", [["--lam", "1.5"], ["--lam", "-0.1"], ["--epochs", "0"], ["--n_times", "0"],
                                 ["--batch_size", "0"], ["--learning_rate", "0"], ["--warmup_epochs", "-1"],
                                 ["--optim", "rmsprop"], ["--amp", "fp16"], ["--language_model", "gpt2"],
                                 ["--device", "tpu"], ["--gpu_ids", "a"], ["--classes", "5"]])
def test_invalid_values_exit_2_with_a_message(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        IEMOCAP_T2A.parse_args(["--audio_dir", "D", *bad])
    assert exit_info.value.code == 2
    assert "IEMOCAP_T2A.py: error:" in capsys.readouterr().err


def test_invalid_pca_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        AVMNIST_V2A.parse_args(["--data_root", "D", "--pca", "maybe"])
    assert exit_info.value.code == 2 and "expected true/false" in capsys.readouterr().err


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda module: module.SCRIPT)
def test_data_folder_is_required_without_demo(script, capsys):
    with pytest.raises(SystemExit):
        script.parse_args([])
    assert f"{required(script)[0]} is required" in capsys.readouterr().err


def test_lam_edges_are_accepted():
    assert AVMNIST_V2A.parse_args(["--data_root", "D", "--lam", "0"]).lam == 0.0
    assert AVMNIST_V2A.parse_args(["--data_root", "D", "--lam", "1"]).lam == 1.0
