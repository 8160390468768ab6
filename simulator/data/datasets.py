"""Data sets as in-memory arrays, behind a name table.

Every data set loads to :class:`ArrayDataset` objects holding float32 images in ``[0, 1]``
shaped ``(N, C, H, W)`` and int64 labels, or flat rows of another modality (``domain``):
tables (``fair`` and ``anes96`` offline, ``adult`` from OpenML: :mod:`.tabular_datasets`) and
1-D signals (``gunpoint``, ``pigcvp``: :mod:`.signal_datasets`). Offline images:

- ``digits``: scikit-learn's 1,797 handwritten digits, 8x8, 10 classes (the default);
- ``lfw``: scikit-image's Labeled Faces in the Wild subset, 200 images of 25x25 (the data set
  of Eloul et al., Eloul et al. 2024); the first 100 are faces (label 1), the last 100 non-faces cut
  from the backgrounds of the same photos (label 0).
- ``photos``: natural RGB photographs, 32x32 crops of scikit-image's bundled colour photos
  (:data:`PHOTOS`), one class per photo: CIFAR-like inputs for the attacks, offline.

``mnist``, ``fashion_mnist`` and ``cifar10`` come from ``torchvision.datasets``, downloaded into
``data_dir`` on first use (offline: :class:`DatasetUnavailableError`). ``huggingface``
(:mod:`.hf_datasets`) loads any Hugging Face data set through Flower Datasets' ``FederatedDataset``.

Your own data (:mod:`fedleak.simulator.plugins`): a data set's name may be the import path of a
loader function (Hydra's ``_target_``), and installed packages add loaders under the
entry-point group ``fedleak.datasets``. Such a loader is called with the data set's ``args``
plus whichever of ``data_dir``, ``seed`` and ``test_fraction`` it takes by name, and returns
a :class:`DatasetSplits`, or ``(inputs, labels)`` arrays that fedleak splits (stratified,
seeded) into train and test.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fedleak.attacks.name_table import Registry
from fedleak.attacks.types import InputDomain
from fedleak.simulator import exit_codes
from fedleak.simulator.data.tabular import TabularEncoder
from fedleak.simulator.errors import FedleakError
from fedleak.simulator.plugins import call_with, import_object, registered_or_imported

__all__ = [
    "DEFAULT_DATASET",
    "PHOTOS",
    "ArrayDataset",
    "DatasetLoader",
    "DatasetSplits",
    "DatasetUnavailableError",
    "as_splits",
    "available_datasets",
    "dataset_loader",
    "load_dataset",
    "register_dataset",
]

DEFAULT_DATASET = "digits"
"""The data set used when an experiment names none (ships with scikit-learn, no network)."""

_OFFLINE_SETS = "dataset=digits, dataset=lfw or dataset=photos"


class DatasetUnavailableError(FedleakError, RuntimeError):
    """A data set that has to be downloaded could not be fetched (typically: no network)."""

    exit_code = exit_codes.DATASET_UNAVAILABLE


@dataclass(frozen=True)
class ArrayDataset:
    """A labelled data set held in memory.

    Attributes
    ----------
    inputs : np.ndarray
        float32 samples in ``[0, 1]``, shape ``(N, C, H, W)`` for images.
    labels : np.ndarray
        int64 class labels, shape ``(N,)``.
    num_classes : int
        Number of classes of the task (not necessarily all present in this split).
    name : str
        Registry name of the data set.
    domain : InputDomain
        Modality and value range of the inputs (images in ``[0, 1]`` by default).
    encoder : TabularEncoder | None
        For tabular data, how rows were encoded (and how recovered rows decode).
    """

    inputs: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str
    domain: InputDomain = field(default_factory=InputDomain)
    encoder: TabularEncoder | None = None

    def __post_init__(self) -> None:
        if self.inputs.dtype != np.float32:
            raise ValueError(f"inputs must be float32, got {self.inputs.dtype}")
        if self.labels.dtype != np.int64 or self.labels.ndim != 1:
            raise ValueError(
                f"labels must be a 1-D int64 array, got {self.labels.dtype} {self.labels.shape}"
            )
        if self.inputs.ndim < 2 or len(self.inputs) != len(self.labels):
            raise ValueError(
                f"inputs {self.inputs.shape} and labels {self.labels.shape} do not match"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(1, 8, 8)``."""
        return tuple(int(d) for d in self.inputs.shape[1:])

    def subset(self, indices: np.ndarray) -> ArrayDataset:
        """Return the samples at ``indices`` (e.g. one client's partition) as a new data set."""
        return replace(self, inputs=self.inputs[indices], labels=self.labels[indices])


@dataclass(frozen=True)
class DatasetSplits:
    """Train and test splits of one data set."""

    train: ArrayDataset
    test: ArrayDataset


DatasetLoader = Callable[..., DatasetSplits]
"""``loader(data_dir, seed, test_fraction, **args) -> DatasetSplits``."""

DATASETS: Registry[DatasetLoader] = Registry(
    "dataset",
    entry_point_group="fedleak.datasets",
    from_entry_point=lambda name, obj: _target_loader(name, obj),
)
"""The data set table: name -> :data:`DatasetLoader`."""


def register_dataset(name: str, loader: DatasetLoader) -> DatasetLoader:
    """Register ``loader`` under ``name``; a name can be registered once.

    Raises
    ------
    ValueError
        If ``name`` is already registered.
    """
    return DATASETS.register(name, loader)


def available_datasets() -> list[str]:
    """Names of the registered data sets (installed plug-ins included), sorted."""
    return DATASETS.names()


def dataset_loader(name: str) -> DatasetLoader:
    """The loader of ``name``: a registered data set or a loader's import path.

    Raises
    ------
    ValueError
        If ``name`` is neither (the message lists the registered names), or its import fails.
    """
    adapt = functools.partial(_target_loader, name)
    return registered_or_imported(DATASETS, name, adapt, "a loader function")


def _target_loader(name: str, target: Callable[..., Any]) -> DatasetLoader:
    """Call ``target`` as the module docstring says; its result becomes DatasetSplits."""

    def load(data_dir: Path, seed: int, test_fraction: float, **args: Any) -> DatasetSplits:
        offered = {"data_dir": data_dir, "seed": seed, "test_fraction": test_fraction}
        return as_splits(call_with(target, args, offered), name, seed, test_fraction)

    load.__doc__ = target.__doc__
    load.__wrapped__ = target  # type: ignore[attr-defined]  # its settings, for listings
    return load


def as_splits(
    result: Any, name: str, seed: int, test_fraction: float, num_classes: int | None = None
) -> DatasetSplits:
    """A loader's result as :class:`DatasetSplits`: as is, or ``(inputs, labels)`` split.

    ``inputs`` of shape ``(N, H, W)`` gain a channel axis; values are cast to float32
    (scale them to [0, 1] yourself) and labels to int64; the number of classes is
    ``num_classes``, else the largest label plus one.
    """
    if isinstance(result, DatasetSplits):
        return result
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ValueError(
            f"dataset {name!r}: a loader returns DatasetSplits or (inputs, labels), "
            f"got {type(result).__name__}"
        )
    inputs, labels = (np.asarray(a) for a in result)
    if inputs.ndim == 3:
        inputs = inputs[:, None]
    labels = labels.astype(np.int64)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    return _stratified_splits(name, inputs, labels, num_classes, seed, test_fraction)


def load_dataset(
    name: str,
    *,
    data_dir: Path,
    seed: int,
    test_fraction: float,
    args: Mapping[str, Any] | None = None,
) -> DatasetSplits:
    """Load the data set ``name`` and split it into train and test.

    Parameters
    ----------
    name : str
        A name from :func:`available_datasets`, or a loader's import path.
    data_dir : Path
        Where downloadable data sets are cached (unused by the offline ones).
    seed : int
        Seed of the stratified train/test split of the offline sets.
    test_fraction : float
        Fraction of samples held out for testing, in ``(0, 1)``. The torchvision sets use
        their official train/test split and ignore it.
    args : Mapping[str, Any] | None
        The data set's own settings (``dataset.args``), passed to its loader by name.

    Raises
    ------
    ValueError
        If ``name`` is unknown (the message lists :func:`available_datasets`) or
        ``test_fraction`` is outside ``(0, 1)``.
    DatasetUnavailableError
        If a downloadable data set is not cached and cannot be downloaded.
    """
    loader = dataset_loader(name)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    return loader(Path(data_dir), seed, test_fraction, **dict(args or {}))


def _stratified_splits(
    name: str,
    inputs: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    seed: int,
    test_fraction: float,
) -> DatasetSplits:
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=seed
    )
    x = inputs.astype(np.float32)
    y = labels.astype(np.int64)
    return DatasetSplits(
        train=ArrayDataset(x[train_idx], y[train_idx], num_classes, name),
        test=ArrayDataset(x[test_idx], y[test_idx], num_classes, name),
    )


def _load_digits(data_dir: Path, seed: int, test_fraction: float) -> DatasetSplits:
    """scikit-learn's 1,797 handwritten digits, 1x8x8, 10 classes; offline."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64) / 16.0  # pixel values are 0..16
    return _stratified_splits(
        "digits", images[:, None], np.asarray(bunch.target), 10, seed, test_fraction
    )


# skimage.data.lfw_subset's docstring: "100 first images are faces and subsequent 100 are
# non-faces" (checked by eye on scikit-image 0.26).
_LFW_FACES = 100


def _load_lfw(data_dir: Path, seed: int, test_fraction: float) -> DatasetSplits:
    """scikit-image's LFW subset: 200 images 1x25x25, face / non-face; offline."""
    from skimage.data import lfw_subset

    images = np.asarray(lfw_subset(), dtype=np.float64)
    if images.max() > 1.0:  # documented as uint8; some releases already return [0, 1] floats
        images = images / 255.0
    labels = np.zeros(len(images), dtype=np.int64)
    labels[:_LFW_FACES] = 1
    return _stratified_splits("lfw", images[:, None], labels, 2, seed, test_fraction)


PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")
"""scikit-image's bundled colour photographs (shipped in the wheel, no download)."""
_CROP = 32
_CROPS_ACROSS = 4
"""Each photo is scaled so its shorter side holds this many crops."""


def _load_photos(data_dir: Path, seed: int, test_fraction: float) -> DatasetSplits:
    from skimage import data, transform

    inputs, labels = [], []
    for label, name in enumerate(PHOTOS):
        image = getattr(data, name)()[..., :3]
        scale = _CROPS_ACROSS * _CROP / min(image.shape[:2])
        shape = (round(image.shape[0] * scale), round(image.shape[1] * scale))
        small = transform.resize(image, shape, anti_aliasing=True)  # floats in [0, 1]
        for top in range(0, shape[0] - _CROP + 1, _CROP):
            for left in range(0, shape[1] - _CROP + 1, _CROP):
                crop = small[top : top + _CROP, left : left + _CROP]
                inputs.append(np.transpose(crop, (2, 0, 1)))
                labels.append(label)
    images = np.clip(np.stack(inputs), 0.0, 1.0)
    return _stratified_splits(
        "photos", images, np.asarray(labels), len(PHOTOS), seed, test_fraction
    )


def _to_nchw(data: Any) -> np.ndarray:
    array = data.numpy() if hasattr(data, "numpy") else np.asarray(data)
    if array.ndim == 3:  # (N, H, W) grayscale
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in (1, 3):  # (N, H, W, C)
        array = array.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(array, dtype=np.float32) / np.float32(255.0)


def _torchvision_loader(name: str, class_name: str, num_classes: int) -> DatasetLoader:
    def load(data_dir: Path, seed: int, test_fraction: float) -> DatasetSplits:
        from torchvision import datasets as tv_datasets

        # Looked up at call time, so the class can be replaced (tests simulate being offline).
        dataset_cls = getattr(tv_datasets, class_name)
        root = data_dir / name
        splits = {}
        for split, train in (("train", True), ("test", False)):
            try:
                raw = dataset_cls(root=str(root), train=train, download=True)
            except (OSError, RuntimeError) as exc:
                raise DatasetUnavailableError(
                    f"dataset {name!r} is not in {root} and could not be downloaded ({exc}). "
                    f"Download it on a machine with network access (any fedleak run with "
                    f"dataset={name} fetches it into its data_dir) and copy that directory to "
                    f"{data_dir}, or use {_OFFLINE_SETS}, which work offline."
                ) from exc
            labels = np.asarray(raw.targets, dtype=np.int64)
            splits[split] = ArrayDataset(_to_nchw(raw.data), labels, num_classes, name)
        return DatasetSplits(train=splits["train"], test=splits["test"])

    load.__doc__ = (
        f"torchvision's {class_name}, {num_classes} classes; downloaded into "
        "data_dir on first use (network)."
    )
    return load


register_dataset("digits", _load_digits)
register_dataset("lfw", _load_lfw)
register_dataset("photos", _load_photos)
register_dataset("mnist", _torchvision_loader("mnist", "MNIST", 10))
register_dataset("fashion_mnist", _torchvision_loader("fashion_mnist", "FashionMNIST", 10))
register_dataset("cifar10", _torchvision_loader("cifar10", "CIFAR10", 10))


def _deferred(path: str, doc: str) -> DatasetLoader:
    """The loader at ``path``, imported on first use (its module imports this one)."""

    def load(data_dir: Path, seed: int, test_fraction: float) -> DatasetSplits:
        loader: DatasetLoader = import_object(path)
        return loader(data_dir, seed, test_fraction)

    load.__doc__ = doc
    return load


_MODALITY_SETS = {  # name: (module of its loader, description)
    "fair": ("tabular", "statsmodels' fair: 6,366 rows, 5 discrete + 3 continuous; offline."),
    "anes96": ("tabular", "statsmodels' anes96: 944 voters, 7 discrete + 2 continuous; offline."),
    "adult": ("tabular", "UCI Adult from OpenML: 48,842 rows, 8 discrete + 6 continuous."),
    "gunpoint": ("signal", "UCR GunPoint: 200 z-normalised series of 150 samples; offline."),
    "pigcvp": ("signal", "UCR PigCVP: 312 z-normalised series of 2,000 samples; offline."),
}
for _name, (_module, _doc) in _MODALITY_SETS.items():
    register_dataset(_name, _deferred(f"{__package__}.{_module}_datasets.load_{_name}", _doc))


def _load_huggingface(
    data_dir: Path, seed: int, test_fraction: float, *, path: str, **settings: Any
) -> DatasetSplits:
    """Hugging Face data via FederatedDataset: a hub name (network), local files (offline).

    ``dataset.args.path`` and the other settings: :func:`.hf_datasets.load_huggingface`.
    """
    from fedleak.simulator.data.hf_datasets import load_huggingface

    return load_huggingface(data_dir, seed, test_fraction, path=path, **settings)


register_dataset("huggingface", _load_huggingface)
