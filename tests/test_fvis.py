"""Feature visualization: parameterization, transforms, objectives and the render loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_viz import TinyCNN

from tasks.viz.fvis import (
    batched_channels,
    channel,
    fft_image,
    image_param,
    jitter,
    random_rotate,
    random_scale,
    render,
    standard_transforms,
    visualize_channels,
)
from tasks.viz.fvis.param import COLOR_CORRELATION_SVD_SQRT, decorrelate_color

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return TinyCNN(channels=8, seed=0).eval()


def _channel_means(model, images):
    with torch.no_grad():
        return model.features(images).mean(dim=(2, 3))


def test_fft_image_matches_numpy_inverse_fft():
    gen = torch.Generator().manual_seed(3)
    params, image_fn = fft_image((2, 3, 12, 10), sd=0.1, generator=gen)
    spec = params[0].detach().numpy()
    fy = np.fft.fftfreq(12)[:, None]
    fx = np.fft.rfftfreq(10)[None, :]
    scale = 1.0 / np.maximum(np.sqrt(fx**2 + fy**2), 1.0 / 12)
    coeffs = (spec[..., 0] + 1j * spec[..., 1]) * scale
    ref = np.fft.irfft2(coeffs, s=(12, 10), norm="ortho") / 4.0
    np.testing.assert_allclose(image_fn().detach().numpy(), ref, rtol=1e-4, atol=1e-6)


def test_decorrelation_is_the_normalized_color_matrix():
    x = torch.randn(1, 3, 4, 5)
    m = COLOR_CORRELATION_SVD_SQRT / np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0).max()
    ref = np.einsum("dc,bchw->bdhw", m, x.numpy())
    np.testing.assert_allclose(decorrelate_color(x).numpy(), ref, rtol=1e-5, atol=1e-6)
    # a zero spectrum is mid-gray after the sigmoid
    p = image_param(1, 8, sd=0.0)
    np.testing.assert_allclose(p().detach().numpy(), 0.5, atol=1e-6)


def test_transforms_shapes_and_identity():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 20, 20)
    assert jitter(4)(x, gen).shape == (2, 3, 17, 17)
    assert random_scale([0.5])(x, gen).shape == (2, 3, 10, 10)
    torch.testing.assert_close(random_rotate([0])(x, gen), x, atol=1e-5, rtol=0)
    rotated = random_rotate([90])(x, gen)
    torch.testing.assert_close(rotated, torch.rot90(x, 1, dims=(2, 3)), atol=1e-4, rtol=0)


def test_objective_algebra_and_batched_equals_sum_of_singles():
    acts = {"l": torch.randn(3, 5, 4, 4)}
    a, b = channel("l", 1), channel("l", 2, batch=0)
    torch.testing.assert_close((a + b)(acts), a(acts) + b(acts))
    torch.testing.assert_close((-a)(acts), -a(acts))
    torch.testing.assert_close((2 * a - b)(acts), 2 * a(acts) - b(acts))
    assert (a + b).layers == {"l"}
    batched = batched_channels("l", [4, 0, 2], [1.0, -3.0, 0.5])
    singles = channel("l", 4, batch=0) - channel("l", 0, batch=1) + channel("l", 2, batch=2)
    torch.testing.assert_close(batched(acts), singles(acts))


def test_render_objective_goes_down(model):
    gen = torch.Generator().manual_seed(0)
    param = image_param(1, 32, generator=gen)
    res = render(model, channel("features", 3), param, steps=40, lr=0.05,
                 transforms=standard_transforms(32), generator=gen)
    assert len(res.losses) == 40
    assert np.mean(res.losses[-5:]) < np.mean(res.losses[:5]) - 0.1 * abs(np.mean(res.losses[:5]))
    assert res.images.shape == (1, 3, 32, 32)
    assert float(res.images.min()) >= 0.0 and float(res.images.max()) <= 1.0


@pytest.mark.slow
def test_visualization_activates_its_feature_far_more_than_random_images(model):
    channels = [0, 2, 3, 5]
    vis = visualize_channels(model, "features", channels, size=32, steps=48, lr=0.2, seed=0)
    acts = _channel_means(model, vis)
    rand = _channel_means(model, torch.rand(64, 3, 32, 32, generator=torch.Generator()
                                            .manual_seed(1)))
    gray = _channel_means(model, torch.full((1, 3, 32, 32), 0.5))[0]
    for i, c in enumerate(channels):
        # gain over a gray image: at least 3x the best of 64 uniform-noise images
        gain_vis, gain_rand = acts[i, c] - gray[c], rand[:, c].max() - gray[c]
        assert gain_vis > 3.0 * gain_rand, (c, float(gain_vis), float(gain_rand))
        # and the image drives its own channel more than the other images drive it
        others = [j for j in range(len(channels)) if j != i]
        assert acts[i, c] > acts[others, c].max()


@pytest.mark.slow
def test_negative_sign_minimizes_and_seed_is_deterministic(model):
    up = visualize_channels(model, "features", [5], [1.0], size=32, steps=32, seed=0)
    down = visualize_channels(model, "features", [5], [-1.0], size=32, steps=32, seed=0)
    assert _channel_means(model, up)[0, 5] > _channel_means(model, down)[0, 5]
    again = visualize_channels(model, "features", [5], [1.0], size=32, steps=32, seed=0)
    assert torch.equal(up, again)
    other = visualize_channels(model, "features", [5], [1.0], size=32, steps=32, seed=1)
    assert not torch.equal(up, other)


@pytest.mark.slow
def test_batched_render_optimizes_each_image_for_its_own_channel(model):
    # three channels in one forward pass per step (batch of 3), then a second batch of 1
    vis = visualize_channels(model, "features", [3, 5, 0, 3], size=32, steps=48, lr=0.2, seed=0,
                             batch_size=3)
    assert vis.shape == (4, 3, 32, 32)
    acts = _channel_means(model, vis)
    gray = _channel_means(model, torch.full((1, 3, 32, 32), 0.5))[0]
    rand = _channel_means(model, torch.rand(64, 3, 32, 32, generator=torch.Generator()
                                            .manual_seed(2))).max(0).values
    for i, c in enumerate([3, 5, 0, 3]):
        assert acts[i, c] - gray[c] > 2.0 * (rand[c] - gray[c]), (i, c)


def test_unknown_layer_is_a_clear_error(model):
    with pytest.raises(KeyError, match="nope"):
        visualize_channels(model, "nope", [0], size=16, steps=1)
