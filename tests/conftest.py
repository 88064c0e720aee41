"""Fixtures shared by the test modules: tiny models saved like downloaded weights, and synthetic data sets."""

import os

import pytest

# Tests never touch the network: hub ids fail at once instead of retrying.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads spin by default; on a shared 2-core machine that slows every torch process
# several times. Set before torch is imported; the scripts run by tests inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if "PYTEST_XDIST_WORKER" in os.environ:  # pytest.ini runs two test processes: one thread each, not two
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Tiny random teachers and students saved like downloaded weights."""
    from models.tiny import save_resnet18_state_dict, save_tiny_bert, save_tiny_wav2vec2

    root = tmp_path_factory.mktemp("tiny_models")
    return {"resnet18": str(save_resnet18_state_dict(root / "resnet18.pth")),
            "wav2vec2": str(save_tiny_wav2vec2(root / "wav2vec2")),
            "bert": str(save_tiny_bert(root / "bert"))}


@pytest.fixture(scope="session")
def avmnist(tmp_path_factory):
    """A read-only synthetic AVMNIST (original layout): 90 train items (81 train / 9 val), 40 test items."""
    from datasets.tools.synthetic import write_synthetic_avmnist

    return write_synthetic_avmnist(tmp_path_factory.mktemp("avmnist"), n_train=90, n_test=40)


@pytest.fixture
def fresh_avmnist(tmp_path):
    """A small private synthetic AVMNIST for tests that damage or change it."""
    from datasets.tools.synthetic import write_synthetic_avmnist

    return write_synthetic_avmnist(tmp_path / "avmnist", n_train=30, n_test=10)


@pytest.fixture(scope="session")
def iemocap(tmp_path_factory):
    """A read-only synthetic IEMOCAP tree, 20 utterances per class: the folder holding IEMOCAP/."""
    from datasets.tools.synthetic_iemocap import write_synthetic_iemocap

    return write_synthetic_iemocap(tmp_path_factory.mktemp("iemocap"), per_class=20)


@pytest.fixture
def fresh_iemocap(tmp_path):
    """A small private synthetic IEMOCAP tree for tests that damage it."""
    from datasets.tools.synthetic_iemocap import write_synthetic_iemocap

    return write_synthetic_iemocap(tmp_path / "iemocap", per_class=6)


@pytest.fixture(scope="session")
def a2v_reference(avmnist, tiny_models, tmp_path_factory):
    """(argv, run folder) of a finished A->V run that tests resume, evaluate or refuse, but never change: 3 steps
    an epoch; trial 1's split needs teacher features trial 0's did not, so a resume between them computes them in
    another process than the run left alone."""
    import AVMNIST_A2V

    argv = ["--data_root", str(avmnist), "--teacher_path", tiny_models["wav2vec2"], "--epochs", "2", "--n_times", "2",
            "--batch_size", "16", "--subset", "48"]
    out = tmp_path_factory.mktemp("reference")
    assert AVMNIST_A2V.main([*argv, "--no_progress", "--output_dir", str(out)]) == 0
    (args,) = out.rglob("args.json")
    return argv, args.parent
