"""The small text encoder's concept pretraining, its stage in `python -m train`, and the timeline's own
key/value projections (`timeline_kv='separate'`)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from model.tiny import tiny_text_encoder
from train.config import ConfigError, load_config
from train.loop import build_transformer, warm_start
from train.sprites import ACTION_CAPTIONS, Identity, _scene_prompt, text_concepts
from train.text_encoder import nearest_neighbour_accuracy, pretrain_text_encoder
from transformers import ByT5Tokenizer

from test_train import TINY, run_train

CAPTIONS = [c for cs in ACTION_CAPTIONS.values() for c in cs]
ACTIONS = [a for a, cs in ACTION_CAPTIONS.items() for _ in cs]


def test_text_concepts_read_the_world_vocabulary():
    assert text_concepts("slides to the left") == ["action:move_left"]
    assert text_concepts("jumps up and lands") == ["action:jump"]  # the specific verb wins over "up"
    assert sorted(text_concepts("the green dotted star")) == ["colour:green", "shape:star", "texture:dots"]
    prompt = _scene_prompt([Identity("circle", "red", "stripes"), Identity("square", "blue")], "light grey")
    assert sorted(text_concepts(prompt)) == ["background:light grey", "colour:blue", "colour:red", "shape:circle", "shape:square", "texture:stripes"]
    assert text_concepts("a cat sleeps") == []


def test_pretraining_separates_the_captions_by_action():
    torch.manual_seed(0)
    encoder, tok = tiny_text_encoder(32, 2, 4), ByT5Tokenizer()
    before = nearest_neighbour_accuracy(encoder, tok, CAPTIONS, ACTIONS)
    names = [Identity(s, c, t).name for s in ("circle", "square", "star") for c in ("red", "blue", "green") for t in ("solid", "dots")]
    summary = pretrain_text_encoder(encoder, tok, CAPTIONS + names + [""], text_concepts, steps=800, lr=1e-2, batch_size=32, max_length=32, seed=0)
    after = nearest_neighbour_accuracy(encoder, tok, CAPTIONS, ACTIONS)
    assert summary["texts"] == len(CAPTIONS) + len(names)  # "" names no concept and stays out of the loss
    assert before < 0.7 and after >= 0.95, (before, after)
    with torch.no_grad():
        pooled = {c: encoder(**tok([c], return_tensors="pt")).last_hidden_state.mean(1) for c in ("moves left", "travels left", "moves right")}
    same = torch.cosine_similarity(pooled["moves left"], pooled["travels left"]).item()
    other = torch.cosine_similarity(pooled["moves left"], pooled["moves right"]).item()
    assert same > other + 0.2, (same, other)


def test_pretraining_refuses_a_corpus_without_concepts():
    with pytest.raises(ValueError, match="no text names a known concept"):
        pretrain_text_encoder(tiny_text_encoder(16, 1, 2), ByT5Tokenizer(), ["a cat", "a dog"], text_concepts, steps=1)


@pytest.mark.parametrize(
    "override, key",
    [
        ({"text": {"pretrain_steps": -1}}, "text.pretrain_steps"),
        ({"text": {"pretrain_steps": 5, "pretrain_lr": 0}}, "text.pretrain_lr"),
        ({"text": {"checkpoint": "/nonexistent/encoder"}}, "text.checkpoint: directory not found"),
    ],
)
def test_bad_text_options_fail_naming_the_key(override, key):
    from train.config import _merge

    with pytest.raises(ConfigError) as exc:
        load_config(_merge(TINY, override))
    assert str(exc.value).startswith(key.split(":")[0]) and key in str(exc.value)


def test_pretraining_needs_labelled_sprite_texts(tmp_path):
    with pytest.raises(ConfigError, match="text.pretrain_steps: concept pretraining needs the sprite world"):
        load_config({**TINY, "data": {"source": "dir", "path": str(tmp_path)}, "text": {**TINY["text"], "pretrain_steps": 5}})


def test_cli_pretrains_once_and_exports_that_encoder(tmp_path):
    cfg = {**TINY, "text": {**TINY["text"], "pretrain_steps": 20, "pretrain_batch_size": 8}, "optim": {**TINY["optim"], "steps": 2}}
    out = tmp_path / "run"
    res = run_train(cfg, out, "--export", str(tmp_path / "pipe"))
    assert res.returncode == 0, res.stderr[-2000:]
    enc_dir = out / "text_encoder"
    summary = json.loads((enc_dir / "pretrain.json").read_text())
    assert summary["steps"] == 20 and summary["concepts"] > 9
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert sum(e.get("event") == "text_pretrain_done" for e in events) == 1
    # the exported pipeline carries the pretrained encoder, not a fresh random one
    trained = load_file(str(enc_dir / "model.safetensors"))
    shipped = load_file(str(tmp_path / "pipe" / "text_encoder" / "model.safetensors"))
    assert trained.keys() == shipped.keys() and all(torch.equal(trained[k], shipped[k]) for k in trained)
    # a resumed run reuses it instead of pretraining again
    stamp = (enc_dir / "model.safetensors").stat().st_mtime_ns
    res = run_train({**cfg, "optim": {**cfg["optim"], "steps": 3}}, out, "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (enc_dir / "model.safetensors").stat().st_mtime_ns == stamp
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert sum(e.get("event") == "text_pretrain_done" for e in events) == 1


def _model(tmp_path, **reactid):
    return build_transformer(load_config({**TINY, "output_dir": str(tmp_path / "run"), "model": {**TINY["model"], "reactid": {"mask_blocks": 2, **reactid}}}),
                             in_channels=4, text_dim=16)


def test_separate_timeline_projections_start_as_the_prompt_ones(tmp_path):
    m = _model(tmp_path, timeline_kv="separate")
    for b in m.blocks:
        assert torch.equal(b.timeline_to_k.weight, b.attn2.to_k.weight) and torch.equal(b.timeline_to_v.bias, b.attn2.to_v.bias)
        assert b.timeline_to_k.weight.data_ptr() != b.attn2.to_k.weight.data_ptr()  # own parameters, free to specialise
    assert not hasattr(_model(tmp_path).blocks[0], "timeline_to_k")
    with pytest.raises(ValueError, match="timeline_kv must be 'shared' or 'separate'"):
        _model(tmp_path, timeline_kv="both")


def test_warm_start_of_separate_projections_copies_the_loaded_prompt_ones(tmp_path):
    src = _model(tmp_path)  # shared projections
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p))
    src.save_pretrained(tmp_path / "pipe" / "transformer")
    dst = _model(tmp_path, timeline_kv="separate")
    report = warm_start(dst, tmp_path / "pipe")
    assert any("timeline_to_k" in k for k in report["kept_own_init"])
    for a, b in zip(src.blocks, dst.blocks):
        assert torch.equal(b.timeline_to_k.weight, a.attn2.to_k.weight) and torch.equal(b.timeline_norm_k.weight, a.attn2.norm_k.weight)
