import pytest

from utils.config import SCRIPT_DEFAULTS, parse_args

README_VALUES = {
    "AVMNIST_A2V": dict(epochs=30, learning_rate=1e-3, batch_size=32, optim="adam", lam=0.3, lr_decay_step=25,
                        lr_decay_ratio=0.1, n_times=3, random_seed=42),
    "AVMNIST_V2A": dict(epochs=30, learning_rate=1e-3, batch_size=32, optim="adam", lam=0.3, lr_decay_step=25,
                        lr_decay_ratio=0.1, mj_model="resnet18", n_times=3, random_seed=42),
    "IEMOCAP_A2T": dict(epochs=30, learning_rate=5e-5, batch_size=4, optim="adam", lam=0.3, mj_model="base",
                        n_times=3, random_seed=1234),
    "IEMOCAP_T2A": dict(epochs=30, learning_rate=5e-5, batch_size=4, optim="adam", lam=0.3, language_model="bert",
                        n_times=3, random_seed=1234),
}


def required(script):
    return ["--data_root", "D"] if script.startswith("AVMNIST") else ["--audio_dir", "D"]


@pytest.mark.parametrize("script", sorted(SCRIPT_DEFAULTS))
def test_defaults_are_the_readme_values(script):
    args = parse_args(script, required(script))
    for name, value in README_VALUES[script].items():
        assert getattr(args, name) == value, name
    assert args.pca is True and args.pairing == "unpaired" and args.teacher_cache == "on"
    assert args.num_workers == 0  # no CUDA here


@pytest.mark.parametrize("value, expected", [("false", False), ("False", False), ("no", False), ("0", False),
                                             ("true", True), ("yes", True), ("1", True)])
def test_pca_parses_booleans(value, expected):
    assert parse_args("AVMNIST_A2V", ["--data_root", "D", "--pca", value]).pca is expected


def test_readme_passes_resnet18_to_a2v_which_falls_back_to_base(capsys):
    args = parse_args("AVMNIST_A2V", ["--data_root", "D", "--mj_model", "resnet18"])
    assert args.mj_model == "base"
    assert "--mj_model 'resnet18'" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--lam", "1.5"], ["--lam", "-0.1"], ["--epochs", "0"], ["--n_times", "0"],
                                 ["--batch_size", "0"], ["--learning_rate", "0"], ["--warmup_epochs", "-1"],
                                 ["--optim", "rmsprop"], ["--pca", "maybe"], ["--amp", "fp16"],
                                 ["--language_model", "gpt2"], ["--device", "tpu"], ["--gpu_ids", "a"]])
def test_invalid_values_exit_2_with_a_message(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args("IEMOCAP_T2A", ["--audio_dir", "D", *bad])
    assert exit_info.value.code == 2
    assert "IEMOCAP_T2A.py: error:" in capsys.readouterr().err


def test_data_folder_is_required_without_demo(capsys):
    with pytest.raises(SystemExit):
        parse_args("AVMNIST_V2A", [])
    assert "--data_root is required" in capsys.readouterr().err


def test_lam_edges_are_accepted():
    assert parse_args("AVMNIST_V2A", ["--data_root", "D", "--lam", "0"]).lam == 0.0
    assert parse_args("AVMNIST_V2A", ["--data_root", "D", "--lam", "1"]).lam == 1.0
