"""Package finished training runs as a shipped model: float16 safetensors, its card and history.

``xraydenoise ship RUN --name NAME [--config CONFIG ...] [--out DIR]`` ships one run;
``--white-expert RUN`` ships a routed network (:mod:`xraydenoise.models.routed`) whose detector
expert is RUN and whose white-noise expert is the other run. CONFIG: the config(s) that made
the run, in order (several when it started from the weights of earlier runs); the card
records them and the commands that reproduce the model.

float16 halves the file; weights are converted back to float32 on load, and the outputs move
by far less than one grey level.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, WeightsError
from ..weights import SHIPPED_DIR, ModelCard, load_model, read_card, save_weights
from .train import joined_history, read_history, write_history


def _completed(card: ModelCard, run_dir: Path, configs: list[str] | None) -> tuple[ModelCard, list[dict]]:
    """The run's card with the totals over all its stages, and its joined history."""
    training = dict(card.training)
    history = joined_history(run_dir) if (run_dir / "history.csv").exists() else []
    if training.get("initialised_from") and history:  # totals over every stage, from the joined history
        training["total_steps"] = int(history[-1]["step"])
        training["total_seconds"] = float(history[-1]["elapsed_s"])
    card = card.replace(training=training)
    if configs:
        card = card.replace(config=configs[-1] if len(configs) == 1 else list(configs),
                            command=" && ".join(f"xraydenoise train --config {c}" for c in configs))
    return card, history


def _totals(training: dict) -> tuple[int, float]:
    return int(training.get("total_steps", training.get("steps", 0))), float(training.get("total_seconds", training.get("seconds", 0)))


def _ancestors(training: dict) -> list[Path]:
    """The weights a run started from, the weights those started from, and so on, as far as
    the model cards beside them on disk tell."""
    chain: list[Path] = []
    start = training.get("initialised_from") or {}
    while start.get("weights"):
        path = Path(start["weights"]).resolve()
        if path in chain:
            break
        chain.append(path)
        try:
            start = read_card(path).training.get("initialised_from") or {}
        except WeightsError:  # not on disk here: the chain known ends
            break
    return chain


def _routed_totals(detector: dict, white: dict, white_dir: Path) -> tuple[int, float]:
    """Steps and seconds that made both experts, the stages they share counted once.

    A detector expert that started from the white expert's weights already counts the white
    expert's training in its own totals (``initialised_from``); a detector expert that started
    from weights the white expert also descends from (directly, or through earlier stages of
    its own) counts those weights' training once.
    """
    steps, seconds = _totals(detector)
    start = detector.get("initialised_from") or {}
    white_weights = white_dir if white_dir.suffix == ".safetensors" else white_dir / "model.safetensors"
    if start.get("weights") and Path(start["weights"]).resolve() == white_weights.resolve():
        return steps, round(seconds, 1)
    white_steps, white_seconds = _totals(white)
    steps, seconds = steps + white_steps, seconds + white_seconds
    if start.get("weights") and Path(start["weights"]).resolve() in _ancestors(white):
        steps, seconds = steps - int(start.get("steps", 0)), seconds - float(start.get("seconds", 0.0))
    return steps, round(seconds, 1)


def _run_model(run_dir: Path):
    weights = run_dir if run_dir.suffix == ".safetensors" else run_dir / "model.safetensors"
    if not weights.is_file():
        raise ConfigError(f"{run_dir}: no model.safetensors (has the run finished? `xraydenoise train --resume` completes it)")
    return load_model(weights)


def ship_run(run_dir: str | Path, dest_dir: str | Path, name: str, *, config: str | list[str] | None = None,
             white_expert: str | Path | None = None, white_config: str | list[str] | None = None,
             gate: tuple[float, float] = (0.05, 0.15)) -> Path:
    """Ship ``run_dir`` as ``dest_dir/NAME.safetensors`` (+ ``.json`` card, ``.history.csv``).

    With ``white_expert`` the shipped network is routed: ``run_dir`` is its detector expert
    (told the std map and the correlation), ``white_expert`` its white-noise expert (told the
    std map); the card lists both experts' cards, and the history written is the detector
    expert's (the white expert's goes beside it as ``NAME.white.history.csv``).
    """
    run_dir, dest_dir = Path(run_dir), Path(dest_dir)
    configs = [config] if isinstance(config, str) else list(config or [])
    model = _run_model(run_dir)
    card, history = _completed(model.card.replace(name=name), run_dir, configs)
    white_history: list[dict] = []
    if white_expert is not None:
        from ..models import count_parameters, create_model
        from ..models.routed import compose_state

        white_dir = Path(white_expert)
        white = _run_model(white_dir)
        white_configs = [white_config] if isinstance(white_config, str) else list(white_config or [])
        if white_dir.suffix == ".safetensors":  # shipped weights: their card and history are complete
            white_card = white.card
            white_configs = white_configs or ([white_card.config] if isinstance(white_card.config, str) else list(white_card.config or []))
            history_file = white_dir.with_suffix(".history.csv")
            white_history = read_history(history_file) if history_file.is_file() else []
        else:
            white_card, white_history = _completed(white.card, white_dir, white_configs)
        options = {"white": white.card.options, "correlated": model.card.options, "gate": list(gate)}
        steps, seconds = _routed_totals(card.training, white_card.training, white_dir)
        routed = create_model("routed", **options)
        routed.load_state_dict(compose_state(white.state_dict(), model.state_dict()))
        card = ModelCard(
            name=name, architecture="routed", options=options, parameters=count_parameters(routed), blind=False,
            data=card.data, noise={"white": white_card.noise, "correlated": card.noise},
            training={"total_steps": steps, "total_seconds": seconds, "machine": card.training.get("machine")},
            validation={"white": white_card.validation, "correlated": card.validation},
            experts={"white": _expert_card(white_card), "correlated": _expert_card(card)},
            config=[*white_configs, *configs] or None,
            command=" && ".join(filter(None, [white_card.command, card.command])) or None,
        )
        model = routed
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = save_weights(model, dest_dir / f"{name}.safetensors", card, half=True)
    if history:
        write_history(dest_dir / f"{name}.history.csv", history)
    if white_history:
        write_history(dest_dir / f"{name}.white.history.csv", white_history)
    return target


def _expert_card(card: ModelCard) -> dict:
    """An expert's card inside a routed network's: how it was made, not how a file stored it
    (its weights are stored in the routed file, in that card's ``weights_dtype``)."""
    described = card.to_dict()
    described.pop("weights_dtype", None)
    return described


def default_destination() -> Path:
    return SHIPPED_DIR
