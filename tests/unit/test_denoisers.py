"""How ``backend="auto"`` picks the default path: the candidates and the fastest that matches fp32."""

from __future__ import annotations

import pytest

from xraydenoise import denoisers
from xraydenoise.denoisers import MATCH_DB, backend_candidates, fastest_matching


def test_onnx_runtime_is_no_candidate_on_a_gpu_without_its_cuda_provider(monkeypatch):
    # The plain onnxruntime wheel (what .[dev] installs) beside a CUDA torch: ONNX Runtime would
    # refuse cuda:0, so the default path must not pick it there; on the CPU it stays a candidate.
    monkeypatch.setattr(denoisers, "default_backend", lambda weights=None: "onnxruntime")
    monkeypatch.setattr(denoisers, "_onnxruntime_has_cuda", lambda: False)
    assert ("onnxruntime", False) not in backend_candidates(None, "cuda:0")
    assert ("torch", True) in backend_candidates(None, "cuda:0")  # bf16 is offered on any GPU
    assert ("onnxruntime", False) in backend_candidates(None, "cpu")
    monkeypatch.setattr(denoisers, "_onnxruntime_has_cuda", lambda: True)
    assert ("onnxruntime", False) in backend_candidates(None, "cuda:0")


def test_bf16_is_a_candidate_on_the_cpu_only_with_bf16_instructions(monkeypatch):
    from xraydenoise import hardware

    for has_bf16 in (False, True):
        monkeypatch.setattr(hardware, "cpu_has_bf16", lambda has_bf16=has_bf16: has_bf16)
        assert (("torch", True) in backend_candidates(None, "cpu")) is has_bf16
    assert backend_candidates(None, "cpu")[0] == ("torch", False)


def test_the_fastest_backend_is_taken_only_if_it_matches_fp32():
    fp32 = (2.0, [40.0, 35.0])
    off_by_more = [40.0, 35.0 - 2 * MATCH_DB]
    assert fastest_matching({("torch", False): fp32, ("torch", True): (0.1, off_by_more)}) == ("torch", False)
    within = [40.0 + MATCH_DB / 2, 35.0]
    assert fastest_matching({("torch", False): fp32, ("torch", True): (0.1, within), ("onnxruntime", False): (0.5, [40.0, 35.0])}) \
        == ("torch", True)


@pytest.mark.slow
def test_auto_probes_once_and_later_processes_reuse_the_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAYDENOISE_CACHE", str(tmp_path))
    monkeypatch.setattr(denoisers, "_FASTEST", {})
    choice = denoisers.fastest_backend()
    assert choice in backend_candidates(None, "cpu")
    monkeypatch.setattr(denoisers, "_FASTEST", {})  # a new process: only the cache folder remembers
    monkeypatch.setattr(denoisers, "_probe_images", lambda: pytest.fail("probed again"))
    assert denoisers.fastest_backend() == choice


def test_a_remembered_choice_that_can_no_longer_run_is_not_taken(tmp_path, monkeypatch):
    # An earlier process remembered PyTorch; torch has since been removed (or is blocked).
    monkeypatch.setenv("XRAYDENOISE_CACHE", str(tmp_path))
    monkeypatch.setattr(denoisers, "_FASTEST", {})
    monkeypatch.setattr(denoisers, "_remembered_choice", lambda weights, device: ("torch", False))
    monkeypatch.setattr(denoisers, "backend_candidates", lambda weights=None, device="cpu": [("onnxruntime", False)])
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked for this test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    assert denoisers.fastest_backend() == ("onnxruntime", False)
