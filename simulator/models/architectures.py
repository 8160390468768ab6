"""The models the federation trains and the attacks invert, built from a :class:`ModelSpec`.

Architectures (each one entry of a name table):

- ``mlp``: the 2-layer ReLU network of the analytic attack (Phong et al. 2018, eq. 1):
  ``Flatten -> Linear(n, width=100) -> act -> Linear(width, C)``.
- ``fcnn``: SPEAR's 6-layer fully connected network (Dimitrov et al. 2024): six ``Linear`` layers of
  ``width=200`` hidden units, the activation after each but the last.
- ``lenet``: the LeNet of DLG (Zhu et al. 2019; Eloul et al. 2024): three 5x5 convolutions of
  ``width=12`` channels, padding 2, strides 2, 2, 1, sigmoid by default, then one ``Linear``.
- ``cnn``: McMahan et al.'s CNN (AISTATS 2017): conv5x5(``width=32``) -> act -> maxpool2 ->
  conv5x5(2 * width) -> act -> maxpool2 -> Linear(512) -> act -> Linear(C).
- ``cnn1d``: a small 1-D CNN for signals (:mod:`fedleak.simulator.models.signal_cnn`).
- ``resnet18``: torchvision's ResNet-18 with its first convolution taking the input's channels
  and one of two stems (``stem``): ``imagenet``, torchvision's 7x7 stride-2 convolution and
  3x3 max-pool (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016), or
  ``cifar``, one 3x3 stride-1 convolution and no max-pool, the variant the gradient-inversion
  literature trains on 32x32 images (Geiping et al., "Inverting Gradients - How easy is it to
  break privacy in federated learning?", NeurIPS 2020; Yin et al., "See through Gradients",
  CVPR 2021). ``auto`` picks ``cifar`` for inputs under 64 pixels a side: the ImageNet stem
  shrinks a 32x32 image to a 1x1 map before the last stage, where BatchNorm cannot normalise
  a single sample.

Your own architecture (:mod:`fedleak.simulator.plugins`): ``name`` may be the import path of an
``nn.Module`` class or of a function returning one (Hydra's ``_target_``), built with
:attr:`ModelSpec.args` plus whichever of ``num_classes``, ``input_shape``, ``in_channels`` and
``in_features`` it takes by name. Installed packages add architectures under the entry-point
group ``fedleak.models``: an ``nn.Module`` class (built as an import path is) or a
:data:`ModelBuilder` function.

Flattened sizes are found with a dummy forward pass, so every architecture accepts any input
size it can downsample (``digits``' 8x8 included).

Weight initialisation (the init sweep of DLG sensitivity studies): ``default`` keeps torch's,
the others apply ``torch.nn.init.<name>_`` to the weights of every ``Linear`` and convolution.
Biases always keep torch's default small uniform draw and are never zeroed, because analytic
attacks (Phong et al. 2018: ``x = dL/dW1[j] / dL/db1[j]``) divide by bias gradients and need
the neurons to be active.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from fedleak.attacks.name_table import Registry
from fedleak.simulator.plugins import call_with, registered_or_imported

__all__ = [
    "STEMS",
    "ModelSpec",
    "available_activations",
    "available_inits",
    "available_models",
    "build_model",
    "model_builder",
    "register_model",
    "resolved_stem",
    "training_batch_problem",
]

_T = TypeVar("_T")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model anywhere (client, server, attack worker).

    Attributes
    ----------
    name : str
        A name from :func:`available_models`.
    input_shape : tuple[int, ...]
        Shape of one sample, ``(C, H, W)`` (``mlp``/``fcnn`` also take ``(n,)``).
    num_classes : int
        Number of outputs C.
    activation : str | None
        A name from :func:`available_activations`; ``None`` is the architecture's own default
        (sigmoid for ``lenet``, ReLU for the others).
    init : str
        A name from :func:`available_inits`.
    width : int | None
        Hidden units (``mlp``, ``fcnn``) or channels (``lenet``, first conv of ``cnn``);
        ``None`` is the architecture's default. ``resnet18`` has a fixed width.
    stem : str
        ``resnet18``'s input stem, one of :data:`STEMS`; the other models take only ``auto``.
    args : dict[str, Any]
        Keyword arguments of a model given by import path or entry point (``model.args``).
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    activation: str | None = None
    init: str = "default"
    width: int | None = None
    stem: str = "auto"
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Configs arrive as lists (JSON, Hydra); a tuple keeps the spec comparable.
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "args", dict(self.args))

    def __hash__(self) -> int:
        # args may hold lists (from JSON or YAML): hash their canonical JSON instead
        fields = (self.name, self.input_shape, self.num_classes, self.activation, self.init)
        args = json.dumps(self.args, sort_keys=True, default=repr)
        return hash((*fields, self.width, self.stem, args))


STEMS: tuple[str, ...] = ("auto", "cifar", "imagenet")
"""Accepted values of :attr:`ModelSpec.stem`."""

SMALL_INPUT_PIXELS = 64
"""``stem=auto`` gives ``resnet18`` the CIFAR stem below this many pixels a side."""

ModelBuilder = Callable[[ModelSpec, Callable[[], nn.Module]], nn.Module]
"""``builder(spec, make_activation) -> nn.Module``; ``make_activation()`` gives a fresh module."""


def _from_entry_point(name: str, obj: Any) -> ModelBuilder:
    """An entry point of ``fedleak.models``: an ``nn.Module`` class or a ModelBuilder."""
    is_module_class = isinstance(obj, type) and issubclass(obj, nn.Module)
    return _target_builder(obj) if is_module_class else obj


MODELS: Registry[ModelBuilder] = Registry(
    "model", entry_point_group="fedleak.models", from_entry_point=_from_entry_point
)
"""The architecture table: name -> :data:`ModelBuilder`."""
_DEFAULT_ACTIVATION: dict[str, str] = {}
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}
_INITS: dict[str, Callable[[torch.Tensor], object] | None] = {
    "default": None,
    "xavier_normal": nn.init.xavier_normal_,
    "xavier_uniform": nn.init.xavier_uniform_,
    "kaiming_normal": nn.init.kaiming_normal_,
    "kaiming_uniform": nn.init.kaiming_uniform_,
}


def register_model(name: str, builder: ModelBuilder, *, default_activation: str = "relu") -> None:
    """Register ``builder`` under ``name``; a name can be registered once.

    Raises
    ------
    ValueError
        If ``name`` is already registered or ``default_activation`` is unknown.
    """
    _lookup(_ACTIVATIONS, default_activation, "activation")
    MODELS.register(name, builder)
    _DEFAULT_ACTIVATION[name] = default_activation


def available_models() -> list[str]:
    """Names of the registered architectures (installed plug-ins included), sorted."""
    return MODELS.names()


def model_builder(name: str) -> ModelBuilder:
    """The builder of ``name``: a registered architecture or an import path.

    Raises
    ------
    ValueError
        If ``name`` is neither (the message lists the registered names), or its import fails.
    """
    return registered_or_imported(MODELS, name, _target_builder, "a class or function")


def _target_builder(target: Callable[..., Any]) -> ModelBuilder:
    """Build ``target(**spec.args, <what it takes of the spec>)`` (Hydra's ``_target_``)."""

    def build(spec: ModelSpec, make_activation: Callable[[], nn.Module]) -> nn.Module:
        del make_activation  # your model brings its own activations
        offered = {
            "num_classes": spec.num_classes,
            "input_shape": spec.input_shape,
            "in_channels": spec.input_shape[0],
            "in_features": math.prod(spec.input_shape),
        }
        model = call_with(target, spec.args, offered)
        if not isinstance(model, nn.Module):
            raise ValueError(
                f"model {spec.name!r} returned a {type(model).__name__}, not a torch.nn.Module"
            )
        return model

    build.__doc__ = target.__doc__
    return build


def available_activations() -> list[str]:
    """Accepted values of :attr:`ModelSpec.activation`."""
    return sorted(_ACTIVATIONS)


def available_inits() -> list[str]:
    """Accepted values of :attr:`ModelSpec.init`."""
    return sorted(_INITS)


def _lookup(table: Mapping[str, _T], key: str, what: str) -> _T:
    try:
        return table[key]
    except KeyError:
        raise ValueError(f"unknown {what} {key!r}; accepted values: {sorted(table)}") from None


def build_model(spec: ModelSpec, *, seed: int | None = None) -> nn.Module:
    """Build the model described by ``spec``.

    Parameters
    ----------
    spec : ModelSpec
        Architecture, input shape, classes, activation, initialisation and width.
    seed : int | None
        When given, parameters are drawn from ``torch.manual_seed(seed)`` inside a forked RNG
        (the caller's global RNG state is untouched), so equal seeds give equal models.

    Raises
    ------
    ValueError
        If the name, activation or init is unknown (the message lists the accepted values),
        or the input shape does not suit the architecture.
    """
    builder = model_builder(spec.name)
    activation_name = spec.activation or _DEFAULT_ACTIVATION.get(spec.name, "relu")
    make_activation = _lookup(_ACTIVATIONS, activation_name, "activation")
    init_fn = _lookup(_INITS, spec.init, "init")
    if spec.num_classes < 1 or (spec.width is not None and spec.width < 1):
        raise ValueError(f"num_classes and width must be positive: {spec}")
    if spec.stem not in STEMS:
        raise ValueError(f"unknown stem {spec.stem!r}; accepted values: {list(STEMS)}")
    if spec.stem != "auto" and spec.name != "resnet18":
        raise ValueError(f"model {spec.name!r} has no stem setting; leave stem at 'auto'")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = builder(spec, make_activation)
        if init_fn is not None:
            for module in model.modules():
                if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
                    init_fn(module.weight)
    return model


def _flat_size(features: nn.Module, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, *input_shape)).flatten(1).shape[1])


def _image_shape(spec: ModelSpec) -> tuple[int, int, int]:
    if len(spec.input_shape) != 3:
        raise ValueError(
            f"model {spec.name!r} needs a (C, H, W) input shape, got {spec.input_shape}"
        )
    c, h, w = spec.input_shape
    return c, h, w


def _linear(spec: ModelSpec, act: Callable[[], nn.Module]) -> nn.Module:
    """Softmax regression: one dense layer (Eloul et al. 2024's "single linear dense layer")."""
    del act  # no hidden layer, nothing to activate
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(spec.input_shape), spec.num_classes))


def _mlp(spec: ModelSpec, act: Callable[[], nn.Module]) -> nn.Module:
    """Flatten -> Linear(n, width=100) -> act -> Linear(width, C): the analytic attack's network."""
    width = spec.width or 100
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(spec.input_shape), width),
        act(),
        nn.Linear(width, spec.num_classes),
    )


def _fcnn(spec: ModelSpec, act: Callable[[], nn.Module]) -> nn.Module:
    """SPEAR's 6-layer fully connected network, width=200 hidden units per layer."""
    width = spec.width or 200
    sizes = [math.prod(spec.input_shape)] + [width] * 5 + [spec.num_classes]
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def _lenet(spec: ModelSpec, act: Callable[[], nn.Module]) -> nn.Module:
    """DLG's LeNet: three 5x5 convolutions of width=12 channels (sigmoid), then one Linear."""
    channels, _, _ = _image_shape(spec)
    width = spec.width or 12
    features = nn.Sequential(
        nn.Conv2d(channels, width, kernel_size=5, padding=2, stride=2),
        act(),
        nn.Conv2d(width, width, kernel_size=5, padding=2, stride=2),
        act(),
        nn.Conv2d(width, width, kernel_size=5, padding=2, stride=1),
        act(),
        nn.Flatten(),
    )
    flat = _flat_size(features, spec.input_shape)
    return nn.Sequential(*features, nn.Linear(flat, spec.num_classes))


def _cnn(spec: ModelSpec, act: Callable[[], nn.Module]) -> nn.Module:
    """McMahan et al.'s CNN: two 5x5 conv + max-pool blocks, Linear(512), Linear(C)."""
    channels, _, _ = _image_shape(spec)
    width = spec.width or 32
    features = nn.Sequential(
        nn.Conv2d(channels, width, kernel_size=5, padding=2),
        act(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, kernel_size=5, padding=2),
        act(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    flat = _flat_size(features, spec.input_shape)
    return nn.Sequential(*features, nn.Linear(flat, 512), act(), nn.Linear(512, spec.num_classes))


def _cnn1d(spec: ModelSpec, act: Callable[[], nn.Module]) -> nn.Module:
    """A small 1-D CNN for signals (:mod:`fedleak.simulator.models.signal_cnn`)."""
    from fedleak.simulator.models.signal_cnn import cnn1d

    return cnn1d(spec, act)


def resolved_stem(spec: ModelSpec) -> str:
    """The stem ``spec`` builds: ``auto`` resolved by the input's smaller side."""
    if spec.stem != "auto":
        return spec.stem
    return "cifar" if min(spec.input_shape[-2:]) < SMALL_INPUT_PIXELS else "imagenet"


def _resnet18(spec: ModelSpec, act: Callable[[], nn.Module]) -> nn.Module:
    from torchvision.models import resnet18

    channels, _, _ = _image_shape(spec)
    if spec.width is not None:
        raise ValueError("model 'resnet18' has a fixed width; leave width unset")
    model = resnet18(num_classes=spec.num_classes)
    if resolved_stem(spec) == "cifar":
        model.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    else:
        model.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if not isinstance(act(), nn.ReLU):
        # Seed 003 sweeps the activation of ResNet too: swap every ReLU module for it.
        for parent in list(model.modules()):
            for child_name, child in parent.named_children():
                if isinstance(child, nn.ReLU):
                    setattr(parent, child_name, act())
    return model


def training_batch_problem(spec: ModelSpec, batch_size: int) -> str | None:
    """Why ``spec``'s model cannot take a training step on ``batch_size`` samples, or ``None``.

    A model in training mode can refuse small batches: BatchNorm needs more than one value per
    channel, which a batch of one sample gives it only where its feature map is larger than
    1x1. One forward pass in training mode on zeros tells (on a copy: the caller's model and
    RNG are untouched).
    """
    model = build_model(spec, seed=0)
    model.train()
    try:
        with torch.no_grad():
            model(torch.zeros(batch_size, *spec.input_shape))
    except (ValueError, RuntimeError) as exc:
        return str(exc).splitlines()[0]
    return None


register_model("linear", _linear)
register_model("mlp", _mlp)
register_model("fcnn", _fcnn)
register_model("lenet", _lenet, default_activation="sigmoid")
register_model("cnn", _cnn)
register_model("cnn1d", _cnn1d)
register_model("resnet18", _resnet18)
