"""The dataset format: lossless round trip, corrupt samples skipped by id, CLI, curriculum loading."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model.dataset_format import MANIFEST, collate, read_video_frames
from train.curriculum import Curriculum, CurriculumConfig
from train.dataset import ReactIDDataset, main, sample_seed, write_sprite_dataset
from train.sprites import WorldConfig, generate_clip

ROOT = Path(__file__).resolve().parents[1]
WORLD = dict(height=32, width=32, duration=1.0)


@pytest.fixture(scope="module")
def small_ds(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    write_sprite_dataset(out, 4, seed=5, progress=False, preview=True, **WORLD)
    return out


def _records(root):
    return [json.loads(line) for line in (root / MANIFEST).read_text().splitlines() if line.strip()]


def test_files_and_manifest_fields(small_ds):
    info = json.loads((small_ds / "info.json").read_text())
    assert info["format"] == "reactid-dataset" and info["n"] == 4 and info["world"]["height"] == 32
    recs = _records(small_ds)
    assert [r["id"] for r in recs] == [f"sprite-{i:06d}" for i in range(4)]
    for r in recs:
        assert {"id", "frames", "video", "masks", "timeline", "references", "fps", "num_frames", "height", "width", "difficulty", "meta"} <= set(r)
        with np.load(small_ds / r["frames"]) as z:
            assert z["frames"].dtype == np.uint8 and z["frames"].shape == (r["num_frames"], 32, 32, 3)
        with np.load(small_ds / r["masks"]) as z:
            assert z["masks"].dtype == bool and z["masks"].shape[1:] == (r["num_frames"], 32, 32)
        assert set(r["references"]) == {s["id"] for s in r["timeline"]["subjects"]}
        for s in r["timeline"]["subjects"]:
            assert s["references"] == r["references"][s["id"]]["intra"]
        d = r["difficulty"]
        assert d["extractor"] == "ColorHOG" and d["overall_inter"] > d["overall_intra"]


def test_round_trip_is_lossless(small_ds):
    ds = ReactIDDataset(small_ds)
    assert isinstance(ds, torch.utils.data.Dataset)
    assert len(ds) == 4 and ds.skipped == []
    world = WorldConfig.from_kwargs(**WORLD)
    for i in range(4):
        clip = generate_clip(sample_seed(5, i), world)
        a = ds.load_arrays(i)
        assert np.array_equal(a["frames"], clip.frames)
        assert np.array_equal(a["masks"], clip.masks)
        assert np.array_equal(a["refs"], np.stack([r[0] for r in clip.references_intra]))
        assert np.array_equal(ds.load_arrays(i, "inter")["refs"], np.stack([r[0] for r in clip.references_inter]))
        assert [(x.start, x.end, x.text) for s in ds.timelines[i].subjects for x in s.actions] == \
               [(x.start, x.end, x.text) for s in clip.timeline.subjects for x in s.actions]
        item = ds[(i, True)]
        F = clip.frames.shape[0]
        assert item["video"].shape == (3, F, 32, 32) and item["video"].dtype == torch.float32
        assert float(item["video"].min()) >= -1 and float(item["video"].max()) <= 1
        assert torch.equal(item["masks"], torch.from_numpy(clip.masks))
        assert item["references"].shape == (clip.num_subjects, 3, 32, 32)
        assert item["reference_kind"] == "inter" and item["d_sam"] == 1.0
        assert ds[i]["reference_kind"] == "intra"
        c = ds.clip(i)
        assert c.actions == clip.actions and [x.to_dict() for x in c.identities] == [x.to_dict() for x in clip.identities]


def test_writing_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_sprite_dataset(a, 2, seed=9, progress=False, **WORLD)
    write_sprite_dataset(b, 2, seed=9, progress=False, **WORLD)
    assert (a / MANIFEST).read_text() == (b / MANIFEST).read_text()
    for r in _records(a):
        with np.load(a / r["frames"]) as x, np.load(b / r["frames"]) as y:
            assert np.array_equal(x["frames"], y["frames"])
    with pytest.raises(FileExistsError, match="manifest"):
        write_sprite_dataset(a, 2, seed=9, progress=False, **WORLD)


def test_preview_mp4_is_readable_and_used_without_frames(small_ds, tmp_path):
    rec = _records(small_ds)[0]
    video = read_video_frames(small_ds / rec["video"])
    ds = ReactIDDataset(small_ds)
    exact = ds.load_arrays(0)["frames"]
    assert video.shape == exact.shape
    assert np.abs(video.astype(int) - exact.astype(int)).mean() < 12  # lossy but close
    # a record with only a video (as real footage may come) still loads
    rec2 = dict(rec, frames=None, video=str((small_ds / rec["video"]).resolve()), masks=str((small_ds / rec["masks"]).resolve()))
    rec2["references"] = {k: {kind: [str((small_ds / p).resolve()) for p in v[kind]] for kind in v} for k, v in rec["references"].items()}
    (tmp_path / MANIFEST).write_text(json.dumps(rec2) + "\n")
    only_video = ReactIDDataset(tmp_path)
    assert only_video.load_arrays(0)["frames"].shape == exact.shape


def test_corrupt_samples_are_skipped_by_id(tmp_path, caplog):
    root = tmp_path / "ds"
    write_sprite_dataset(root, 6, seed=1, progress=False, **WORLD)
    recs = _records(root)
    (root / recs[1]["masks"]).unlink()  # missing file
    (root / recs[2]["frames"]).write_bytes(b"not a zip at all")  # bad npz: found only on load
    recs[3]["timeline"]["subjects"][0]["actions"][0]["end"] = 99.0  # invalid timeline
    lines = [json.dumps(r) for r in recs] + ["{this is not json"]
    (root / MANIFEST).write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="reactid.dataset"):
        ds = ReactIDDataset(root)
    assert sorted(ds.skipped_ids) == sorted(["sprite-000001", "sprite-000003", "line 7"])
    assert any("sprite-000001" in m and "not found" in m for m in caplog.messages)
    assert any("sprite-000003" in m and "timeline" in m for m in caplog.messages)
    assert len(ds) == 4
    bad_index = ds.ids().index("sprite-000002")
    with caplog.at_level(logging.WARNING, logger="reactid.dataset"):
        item = ds[bad_index]  # unreadable frames: reported, the next good sample comes instead
    assert item["id"] != "sprite-000002"
    assert "sprite-000002" in ds.skipped_ids
    assert any("sprite-000002" in m and "npz" in m for m in caplog.messages)
    assert len(ds.clips()) == 3
    deep = ReactIDDataset(root, deep_check=True)
    assert len(deep) == 3 and "sprite-000002" in deep.skipped_ids


def test_dataloader_with_curriculum_sampler(small_ds):
    ds = ReactIDDataset(small_ds)
    cur = Curriculum.from_records(ds.records, CurriculumConfig(total_steps=6, batch_size=2, inter_ratios=(0, 0, 1, 1)))
    loader = torch.utils.data.DataLoader(ds, batch_sampler=cur.batch_sampler(start_step=4), collate_fn=collate)
    batches = list(loader)
    assert len(batches) == 2
    for b, step in zip(batches, (4, 5)):
        expect = cur.sample(step)
        assert b["index"] == [i for i, _ in expect]
        assert b["reference_kind"] == ["inter" if u else "intra" for _, u in expect]
        assert isinstance(b["timeline"], list) and len(b["timeline"]) == 2


def test_cli_make_and_check(tmp_path):
    out = tmp_path / "cli"
    assert main(["make", "--out", str(out), "--n", "2", "--seed", "3", "--height", "24", "--width", "24", "--duration", "1.0"]) == 0
    recs = _records(out)
    assert len(recs) == 2 and recs[0]["height"] == 24
    assert main(["check", str(out)]) == 0
    (out / recs[0]["masks"]).write_bytes(b"junk")
    assert main(["check", str(out)]) == 1


def test_cli_runs_as_a_module(tmp_path):
    out = tmp_path / "mod"
    r = subprocess.run([sys.executable, "-m", "train.dataset", "make", "--out", str(out), "--n", "1", "--seed", "0",
                        "--height", "24", "--width", "24", "--duration", "1.0", "--no-difficulty"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(_records(out)) == 1 and _records(out)[0]["difficulty"] is None
