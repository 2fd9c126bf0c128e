"""Stand-in AudioBox Aesthetics checkpoints: the real class and file format, random weights.

Real weights cannot be downloaded on the development machines. These files prove the loading and
scoring plumbing only; the scores they give mean nothing.
"""
from __future__ import annotations

from pathlib import Path

# A 2-layer, 64-dim WavLM (about 0.6 MB) with WavLM Base's structure: same conv strides (320
# samples per frame), relative position buckets, gated relative position bias.
SMALL_WAVLM = {
    "encoder_layers": 2,
    "encoder_embed_dim": 64,
    "encoder_ffn_embed_dim": 128,
    "encoder_attention_heads": 4,
    "conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2",
    "conv_pos": 16,
    "conv_pos_groups": 4,
}
# Shaped like the real file's transform (the real means and deviations are not published here).
TARGET_TRANSFORM = {"CE": {"mean": 5.6, "std": 1.4}, "CU": {"mean": 6.1, "std": 1.6},
                    "PC": {"mean": 4.2, "std": 1.7}, "PQ": {"mean": 6.9, "std": 1.3}}


def wavlm_cfg(size: str) -> dict:
    from audiobox_aesthetics.model.aes import DEFAULT_AUDIO_CFG

    cfg = dict(DEFAULT_AUDIO_CFG.__dict__)
    if size == "small":
        cfg.update(SMALL_WAVLM)
    elif size != "real":
        raise ValueError(size)
    return cfg


def build_model(size: str = "small", seed: int = 0):
    """An ``AesMultiOutput`` with random weights: ``size`` "small" or "real" (12 x 768)."""
    import torch
    from audiobox_aesthetics.model.aes import AesMultiOutput

    from backends.extractors.audiobox.model import _audio_config

    cfg = wavlm_cfg(size)
    torch.manual_seed(seed)
    with _audio_config(cfg):
        model = AesMultiOutput(proj_num_layer=1, proj_ln=False, proj_act_fn="gelu", proj_dropout=0.0,
                               nth_layer=cfg["encoder_layers"] + 1, use_weighted_layer_sum=True,
                               precision="32", normalize_embed=True, output_dim=1,
                               target_transform=TARGET_TRANSFORM)
    # Random heads around zero give every window nearly the same score; spread the layer weights
    # and head biases so scores vary with the audio and bugs in weighting are visible.
    with torch.no_grad():
        for axis, weights in model.layer_weights.items():
            weights.normal_(0.0, 1.0)
        for head in model.proj_layer.values():
            head[-1].weight.mul_(20.0)
    return model


def write_checkpoint(path: str | Path, size: str = "small", seed: int = 0) -> Path:
    """Write ``checkpoint.pt`` in the real format: {state_dict (model.*), model_cfg, target_transform}."""
    import torch

    model = build_model(size, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model_cfg = {"proj_num_layer": 1, "proj_ln": False, "proj_act_fn": "gelu", "proj_dropout": 0.0,
                 "nth_layer": model.nth_layer, "use_weighted_layer_sum": True, "precision": "bf16",
                 "normalize_embed": True, "output_dim": 1}
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "model_cfg": model_cfg, "target_transform": TARGET_TRANSFORM}, path)
    return path
