"""Small components built in code (no downloads): tests use them, and the sprite-world default
model is built from the same recipes with larger sizes.

Same classes as the real Wan2.1 stack (AutoencoderKLWan, UMT5EncoderModel, ReactIDTransformer,
FlowMatchEulerDiscreteScheduler); only the sizes and the tokenizer differ (ByT5's byte-level tokenizer
needs no vocabulary file).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler
from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

from .transformer import ReactIDTransformer


def tiny_vae(z_dim: int = 4, base_dim: int = 8) -> AutoencoderKLWan:
    return AutoencoderKLWan(
        base_dim=base_dim, z_dim=z_dim, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim,
    ).eval()


def tiny_text_encoder(d_model: int = 32, layers: int = 2, heads: int = 4) -> UMT5EncoderModel:
    cfg = UMT5Config(vocab_size=384, d_model=d_model, d_kv=d_model // heads, d_ff=2 * d_model, num_layers=layers, num_heads=heads, relative_attention_num_buckets=8)
    return UMT5EncoderModel(cfg).eval()


def tiny_tokenizer() -> ByT5Tokenizer:
    return ByT5Tokenizer()


def tiny_transformer_config(in_channels: int = 4, text_dim: int = 32, heads: int = 2, head_dim: int = 16, layers: int = 6, **reactid) -> dict:
    cfg = dict(
        patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim, in_channels=in_channels,
        out_channels=in_channels, text_dim=text_dim, freq_dim=32, ffn_dim=2 * heads * head_dim, num_layers=layers,
        rope_max_seq_len=256, num_reference_blocks=2, mask_blocks=min(5, layers), mask_hidden_dim=16, max_subjects=6,
    )
    cfg.update(reactid)
    return cfg


def tiny_transformer(**kw) -> ReactIDTransformer:
    return ReactIDTransformer(**tiny_transformer_config(**kw))


def flow_scheduler(shift: float = 3.0) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)


def tiny_pipeline(seed: int = 0, **transformer_kw):
    """A complete ReactIDPipeline of random tiny components (tests, smoke runs)."""
    from .pipeline import ReactIDPipeline

    torch.manual_seed(seed)
    return ReactIDPipeline(
        vae=tiny_vae(), text_encoder=tiny_text_encoder(), tokenizer=tiny_tokenizer(),
        transformer=tiny_transformer(**transformer_kw).eval(), scheduler=flow_scheduler(), max_sequence_length=32,
        default_height=64, default_width=64,
    )
