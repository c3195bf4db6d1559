"""Export a trained network to ONNX (dynamic height and width) for torch-free deployment.

The exported graph is the network *core*: it needs height and width to be multiples of the
model's ``multiple`` (stored in the ONNX metadata), and the ONNX Runtime backend pads and
crops around it, exactly as the PyTorch wrapper does. The model card travels in the metadata.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import tempfile
import warnings
from pathlib import Path

from .errors import MissingDependencyError, WeightsError
from .io._atomic import atomic_write
from .settings import cache_dir


def export_onnx(weights: str | Path | None, output: str | Path, *, opset: int = 18) -> Path:
    try:
        import onnx
        import torch
    except ImportError:
        raise MissingDependencyError("ONNX export needs torch and onnx: pip install 'xraydenoise[torch,export]'") from None
    from .weights import load_model, shipped_weights

    output = Path(output)
    source = Path(weights) if weights is not None else shipped_weights()
    model = load_model(source)
    core = model.core.eval()
    multiple = model.multiple
    size = max(multiple * 2, 64)
    example = [torch.rand(1, 1, size, size)]
    input_names = ["noisy"]
    if model.uses_noise_map:
        example.append(torch.full((1, model.noise_channels, size, size), 0.1))
        input_names.append("noise_map")
    with tempfile.TemporaryDirectory(prefix="xraydenoise-export-") as scratch:
        tmp = str(Path(scratch) / "model.onnx")  # the exporter writes a path; the result goes out atomically
        h = torch.export.Dim("height_blocks", min=1, max=8192 // multiple)
        w = torch.export.Dim("width_blocks", min=1, max=8192 // multiple)
        shape = {2: multiple * h, 3: multiple * w}
        dynamic_shapes = tuple(shape for _ in example)
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(
                core,
                tuple(example),
                input_names=input_names,
                output_names=["denoised"],
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        assert program is not None  # dynamo=True returns the program
        program.save(tmp)
        proto = onnx.load(tmp)
        _move_weights_into_branches(proto.graph)
        card = model.card
        meta = {
            "name": card.name,
            # Ties the export to the exact weights it came from (a stale export is detected).
            "source_sha256": weights_digest(source),
            "multiple": str(multiple),
            "noise_map": "true" if model.uses_noise_map else "false",
            "noise_channels": str(model.noise_channels),
            "card": json.dumps(card.to_dict()),
        }
        del proto.metadata_props[:]
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
    return atomic_write(output, lambda fh: fh.write(proto.SerializeToString()))


def _move_weights_into_branches(graph) -> None:
    """Give each branch of an If node (a routed network's experts) its own copy of its weights.

    The exporter keeps every weight in the main graph, and a branch reads its weights from the
    outer scope. ONNX Runtime's fastest convolution path on x86 (the NCHWc layout transform)
    only rewrites a convolution whose weights are initializers of its own graph, so it left the
    experts on a plain path: the routed graph ran 1.7x slower than one expert exported alone
    (0.35 vs 0.21 s at 512x512, one thread). With the weights in the branches it runs as fast;
    a weight that two branches use (the blend of both experts) is stored in each.
    """
    import onnx

    weights = {initializer.name: initializer for initializer in graph.initializer}

    def localise(branch) -> None:
        for node in branch.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    own = {initializer.name for initializer in attribute.g.initializer}
                    used = {name for inner in attribute.g.node for name in inner.input}
                    attribute.g.initializer.extend(weights[name] for name in sorted(used - own) if name in weights)
                    localise(attribute.g)

    localise(graph)
    used_by_main = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    kept = [initializer for initializer in graph.initializer if initializer.name in used_by_main]
    del graph.initializer[:]
    graph.initializer.extend(kept)


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's progress lines, warnings and log records go to the debug log, not the terminal."""
    names = ("torch.onnx", "torch.export", "torch._export", "onnxscript")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:  # CRITICAL: torch.export logs branch tracing (torch.cond) at ERROR level
        logging.getLogger(name).setLevel(logging.CRITICAL)
    stream = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(stream):
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if stream.getvalue():
            logging.getLogger(__name__).debug("ONNX exporter said:\n%s", stream.getvalue())


def weights_digest(weights: str | Path) -> str:
    """SHA-256 of a weights file and of its model card beside it: the identity of a trained
    network. The card counts because its options shape the network: a routed network's gate
    is in the card, not in the weights, and a changed gate is a different network (its export
    and its cached scores must not be reused). Read once per process while the files are
    unchanged (a batch labels every output with it). The one identity used everywhere: an
    export's ``source_sha256``, cached scores, and a batch's method label and DICOM UIDs.
    """
    from .weights import card_path

    weights = Path(weights)
    files = [weights]
    card = card_path(weights)
    if weights.suffix.lower() == ".safetensors" and card.is_file():
        files.append(card)
    stats = [(path, path.stat()) for path in files]
    return _digest_of(tuple((str(path.resolve()), stat.st_size, stat.st_mtime_ns) for path, stat in stats))


@functools.lru_cache(maxsize=16)
def _digest_of(files: tuple[tuple[str, int, int], ...]) -> str:
    """SHA-256 of the files' bytes one after the other; keyed by (path, size, mtime) so that a
    changed file is read again."""
    digest = hashlib.sha256()
    for path, _size, _mtime in files:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def onnx_source_digest(path: Path) -> str | None:
    """The ``source_sha256`` an exported file records, read without onnxruntime or onnx."""
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return session.get_modelmeta().custom_metadata_map.get("source_sha256")
    except Exception:  # noqa: BLE001 - unreadable or damaged: not a usable export
        return None


def cached_onnx(source: Path, digest: str | None = None) -> Path:
    """Where the export of the weights file ``source`` is cached (it may not exist yet)."""
    return cache_dir() / "onnx" / f"{source.stem}-{(digest or weights_digest(source))[:16]}.onnx"


def ensure_onnx(weights: str | Path | None) -> Path:
    """ONNX file for ``weights`` (default: the shipped model).

    The shipped model comes with its export (``pretrained/NAME.onnx``), so ONNX Runtime needs
    neither torch nor onnx; other weights are exported once into the cache folder.
    """
    from .weights import shipped_onnx, shipped_weights

    source = Path(weights) if weights is not None else shipped_weights()
    if not source.is_file():
        raise WeightsError(f"{source}: weights file not found")
    digest = weights_digest(source)
    packaged = shipped_onnx(source)
    if packaged is not None and onnx_source_digest(packaged) == digest:
        return packaged
    target = cached_onnx(source, digest)
    if not target.exists():
        export_onnx(source, target)
    return target
