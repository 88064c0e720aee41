"""ResNets of the AVMNIST experiments: the frozen ImageNet image teacher (V→A) and the two ResNet-18 students."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import WeightsEnum, get_model_weights, resnet18, resnet34

from models.frozen_teacher import FrozenTeacher
from models.heads import AvmnistHead
from models.pretrained import (
    RANDOM,
    ModelSource,
    NamedModel,
    check_local_path,
    fingerprint_module,
    lookup,
    path_flag,
    seeded,
    warn_random,
)
from utils.experiment import InputError
from utils.fingerprints import hash_path

_BUILDERS = {"resnet18": resnet18, "resnet34": resnet34}
RESNETS = {
    "resnet18": NamedModel("resnet", "resnet18", "torchvision:resnet18.IMAGENET1K_V1", 512, None),
    "resnet34": NamedModel("resnet", "resnet34", "torchvision:resnet34.IMAGENET1K_V1", 512, None),
}


def _load_state_dict(model: nn.Module, arch: str, file: Path, role: str) -> None:
    """Load a torchvision ResNet state_dict from ``file`` into ``model`` (whose fc is Identity).

    The classifier (fc.*) is optional because it is discarded anyway; every other key must match.
    """
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types (UnpicklingError, RuntimeError, EOFError...)
        raise InputError(
            f"{path_flag(role)} {file} is not a readable state_dict ({type(err).__name__}); "
            f"expected a {arch} state_dict saved with torch.save"
        ) from err
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InputError(
            f"{path_flag(role)} {file} does not hold a state_dict of tensors; expected a {arch} state_dict"
        )
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        missing, unexpected = _key_difference(model, state)
        detail = f"missing {missing[:3]}, unexpected {unexpected[:3]}" if missing or unexpected else "shape mismatch"
        raise InputError(
            f"{path_flag(role)} {file} is not a torchvision {arch} state_dict ({detail}); expected a {arch} state_dict"
        ) from err


def _imagenet_weights(arch: str) -> WeightsEnum:
    return get_model_weights(arch).IMAGENET1K_V1


def _key_difference(model: nn.Module, state: Mapping[str, Tensor]) -> tuple[list[str], list[str]]:
    expected = set(model.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)


class ResNetTeacher(FrozenTeacher):
    """Frozen torchvision ResNet-18/34 without its classifier: a 28×28 digit image → 512-d pooled feature.

    ``path`` None loads the ImageNet IMAGENET1K_V1 weights, a file loads a state_dict, ``random`` a random init
    from ``seed``.
    """

    # The original feeds the un-normalised 28×28 image: keep that, and say so in the cache key.
    preprocessing = "1x28x28->3ch,no-imagenet-norm"
    # In eval mode an image's feature does not depend on its batch-mates; one forward of 256 costs a fraction
    # of 256 forwards of one.
    cache_block = 256

    def __init__(self, arch: str = "resnet18", path: str | None = None, seed: int | None = None) -> None:
        super().__init__()
        entry = lookup(RESNETS, arch)
        if path is None:
            try:
                model = _BUILDERS[arch](weights=_imagenet_weights(arch))
            except (OSError, RuntimeError) as err:  # URLError offline is an OSError; a corrupt download a RuntimeError
                raise InputError(
                    f"cannot load the torchvision {arch} IMAGENET1K_V1 weights ({err}); "
                    f"pass --teacher_path with a local {arch} state_dict (.pth), or --teacher_path random"
                ) from err
            model.fc = nn.Identity()
            self.source = ModelSource(arch, entry.hub_id, False, entry.dim)
        else:
            with seeded(seed):
                model = _BUILDERS[arch](weights=None)
            model.fc = nn.Identity()
            if path == RANDOM:
                warn_random("teacher", arch)
                self.source = ModelSource(arch, RANDOM, True, entry.dim, seed)
            else:
                file = check_local_path(entry, path, "teacher")
                _load_state_dict(model, arch, file, "teacher")
                self.source = ModelSource(arch, str(file), False, entry.dim)
        self.model = model
        self.dim = entry.dim
        self.freeze()

    def weights_digest(self) -> str:
        """ImageNet weights by their URL (torchvision names each file after its hash and checks it on download),
        a state_dict by its bytes, a random initialisation by its values."""
        if self.source.random_init:
            return f"random:{fingerprint_module(self.model)}"
        if self.source.source == RESNETS[self.source.name].hub_id:
            return _imagenet_weights(self.source.name).url
        return hash_path(Path(self.source.source))

    def encode(self, inputs: list[Tensor]) -> Tensor:
        """Features (B×512, float32) of 1×28×28 float images, used as given (no normalisation, no resize)."""
        images = torch.stack([torch.as_tensor(image, dtype=torch.float32) for image in inputs])
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.dim() != 4 or images.shape[1] != 1:
            raise InputError(f"teacher images must be 1×H×W each; got a batch of shape {tuple(images.shape)}")
        images = images.to(self.device).expand(-1, 3, -1, -1)
        with torch.no_grad():
            return self.model(images).float()


def _resnet18(in_channels: int, out_dim: int) -> nn.Module:
    """torchvision ResNet-18 (BasicBlock [2,2,2,2]), an `in_channels` 7×7 stride-2 stem, fc = Linear(512, out_dim)."""
    model = resnet18(weights=None)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.fc = nn.Linear(512, out_dim)
    return model


class ImageResNetStudent(nn.Module):
    """A→V student: ResNet-18 on the 1×28×28 image (``in_channels`` 1), ``fc`` = Linear(512, D) is the feature,
    AVMNIST head."""

    # ResNet-18 shrinks a 28×28 image 32-fold to a 1×1 map, and BatchNorm cannot train on one value per
    # channel: training batches need two images.
    min_batch = 2
    skips_layers = False

    def __init__(self, dim: int, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.backbone = _resnet18(in_channels, dim)
        self.head = AvmnistHead(dim, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(logits B×C, feature B×D) of images B×1×H×W."""
        feature = self.backbone(x)
        return self.head(feature), feature


class SpectrogramResNetStudent(ImageResNetStudent):
    """V→A student: the same ResNet-18 on the 1×112×112 spectrogram, with the original's initialisation."""

    min_batch = 1  # a 112×112 spectrogram leaves a 4×4 map

    def __init__(self, dim: int, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__(dim, num_classes, in_channels)
        for module in self.backbone.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)
