import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from xraydenoise.training.losses import combined_loss, psnr_per_image, ssim_per_image


def test_training_ssim_and_psnr_equal_scikit_image_on_a_real_radiograph(chest_crop):
    rng = np.random.default_rng(1)
    clean = np.stack([chest_crop, chest_crop[::-1]])
    noisy = np.clip(clean + 0.05 * rng.standard_normal(clean.shape), 0, 1)
    ours_ssim = ssim_per_image(torch.tensor(noisy[:, None]), torch.tensor(clean[:, None])).numpy()
    ours_psnr = psnr_per_image(torch.tensor(noisy[:, None]), torch.tensor(clean[:, None])).numpy()
    for i in range(2):
        assert ours_ssim[i] == pytest.approx(structural_similarity(clean[i], noisy[i], data_range=1.0), abs=1e-5)
        assert ours_psnr[i] == pytest.approx(peak_signal_noise_ratio(clean[i], noisy[i], data_range=1.0), abs=1e-4)


def test_combined_loss_weights_mse_and_ssim():
    torch.manual_seed(0)
    a, b = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    mse = torch.mean((a - b) ** 2)
    one_minus_ssim = 1 - ssim_per_image(a, b).mean()
    assert combined_loss(a, b, 1.0) == pytest.approx(mse.item(), rel=1e-6)
    assert combined_loss(a, b, 0.0) == pytest.approx(one_minus_ssim.item(), rel=1e-5)
    assert combined_loss(a, b, 0.7) == pytest.approx(0.7 * mse.item() + 0.3 * one_minus_ssim.item(), rel=1e-5)
    assert combined_loss(a, a, 0.5) == pytest.approx(0.0, abs=1e-6)


def test_ssim_loss_has_gradients():
    a = torch.rand(1, 1, 24, 24, requires_grad=True)
    combined_loss(a, torch.rand(1, 1, 24, 24), 0.5).backward()
    assert a.grad is not None and a.grad.abs().sum() > 0


def test_noise_balanced_mse_weighs_every_noise_level_alike():
    torch.manual_seed(0)
    clean = torch.rand(2, 1, 16, 16)
    std = torch.tensor([0.01, 0.1]).view(2, 1, 1, 1).expand(2, 1, 16, 16)
    pred = clean + 0.5 * std * torch.randn(2, 1, 16, 16)  # both patches keep half their noise
    per_patch = combined_loss(pred[:1], clean[:1], 1.0, std[:1]), combined_loss(pred[1:], clean[1:], 1.0, std[1:])
    assert per_patch[0] == pytest.approx(per_patch[1].item(), rel=0.5)  # plain MSE would differ 100x
    plain = combined_loss(pred[:1], clean[:1], 1.0), combined_loss(pred[1:], clean[1:], 1.0)
    assert plain[1] > 30 * plain[0]
