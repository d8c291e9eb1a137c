"""The PyTorch network: the paper's size targets, the MAC counter, and patch == whole inference."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from siammixer_ros.core.runtime import assemble_grid, make_patches  # noqa: E402
from siammixer_ros.model.network import (  # noqa: E402
    BranchBatchNorm2d,
    SiamMixer,
    count_macs,
    count_parameters,
    module_macs,
)

torch.set_num_threads(1)

PAPER_PARAMS = {"s": 0.389e6, "m": 0.593e6, "l": 1.003e6}


def randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics, so that equivalence tests exercise the affine parts too."""
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            mod.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
            if isinstance(mod, BranchBatchNorm2d):  # other statistics for the template branch
                mod.template_running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                mod.template_running_var.copy_(torch.rand(n, generator=g) + 0.5)


def test_xs_parameters_and_macs_meet_the_paper_targets() -> None:
    model = SiamMixer("xs")
    params = count_parameters(model)
    assert 0.27e6 <= params <= 0.30e6, params
    macs = count_macs(model)
    assert macs["total"] <= 360e6, macs
    # template + search + correlation are all counted and non-trivial
    assert macs["template"] > 0 and macs["search"] > 3 * macs["template"] and macs["head"] == 81 * 256 * 64


@pytest.mark.parametrize("variant", ["s", "m", "l"])
def test_deeper_variants_are_within_5_percent_of_the_paper(variant: str) -> None:
    params = count_parameters(SiamMixer(variant))
    assert abs(params - PAPER_PARAMS[variant]) <= 0.05 * PAPER_PARAMS[variant], params


def test_unknown_variant_is_rejected_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match="xs, s, m, l"):
        SiamMixer("xxl")


def test_mac_counter_on_known_layers() -> None:
    conv = torch.nn.Conv2d(4, 6, 3, padding=1)
    x = torch.zeros(1, 4, 5, 5)
    assert module_macs(conv, (x,), conv(x)) == 5 * 5 * 6 * 4 * 9
    dw = torch.nn.Conv2d(8, 8, 5, stride=2, padding=2, groups=8)
    x = torch.zeros(2, 8, 10, 10)
    assert module_macs(dw, (x,), dw(x)) == 2 * 8 * 5 * 5 * 25
    c1 = torch.nn.Conv1d(3, 7, 1)
    x = torch.zeros(1, 3, 11)
    assert module_macs(c1, (x,), c1(x)) == 11 * 7 * 3
    ct = torch.nn.ConvTranspose2d(4, 1, 2, stride=2)
    x = torch.zeros(3, 4, 1, 1)
    assert module_macs(ct, (x,), ct(x)) == 3 * 4 * 1 * 4
    lin = torch.nn.Linear(10, 3)
    x = torch.zeros(2, 10)
    assert module_macs(lin, (x,), lin(x)) == 2 * 3 * 10


def test_shapes_stride_and_halo() -> None:
    model = SiamMixer("xs").eval()
    assert model.halo() == (6, 3)
    assert model.response_size == 9 and model.stride == 16
    with torch.no_grad():
        zf = model.template_features(torch.zeros(1, 3, 128, 128))
        xf = model.search_features(torch.zeros(3, 3, 256, 256))
        assert zf.shape == (1, 256, 8, 8) and xf.shape == (3, 256, 16, 16)
        assert model.head(zf, xf).shape == (3, 1, 9, 9)
        # paired (training) correlation: template i with search i
        z2 = torch.rand(2, 3, 128, 128) * 255
        x2 = torch.rand(2, 3, 256, 256) * 255
        paired = model(z2, x2)
        single = model(z2[1:], x2[1:])
        assert torch.allclose(paired[1:], single, atol=1e-5)


def test_patch_path_matches_whole_image_borders_included() -> None:
    torch.manual_seed(0)
    model = SiamMixer("xs")
    randomise_batchnorm(model)
    model.eval()
    halo = model.halo()
    images = np.random.default_rng(0).uniform(0, 255, (2, 3, 256, 256)).astype(np.float32)
    patches, masks = make_patches(images, 16, *halo)
    with torch.no_grad():
        whole = model.shallow(torch.from_numpy(images)).numpy()
        grid = assemble_grid(model.search_patch_features(torch.from_numpy(patches), torch.from_numpy(masks)).numpy(),
                             2, 16)
        deep_whole = model.search_features(torch.from_numpy(images)).numpy()
        deep_patch = model.search_global_features(torch.from_numpy(grid)).numpy()
    assert np.abs(whole - grid).max() <= 1e-4
    assert np.abs(deep_whole - deep_patch).max() <= 1e-4
    # without the mask, border patches differ: the mask is what makes the borders exact
    with torch.no_grad():
        unmasked = model.search_patch_features(torch.from_numpy(patches), torch.ones_like(torch.from_numpy(masks)))
    assert np.abs(assemble_grid(unmasked.numpy(), 2, 16) - whole).max() > 1e-3


def test_folding_the_input_normalisation_keeps_outputs_and_the_original_model() -> None:
    from siammixer_ros.model.network import fold_input_normalisation

    torch.manual_seed(0)
    model = SiamMixer("xs")
    randomise_batchnorm(model)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_input_normalisation(model)
    x = torch.rand(1, 3, 256, 256) * 255
    with torch.no_grad():
        assert torch.allclose(folded.search_features(x), model.search_features(x), atol=1e-4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert folded.normalisation_folded and not model.normalisation_folded


def test_single_template_correlation_equals_plain_convolution() -> None:
    from siammixer_ros.model.network import Correlation

    g = torch.Generator().manual_seed(0)
    zf = torch.randn(1, 256, 8, 8, generator=g)
    xf = torch.randn(3, 256, 16, 16, generator=g)
    ref = torch.nn.functional.conv2d(xf, zf)
    out = Correlation()(zf, xf)
    assert out.shape == (3, 1, 9, 9)
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("variant", ["xs", "m"])
def test_projection_moved_to_the_template_side_gives_the_same_response(variant) -> None:
    # What the exported search parts and head compute (search stops before MB4's projection).
    torch.manual_seed(2)
    model = SiamMixer(variant)
    randomise_batchnorm(model)
    model.eval()
    z = torch.rand(1, 3, 128, 128) * 255
    x = torch.rand(3, 3, 256, 256) * 255
    with torch.no_grad():
        zf = model.template_features(z)
        want = model.head(zf, model.search_features(x))
        got = model.head_from_hidden(zf, model.search_hidden(x))
        paired = model.head_from_hidden(model.template_features(z.expand(3, -1, -1, -1)), model.search_hidden(x))
    assert torch.allclose(got, want, atol=1e-4) and torch.allclose(paired, want, atol=1e-4)
    assert want.std() > 1e-3


def test_each_branch_keeps_and_uses_its_own_batchnorm_statistics() -> None:
    # Template and search crops differ in statistics; one blended average normalised neither as trained.
    torch.manual_seed(0)
    model = SiamMixer("xs")
    model.train()
    with torch.no_grad():
        for _ in range(30):
            model.template_features(torch.rand(4, 3, 128, 128) * 60)         # dark templates
            model.search_features(torch.rand(4, 3, 256, 256) * 60 + 190)     # bright searches
    bn = model.mb1.expand_bn
    assert bn.branch == BranchBatchNorm2d.SEARCH  # restored after the template call
    assert int(bn.template_num_batches_tracked) == 30 and int(bn.num_batches_tracked) == 30
    assert (bn.template_running_mean - bn.running_mean).abs().max() > 0.1
    # In eval mode each branch normalises with its own average: a bright template is far off its statistics,
    # a dark one is not (the first block's normalised output stays near zero mean).
    model.eval()
    outputs = {}

    def keep(_module, _inputs, output):
        outputs["mb1"] = output

    handle = bn.register_forward_hook(keep)
    with torch.no_grad():
        model.template_features(torch.rand(2, 3, 128, 128) * 60)
        dark = outputs["mb1"].mean().abs().item()
        model.template_features(torch.rand(2, 3, 128, 128) * 60 + 190)
        bright = outputs["mb1"].mean().abs().item()
    handle.remove()
    assert dark < 0.2 < bright


def test_a_checkpoint_without_branch_statistics_loads_with_the_blended_ones_for_both() -> None:
    from siammixer_ros.model.network import has_branch_statistics, load_model_state

    model = SiamMixer("xs")
    randomise_batchnorm(model)
    old = {k: v for k, v in model.state_dict().items() if "template_" not in k}
    assert has_branch_statistics(model.state_dict()) and not has_branch_statistics(old)
    fresh = SiamMixer("xs")
    load_model_state(fresh, old)
    bn = fresh.mixer2.layers[0].token_mixing.norm
    assert torch.equal(bn.template_running_mean, old["mixer2.layers.0.token_mixing.norm.running_mean"])
    assert torch.equal(bn.running_var, old["mixer2.layers.0.token_mixing.norm.running_var"])


def test_xs_weights_grow_into_s_computing_the_same_and_only_when_asked() -> None:
    from siammixer_ros.model.network import load_model_state

    xs = SiamMixer("xs")
    randomise_batchnorm(xs)
    s = SiamMixer("s")
    with pytest.raises(RuntimeError, match="missing keys: mixer2.layers.1"):  # a resume must never grow silently
        load_model_state(s, xs.state_dict())
    assert load_model_state(s, xs.state_dict(), grow_depth=True) == []
    xs.eval(), s.eval()
    g = torch.Generator().manual_seed(0)
    z, x = torch.rand(1, 3, 128, 128, generator=g) * 255, torch.rand(2, 3, 256, 256, generator=g) * 255
    with torch.no_grad():
        assert torch.allclose(s(z, x), xs(z, x), atol=1e-5)
    # The grown layer trains: its last layers get gradients from the first step.
    s.train()
    s(z, x).sum().backward()
    grown = s.mixer2.layers[1]
    assert grown.token_mixing.fc2.weight.grad.abs().sum() > 0
    assert grown.channel_mixing.fc2.weight.grad.abs().sum() > 0


def test_reestimated_statistics_are_exact_averages_and_keep_the_weights() -> None:
    from siammixer_ros.train.bn_stats import estimate_branch_statistics

    torch.manual_seed(0)
    model = SiamMixer("xs")
    randomise_batchnorm(model)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "tracked" not in k}
    g = torch.Generator().manual_seed(3)
    batches = [{"template": (torch.rand(2, 3, 128, 128, generator=g) * 255).numpy(),
                "search": (torch.rand(2, 3, 256, 256, generator=g) * 255).numpy()} for _ in range(3)]
    assert estimate_branch_statistics(model, batches) == 3
    assert not model.training
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items() if k in weights)
    # The first BatchNorm sees the (linear) expand conv of the normalised input: its template mean is the
    # average over the three template batches of the per-batch channel means.
    bn, conv = model.mb1.expand_bn, model.mb1.expand
    with torch.no_grad():
        means = [conv(model.normalise(torch.from_numpy(b["template"]))).mean(dim=(0, 2, 3)) for b in batches]
    assert torch.allclose(bn.template_running_mean, torch.stack(means).mean(0), atol=1e-4)
    assert int(bn.template_num_batches_tracked) == 3 and int(bn.num_batches_tracked) == 3
    assert bn.momentum == 0.1  # restored
