import pytest
import torch

from xraydenoise.errors import ConfigError
from xraydenoise.models import count_parameters, create_model, grow_state, list_models

SMALL = {"unet": {"base_channels": 8, "levels": 3}, "dncnn": {"depth": 5, "channels": 8},
         "rdn": {"channels": 8, "blocks": 2, "layers_per_block": 2, "growth": 4}}


#: The paper's three families; "routed" puts two RDN experts behind one network (tested below).
FAMILIES = ["dncnn", "rdn", "unet"]


def test_registry_lists_the_three_families_and_the_routed_pair():
    assert list_models() == sorted(FAMILIES + ["routed"])


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("noise_map", [False, True])
def test_every_model_runs_forward_and_backward_on_odd_sizes(name, noise_map):
    torch.manual_seed(0)
    model = create_model(name, noise_map=noise_map, **SMALL[name])
    x = torch.rand(2, 1, 97, 131, requires_grad=True)
    sigma = torch.full_like(x, 0.1)
    y = model(x, sigma) if noise_map else model(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert count_parameters(model) > 0


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 3)])
def test_tiny_images_are_padded_not_refused(name, shape):
    model = create_model(name, **SMALL[name]).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 1, *shape))
    assert y.shape == (1, 1, *shape)


def test_networks_predict_the_noise_residual():
    # With the last layer zeroed the U-Net's noise estimate is zero, so it returns its input.
    model = create_model("unet", **SMALL["unet"]).eval()
    torch.nn.init.zeros_(model.core.tail.weight)
    torch.nn.init.zeros_(model.core.tail.bias)
    x = torch.rand(1, 1, 40, 40)
    with torch.no_grad():
        assert torch.equal(model(x), x)


def test_unknown_model_and_option_give_config_errors():
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("vgg")
    with pytest.raises(ConfigError, match="bad options"):
        create_model("unet", widht=3)


def test_a_grown_rdn_computes_what_the_trained_one_did_and_then_learns():
    torch.manual_seed(0)
    small_options = SMALL["rdn"]
    big_options = dict(small_options, blocks=4)
    small = create_model("rdn", **small_options)
    for p in small.parameters():  # trained-looking weights: no zero biases to hide a mix-up
        torch.nn.init.normal_(p, std=0.1)
    big = create_model("rdn", **big_options)
    big.load_state_dict(grow_state("rdn", small.state_dict(), big.state_dict(), small_options, big_options))
    x = torch.rand(1, 1, 37, 53)
    with torch.no_grad():
        assert torch.equal(big(x), small(x))
    assert count_parameters(big) > count_parameters(small)
    # The new blocks must not be dead ends: after one step they change the output.
    optimizer = torch.optim.SGD(big.parameters(), lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        (big(x) - x * 0.5).square().mean().backward()
        optimizer.step()
    assert big.core.blocks[3].fuse.weight.abs().sum() > 0


def test_only_depth_of_an_rdn_can_grow():
    small_options = SMALL["rdn"]
    small = create_model("rdn", **small_options)
    wider = dict(small_options, channels=16)
    with pytest.raises(ConfigError, match="can only grow in depth"):
        grow_state("rdn", small.state_dict(), create_model("rdn", **wider).state_dict(), small_options, wider)
    unet = create_model("unet", **SMALL["unet"])
    with pytest.raises(ConfigError, match="cannot start from weights"):
        grow_state("unet", unet.state_dict(), unet.state_dict(), SMALL["unet"], dict(SMALL["unet"], levels=2))


def test_an_rdn_told_the_noise_takes_the_std_map_and_the_correlation():
    torch.manual_seed(0)
    model = create_model("rdn", noise_map=True, correlation=True, noise_map_gain=10.0, **SMALL["rdn"]).eval()
    assert model.noise_channels == 3 and model.core.head.in_channels == 4 + 3
    x = torch.rand(1, 1, 37, 53)
    told = torch.cat([torch.full_like(x, 0.05), torch.full_like(x, 0.8), torch.full_like(x, 0.4)], dim=1)
    white = torch.cat([told[:, :1], torch.zeros_like(x), torch.zeros_like(x)], dim=1)
    with torch.no_grad():
        assert not torch.equal(model(x, told), model(x, white))  # it reads the correlation channels
    with pytest.raises(ConfigError, match="needs noise_map"):
        create_model("rdn", correlation=True, **SMALL["rdn"])


def test_a_blind_rdn_grows_into_one_told_the_noise_that_starts_where_it_was():
    torch.manual_seed(0)
    blind_options = SMALL["rdn"]
    told_options = dict(blind_options, blocks=3, noise_map=True, correlation=True, noise_map_gain=10.0)
    blind = create_model("rdn", **blind_options)
    for p in blind.parameters():
        torch.nn.init.normal_(p, std=0.1)
    told = create_model("rdn", **told_options)
    told.load_state_dict(grow_state("rdn", blind.state_dict(), told.state_dict(), blind_options, told_options))
    x = torch.rand(1, 1, 40, 36)
    condition = torch.rand(1, 3, 40, 36)
    with torch.no_grad():
        assert torch.equal(told(x, condition), blind(x))  # told anything, it computes what it did
    # Growth never throws away what a network knows.
    with pytest.raises(ConfigError, match="can only grow"):
        grow_state("rdn", told.state_dict(), blind.state_dict(), told_options, dict(told_options, noise_map=False, correlation=False))
    with pytest.raises(ConfigError, match="noise_map_gain cannot change"):
        grow_state("rdn", told.state_dict(), told.state_dict(), told_options, dict(told_options, noise_map_gain=1.0))


ROUTED = {"white": dict(SMALL["rdn"], noise_map=True, noise_map_gain=10.0),
          "correlated": dict(SMALL["rdn"], noise_map=True, correlation=True, noise_map_gain=10.0), "gate": [0.1, 0.3]}


@pytest.mark.parametrize("white_told", [True, False], ids=["white-expert-told-the-std", "white-expert-blind"])
def test_a_routed_network_takes_each_expert_by_the_noise_correlation_and_blends_between(white_told):
    from xraydenoise.models.routed import compose_state

    torch.manual_seed(0)
    options = dict(ROUTED, white=ROUTED["white"] if white_told else SMALL["rdn"])
    white = create_model("rdn", **options["white"])
    correlated = create_model("rdn", **options["correlated"])
    for p in list(white.parameters()) + list(correlated.parameters()):
        torch.nn.init.normal_(p, std=0.1)
    routed = create_model("routed", **options).eval()
    routed.load_state_dict(compose_state(white.state_dict(), correlated.state_dict()))
    assert routed.noise_channels == 3
    x = torch.rand(3, 1, 37, 29)
    std = torch.full_like(x, 0.05)
    told = torch.cat([std, torch.cat([torch.full_like(x[:1], v) for v in (0.05, 0.2, 0.5)]), torch.zeros_like(x)], dim=1)
    with torch.no_grad():
        out = routed(x, told)
        w, c = (white(x, std) if white_told else white(x)), correlated(x, told)
    assert torch.allclose(out[0], w[0], atol=1e-6)  # lag-1 0.05: white expert
    assert torch.allclose(out[2], c[2], atol=1e-6)  # lag-1 0.5: detector expert
    assert torch.allclose(out[1], 0.5 * (w[1] + c[1]), atol=1e-6)  # halfway through the gate: the mean
    with pytest.raises(ConfigError, match="white expert, blind or told the std map"):
        create_model("routed", white=ROUTED["correlated"], correlated=ROUTED["correlated"])
    with pytest.raises(ConfigError, match="detector expert told the correlation"):
        create_model("routed", white=ROUTED["white"], correlated=ROUTED["white"])
    with pytest.raises(ConfigError, match="gate"):
        create_model("routed", **dict(ROUTED, gate=[0.4, 0.2]))


def _probed_radius(model, size: int) -> int:
    """Farthest output pixel (Chebyshev distance) that one changed input pixel moves, in float64."""
    torch.manual_seed(0)
    model = model.double().eval()
    channels = model.noise_channels
    x = torch.rand(1, 1, size, size, dtype=torch.float64)
    condition = torch.rand(1, channels, size, size, dtype=torch.float64) if channels else None
    if condition is not None and channels == 3:
        condition[:, 1:] = 0.5  # a routed pair then runs both experts
    moved = x.clone()
    moved[..., size // 2, size // 2] += 0.5
    with torch.no_grad():
        before = model(x) if condition is None else model(x, condition)
        after = model(moved) if condition is None else model(moved, condition)
    rows, cols = torch.nonzero((before - after)[0, 0] != 0, as_tuple=True)
    return int(max((rows - size // 2).abs().max(), (cols - size // 2).abs().max()))


ROUTED_SMALL = {"white": {**SMALL["rdn"], "blocks": 1},
                "correlated": {**SMALL["rdn"], "noise_map": True, "correlation": True}}


@pytest.mark.parametrize(("name", "options"), [
    ("dncnn", SMALL["dncnn"]), ("rdn", SMALL["rdn"]), ("rdn", {**SMALL["rdn"], "pixel_unshuffle": False}),
    ("unet", SMALL["unet"]), ("unet", {"base_channels": 8, "levels": 2, "blocks_per_level": 2, "pixel_unshuffle": False}),
    ("routed", ROUTED_SMALL)])
def test_the_receptive_radius_worked_out_from_the_options_is_what_a_one_pixel_probe_reaches(name, options):
    from xraydenoise.models import receptive_radius

    radius = receptive_radius(name, options)
    probed = _probed_radius(create_model(name, **options), 2 * radius + 49)
    # Never less than the probe (tiles would show seams); exact for plain convolution stacks,
    # an upper bound within 15 % where pooling and upsampling shift the grid (the U-Net).
    assert probed <= radius <= (probed if name != "unet" else 1.15 * probed)
    assert receptive_radius("rdn", {"blocks": 6, "layers_per_block": 4}) == 55  # the shipped experts
    assert receptive_radius("no-such-family", {}) is None and receptive_radius("routed", {}) is None


@pytest.mark.parametrize("name", FAMILIES + ["routed"])
def test_the_image_reading_convolutions_stay_fp32_under_bf16_autocast(name):
    from xraydenoise.models.blocks import Float32Input, keep_input_layers_fp32

    expert = {"channels": 8, "blocks": 1, "layers_per_block": 2, "growth": 4, "noise_map": True}
    options = {"white": expert, "correlated": {**expert, "correlation": True}} if name == "routed" else SMALL[name]
    torch.manual_seed(0)
    model = create_model(name, **options).eval()
    wrapped = keep_input_layers_fp32(model)
    heads = [m for m in wrapped.modules() if isinstance(m, Float32Input)]
    assert len(heads) == (2 if name == "routed" else 1)  # each expert of a routed network has its own
    assert keep_input_layers_fp32(wrapped) is wrapped and len([m for m in wrapped.modules() if isinstance(m, Float32Input)]) == len(heads)
    conv = heads[0].layer
    # A pixel value that bf16 cannot hold: the fp32 head sees it exactly, autocast elsewhere rounds it.
    x = torch.full((1, conv.in_channels, 8, 8), 0.7003)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        kept = heads[0](x)
        rounded = conv(x)
    exact = conv(x).detach()
    assert kept.dtype == torch.bfloat16
    assert torch.equal(kept, exact.to(torch.bfloat16))  # the fp32 result, rounded once on the way out
    assert not torch.equal(rounded, kept)  # what plain autocast computes instead
    with torch.no_grad():  # outside autocast the wrapper changes nothing
        assert torch.equal(heads[0](x), conv(x))


def test_global_fusion_added_block_by_block_is_the_fusion_of_the_concatenated_outputs():
    torch.manual_seed(0)
    model = create_model("rdn", channels=8, blocks=3, layers_per_block=2, growth=4).eval()
    core = model.core
    x = torch.rand(1, 1, 40, 48)
    with torch.no_grad():
        shallow = core.head(torch.nn.functional.pixel_unshuffle(x, core.unshuffle))
        outputs, h = [], shallow
        for block in core.blocks:
            h = block(h)
            outputs.append(h)
        concatenated = core.global_fuse[0](torch.cat(outputs, dim=1))
        torch.testing.assert_close(core._fused_blocks(shallow), concatenated, rtol=1e-5, atol=1e-6)
