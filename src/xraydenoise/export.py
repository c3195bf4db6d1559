"""Export a trained network to ONNX (dynamic height and width) for torch-free deployment.

The exported graph is the network *core*: it needs height and width to be multiples of the
model's ``multiple`` (stored in the ONNX metadata), and the ONNX Runtime backend pads and
crops around it, exactly as the PyTorch wrapper does. The model card travels in the metadata.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .errors import MissingDependencyError, WeightsError
from .io._atomic import _new_file_mode
from .settings import cache_dir


def export_onnx(weights: str | Path | None, output: str | Path, *, opset: int = 18) -> Path:
    try:
        import onnx
        import torch
    except ImportError:
        raise MissingDependencyError("ONNX export needs torch and onnx: pip install 'xraydenoise[torch,export]'") from None
    from .weights import load_model, shipped_weights

    output = Path(output)
    model = load_model(weights)
    core = model.core.eval()
    multiple = model.multiple
    size = max(multiple * 2, 64)
    example = [torch.rand(1, 1, size, size)]
    input_names = ["noisy"]
    if model.uses_noise_map:
        example.append(torch.full((1, 1, size, size), 0.1))
        input_names.append("noise_map")
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".partial")
    os.close(fd)
    try:
        h = torch.export.Dim("height_blocks", min=1, max=8192 // multiple)
        w = torch.export.Dim("width_blocks", min=1, max=8192 // multiple)
        shape = {2: multiple * h, 3: multiple * w}
        dynamic_shapes = tuple(shape for _ in example)
        with torch.no_grad():
            program = torch.onnx.export(
                core,
                tuple(example),
                input_names=input_names,
                output_names=["denoised"],
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                dynamo=True,
                external_data=False,
            )
        program.save(tmp)
        proto = onnx.load(tmp)
        card = dict(getattr(model, "card", {}))
        meta = {
            "name": str(card.get("name", Path(weights or shipped_weights()).stem)),
            "multiple": str(multiple),
            "noise_map": "true" if model.uses_noise_map else "false",
            "card": json.dumps(card),
        }
        del proto.metadata_props[:]
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, tmp)
        os.chmod(tmp, _new_file_mode(output))  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, output)
    except WeightsError:
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)
    return output


def ensure_onnx(weights: str | Path | None) -> Path:
    """ONNX file for ``weights`` (default: the shipped model), exported once into the cache."""
    import hashlib

    from .weights import shipped_weights

    source = Path(weights) if weights is not None else shipped_weights()
    if not source.is_file():
        raise WeightsError(f"{source}: weights file not found")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    target = cache_dir() / "onnx" / f"{source.stem}-{digest}.onnx"
    if not target.exists():
        export_onnx(source, target)
    return target
