"""Saving and loading network weights: safetensors plus a JSON model card, never pickle.

A weights file ``NAME.safetensors`` sits beside ``NAME.json``, the model card, which names
the architecture and its options (so the right network is built before the tensors are
loaded), and records how the weights were made. A file a user hands in is only ever read as
safetensors; a pickle is refused before any byte of it is interpreted.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import WeightsError
from .io._messages import one_line
from .io._text import read_text_file
from .settings import PACKAGE_DIR

SHIPPED_DIR = PACKAGE_DIR / "pretrained"
DEFAULT_MODEL = "rdn-xray"


def shipped_weights(name: str = DEFAULT_MODEL) -> Path:
    return SHIPPED_DIR / f"{name}.safetensors"


def shipped_onnx(weights: Path | None = None) -> Path | None:
    """The ONNX export shipped beside shipped weights (None for other weights or when absent)."""
    weights = Path(weights) if weights is not None else shipped_weights()
    if weights.parent.resolve() != SHIPPED_DIR.resolve():
        return None
    path = weights.with_suffix(".onnx")
    return path if path.is_file() else None


def card_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".json")


@dataclass
class ModelCard:
    """What a network is and how it was made: the JSON file beside its weights.

    ``train`` writes it (architecture, options, data, noise, training, validation), ``ship``
    completes it (the name it ships under, the configs and command that reproduce it, the
    totals over all stages), ``adapt`` adds ``adaptation``; everything else only reads it. Keys
    a later version adds are kept in ``extra`` and written back as they were.
    """

    name: str
    architecture: str
    options: dict[str, Any] = field(default_factory=dict)
    parameters: int | None = None
    blind: bool | None = None
    weights_dtype: str = "float32"
    data: dict[str, Any] = field(default_factory=dict)
    noise: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    adaptation: dict[str, Any] | None = None
    #: A routed network's experts: their cards, by role ("white", "correlated").
    experts: dict[str, Any] | None = None
    config: str | list[str] | None = None
    command: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: object, *, where: str = "model card") -> "ModelCard":
        """A card from its JSON object; a missing or mistyped field is a one-line WeightsError."""
        if not isinstance(raw, dict):
            raise WeightsError(f"{where}: a model card must be a JSON object")
        if "architecture" not in raw:
            raise WeightsError(f"{where}: model card has no 'architecture'")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in raw.items() if k in known}
        values.setdefault("name", "network")
        expected: dict[str, type | tuple[type, ...]] = {
            "name": str, "architecture": str, "options": dict, "parameters": int, "blind": bool,
            "weights_dtype": str, "data": dict, "noise": dict, "training": dict, "validation": dict,
            "adaptation": dict, "experts": dict, "config": (str, list), "command": str}
        for key, kind in expected.items():
            value = values.get(key)
            if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
                names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
                raise WeightsError(f"{where}: model card '{key}' must be {'an' if names[0] in 'aeiou' else 'a'} {names}, "
                                   f"got {type(value).__name__}")
        for key in ("options", "data", "noise", "training", "validation"):
            if values.get(key) is None:
                values.pop(key, None)
        return cls(**values, extra={k: v for k, v in raw.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out = {k: v for k, v in out.items() if v is not None}
        out.update(self.extra)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def replace(self, **changes) -> "ModelCard":
        return dataclasses.replace(self, **changes)


def read_card(weights: str | Path) -> ModelCard:
    """The model card beside ``weights`` (``NAME.safetensors`` -> ``NAME.json``)."""
    path = card_path(Path(weights))
    if not path.exists():
        raise WeightsError(f"{weights}: model card {path.name} not found beside the weights")
    text = read_text_file(path, "model card", error=WeightsError)
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise WeightsError(f"{path}: unreadable model card ({one_line(exc)})") from None
    return ModelCard.from_dict(raw, where=str(path))


def _atomic_write(path: Path, data: bytes) -> None:
    from .io._atomic import atomic_write

    atomic_write(path, lambda handle: handle.write(data))


def save_weights(model, path: str | Path, card: ModelCard, *, half: bool = False) -> Path:
    """Write ``model``'s state dict as safetensors and ``card`` as JSON beside it (atomically)."""
    from safetensors.torch import save

    path = Path(path)
    if not isinstance(card, ModelCard):
        card = ModelCard.from_dict(card)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    _atomic_write(path, save(state))
    card = card.replace(weights_dtype="float16" if half else "float32")
    _atomic_write(card_path(path), card.to_json().encode())
    return path


#: Weights formats that are Python pickles (torch.save, Lightning, pickle): never loaded.
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


def _check_not_pickle(path: Path) -> None:
    with path.open("rb") as handle:
        head = handle.read(16)
    if not head:
        raise WeightsError(f"{path}: weights file is empty")
    # Pickle protocol 2+ starts with 0x80; torch.save zip archives start with PK.
    if head[:1] == b"\x80" or head[:2] == b"PK":
        raise WeightsError(f"{path}: looks like a pickle/torch.save file; only safetensors weights are loaded (pickles can run code)")


def load_state(path: str | Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    _check_not_pickle(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path}: not a valid safetensors file ({str(exc).splitlines()[0]})") from None


def load_model(path: str | Path | None = None):
    """Build the network named by the model card and load its weights (float32, eval mode).

    ``path=None`` loads the shipped model.
    """
    from .errors import ConfigError
    from .models import create_model

    path = Path(path) if path is not None else shipped_weights()
    card = read_card(path)
    state = load_state(path)
    options = card.options
    try:
        model = create_model(card.architecture, **options)
    except ConfigError as exc:
        raise WeightsError(f"{path}: model card describes an unknown network ({exc})") from None
    except (TypeError, ValueError, RuntimeError) as exc:  # e.g. "channels": "32" reaches torch
        raise WeightsError(f"{card_path(path)}: model card options {options} do not build a {card.architecture} ({one_line(exc)})") from None
    state = {k: v.float() for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        # torch's first line only says "Error(s) in loading state_dict for X:"; the next one
        # names the first missing/unexpected key or shape mismatch.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        detail = detail if len(detail) <= 200 else detail[:197] + "..."
        raise WeightsError(f"{path}: weights do not match architecture {card.architecture!r} ({detail})") from None
    model.eval()
    model.card = card
    return model
