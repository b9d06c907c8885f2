"""train.fit_readout and train.held_out.x0_channel_share: a grown latent's x0 channels, fitted in closed form on the
features feeding the last layer, and scored against the error of guessing their mean."""

import pytest
import torch

from model.losses import add_flow_noise
from model.tiny import tiny_pipeline
from train.fit_readout import readout_normal_equations, set_readout, solve_readout
from train.held_out import clip_conditioning, predict_own_binding, x0_channel_share
from train.sprites import WorldConfig, generate_clip


def test_solve_readout_recovers_a_planted_linear_map_and_leaves_the_bias_unpenalised():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=g, dtype=torch.float64)
    w, b = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.tensor([5.0, -2.0, 0.5], dtype=torch.float64)
    y = x @ w + b
    xb = torch.cat([x, torch.ones(500, 1, dtype=torch.float64)], 1)
    sol = solve_readout(xb.T @ xb, xb.T @ y, ridge=1e-9)
    assert torch.allclose(sol[:-1], w, atol=1e-6) and torch.allclose(sol[-1], b, atol=1e-6)
    heavy = solve_readout(xb.T @ xb, xb.T @ y, ridge=1e6)  # the weights shrink to 0, the bias keeps the mean
    assert float(heavy[:-1].abs().max()) < 1e-3 and torch.allclose(heavy[-1], y.mean(0), atol=0.05)


@pytest.fixture(scope="module")
def grown():
    pipe = tiny_pipeline(seed=0, patch_size=(1, 1, 1), x0_channels_from=2)
    world = WorldConfig.from_kwargs(duration=1.0, fps=8, min_subjects=1, max_subjects=2, max_actions=1)
    return pipe, [generate_clip(1000 + i, world) for i in range(3)]


def test_fitted_rows_are_what_the_model_then_guesses_token_by_token(grown):
    pipe, clips = grown
    with pytest.raises(ValueError, match="x0_channels_from"):
        x0_channel_share(tiny_pipeline(seed=0), clips)
    before = x0_channel_share(pipe, clips, sigmas=(0.5,))
    xtx, xty, n = readout_normal_equations(pipe, clips, sigmas_per_clip=2)
    x0, prompt, ref, tl = clip_conditioning(pipe, clips[0])
    assert n == 2 * len(clips) * x0[0, 0].numel() and xty.shape == (pipe.transformer.proj_out.in_features + 1, 2)
    sol = solve_readout(xtx, xty, ridge=1e-3)
    set_readout(pipe.transformer, sol)
    feats = []
    hook = pipe.transformer.proj_out.register_forward_hook(lambda m, i, o: feats.append(i[0]))
    try:
        sigma = 0.5
        x_t = add_flow_noise(x0, torch.randn(x0.shape, generator=torch.Generator().manual_seed(3)), torch.tensor([sigma]))
        with torch.no_grad():
            v = predict_own_binding(pipe, x_t, torch.tensor([sigma * 1000]), prompt, ref, tl)
    finally:
        hook.remove()
    x0_hat = x_t[:, 2:] - sigma * v[:, 2:]
    want = (feats[-1][0].double() @ sol[:-1] + sol[-1]).T.reshape(x0_hat.shape[1:])  # tokens in (frame, row, column) order
    assert torch.allclose(x0_hat[0].double(), want, atol=1e-4)
    after = x0_channel_share(pipe, clips, sigmas=(0.5,))
    assert after["share@0.5"] < before["share@0.5"]  # fitted on these clips: closer than before
