"""The annotation pipeline (annotate/: stages, run, engines) on tiny clips: rendered sprite MP4s,
bad inputs, a photographic fixture for faces and people, and the hub loaders' clean failures."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from annotate.common import NotAvailable, StageError
from annotate.pipeline import PipelineConfig
from annotate.run import DB_NAME, main as run_main, run
from annotate.store import AnnotationStore
from model.video import export_mp4
from train.sprites import caption_to_action, generate_clip

SIZE = 64


def _config(ocr: str = "none") -> PipelineConfig:
    cfg = PipelineConfig()
    cfg.quality.ocr = ocr
    cfg.scenes.min_seconds = 1.0
    return cfg


def _ious(gt: np.ndarray, pred: np.ndarray) -> list[float]:
    return [float((g & p).sum() / (g | p).sum()) for g, p in zip(gt, pred) if g.any()]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two sprite clips (MP4 + caption beside), and four bad inputs."""
    d = tmp_path_factory.mktemp("videos")
    clips = {}
    for i, seed in enumerate((3, 11)):
        clip = generate_clip(seed, height=SIZE, width=SIZE, duration=2.0, max_subjects=2)
        v = d / f"sprite{i}.mp4"
        export_mp4(clip.frames, v, clip.fps)
        v.with_suffix(".txt").write_text(clip.timeline.prompt)
        clips[v.name] = clip
    (d / "unreadable.mp4").write_bytes(os.urandom(2048))
    (d / "empty.mp4").write_bytes(b"")
    nosub = generate_clip(5, height=SIZE, width=SIZE, duration=2.0, max_subjects=1)
    export_mp4(nosub.frames, d / "nosubject.mp4", 16)
    (d / "nosubject.txt").write_text("a purple ring on a grey background")  # no purple in this clip
    export_mp4(nosub.frames, d / "noentity.mp4", 16)
    (d / "noentity.txt").write_text("something happens slowly")
    return d, clips


@pytest.fixture(scope="module")
def annotated(videos, tmp_path_factory):
    d, clips = videos
    out = tmp_path_factory.mktemp("dataset")
    report = run([d], out, workers=1, config=_config("rapidocr"), progress=False)
    return out, report, clips


def test_pipeline_annotates_sprite_mp4s_end_to_end(annotated):
    out, report, clips = annotated
    assert report.videos == 6 and report.processed == 6
    assert len(report.clips_stored) == 2 and sorted(report.exported) == sorted(report.clips_stored)
    with AnnotationStore(out / DB_NAME) as store:
        for cid in report.clips_stored:
            doc = store.get(cid)
            clip = clips[Path(doc.meta["pipeline"]["video"]).name]
            # every backend named honestly
            assert doc.sources["captions"] == "sidecar"
            assert doc.sources["masks"].startswith("grabcut-offline")
            assert doc.sources["detection"].startswith("sprite-colour")
            assert "spacy" in doc.sources["entities"] and "motion-track" in doc.sources["timeline"]
            assert "rapidocr" in doc.sources["quality"] and doc.meta["quality"]["text"]["crop"] is None
            assert doc.review["masks"].status == "pending" and doc.updated_by == "pipeline"
            gt_names = [s.name for s in clip.timeline.subjects]
            assert sorted(s.name for s in doc.timeline.subjects) == sorted(gt_names)
            masks = doc.masks_array()
            for k, s in enumerate(doc.timeline.subjects):
                g = gt_names.index(s.name)
                assert np.mean(_ious(clip.masks[g], masks[k])) > 0.7  # 6-pixel sprites here; the benchmark measures accuracy
                # the sub-actions' motions and boundaries (within one latent frame)
                want = [(a.start, a.end, act) for a, act in zip(clip.timeline.subjects[g].sorted_actions(), clip.actions[g])]
                got = [(a.start, a.end, caption_to_action(a.text)) for a in s.sorted_actions()]
                assert len(got) == len(want), (s.name, got, want)
                for (ws, we, wa), (gs, ge, ga) in zip(want, got):
                    assert ga == wa and abs(ws - gs) * 16 <= 4 and abs(we - ge) * 16 <= 4, (s.name, got, want)
                    assert round(gs * 16) % 4 == 0 and round(ge * 16) % 4 == 0  # on the latent grid


def test_dataset_written_loads_in_the_trainer(annotated):
    from train.dataset import ReactIDDataset

    out, report, _ = annotated
    ds = ReactIDDataset(out, deep_check=True)
    assert len(ds) == 2 and ds.skipped == []
    item = ds[0]
    S = item["num_subjects"]
    assert item["video"].shape == (3, 33, SIZE, SIZE) and item["masks"].shape == (S, 33, SIZE, SIZE)
    assert item["references"].shape[0] == S and item["masks"].any()
    rec = ds.records[0]
    assert rec["meta"]["source"] == "annotate.pipeline" and rec["difficulty"] is not None


def test_bad_inputs_are_recorded_per_clip_and_the_run_goes_on(annotated):
    out, report, _ = annotated
    by_video = {Path(e["video"]).name: e for e in report.errors}
    assert set(by_video) == {"unreadable.mp4", "empty.mp4", "nosubject.mp4", "noentity.mp4"}
    assert by_video["empty.mp4"]["stage"] == "read" and "is empty (0 bytes)" in by_video["empty.mp4"]["message"]
    assert by_video["unreadable.mp4"]["stage"] == "read" and "cannot be decoded as a video" in by_video["unreadable.mp4"]["message"]
    e = by_video["nosubject.mp4"]
    assert e["stage"] == "detection" and "no subject found" in e["message"] and "the purple ring" in e["message"] and e["clip_id"]
    e = by_video["noentity.mp4"]
    assert e["stage"] == "entities" and "names no entity" in e["message"] and "something happens slowly" in e["message"]
    lines = [json.loads(x) for x in (out / "pipeline" / "errors.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and all(x["error"] for x in lines)
    statuses = [json.loads(p.read_text()) for p in (out / "pipeline" / "videos").glob("*.json")]
    assert sorted(s["status"] for s in statuses) == ["done"] * 4 + ["failed"] * 2


def test_rerun_skips_finished_work_and_redoes_changed_videos(annotated, videos, tmp_path):
    _, _, _ = annotated
    d, _ = videos
    out = tmp_path / "ds"
    vids = sorted(d.glob("sprite*.mp4"))
    first = run(vids, out, workers=1, config=_config(), progress=False, difficulty=False)
    assert len(first.clips_stored) == 2
    with AnnotationStore(out / DB_NAME) as store:
        versions = {c: store.get(c).version for c in store.clip_ids()}
    again = run(vids, out, workers=1, config=_config(), progress=False, difficulty=False)
    assert again.processed == 0 and len(again.skipped_videos) == 2 and again.clips_stored == []
    assert sorted(again.exported) == sorted(first.exported)
    # a run stopped after storing a video's clip but before its status: that clip is skipped
    status = next((out / "pipeline" / "videos").glob("sprite0-*.json"))
    status.unlink()
    third = run(vids, out, workers=2, config=_config(), progress=False, difficulty=False)
    assert third.processed == 1 and len(third.clips_skipped) == 1 and third.clips_stored == []
    # a clip a person has reviewed is never redone by the pipeline
    with AnnotationStore(out / DB_NAME) as store:
        cid = sorted(versions)[0]
        doc = store.set_review(cid, "masks", "accepted", expected_version=versions[cid], annotator="alice")
    for p in (out / "pipeline" / "videos").glob("*.json"):
        p.unlink()
    fourth = run(vids, out, workers=1, config=_config(), progress=False, difficulty=False)
    assert fourth.processed == 2 and fourth.clips_stored == [] and len(fourth.clips_skipped) == 2
    with AnnotationStore(out / DB_NAME) as store:
        assert store.get(cid).version == doc.version and store.get(cid).review["masks"].annotator == "alice"
    # a video that changed on disk is done again
    os.utime(vids[1], ns=(vids[1].stat().st_atime_ns, vids[1].stat().st_mtime_ns + 10**9))
    fifth = run(vids, out, workers=1, config=_config(), progress=False, difficulty=False)
    assert fifth.processed == 1 and len(fifth.skipped_videos) == 1 and len(fifth.clips_stored) == 1 and fifth.clips_skipped == []


def test_cli_runs_and_reports(videos, tmp_path, capsys):
    d, _ = videos
    out = tmp_path / "cli"
    rc = run_main([str(d / "sprite1.mp4"), str(d / "empty.mp4"), "--out", str(out), "--ocr", "none", "--quiet", "--min-seconds", "1",
                   "--no-difficulty"])
    text = capsys.readouterr().out
    assert rc == 1 and "1 clip(s) stored" in text and "empty.mp4 is empty (0 bytes)" in text
    assert (out / "manifest.jsonl").read_text().count("\n") == 1


def test_a_video_of_two_scenes_becomes_two_clips_with_their_own_captions(tmp_path):
    a = generate_clip(1, height=SIZE, width=SIZE, duration=2.0, max_subjects=1)
    b = generate_clip(3, height=SIZE, width=SIZE, duration=2.0, max_subjects=1)
    v = tmp_path / "two scenes.mp4"
    export_mp4(np.concatenate([a.frames, b.frames]), v, 16)
    v.with_suffix(".json").write_text(json.dumps({"caption": "unused", "clips": {"0": a.timeline.prompt, "1": b.timeline.prompt}}))
    rep = run([v], tmp_path / "ds", config=_config(), progress=False, difficulty=False)
    assert rep.errors == [] and len(rep.clips_stored) == 2
    with AnnotationStore(tmp_path / "ds" / DB_NAME) as store:
        docs = sorted((store.get(c) for c in rep.clips_stored), key=lambda d: d.meta["pipeline"]["start_frame"])
    assert [d.meta["pipeline"]["start_frame"] for d in docs] == [0, 33] and all(d.num_frames == 33 for d in docs)
    assert [d.timeline.subjects[0].name for d in docs] == [a.timeline.subjects[0].name, b.timeline.subjects[0].name]
    assert docs[0].clip_id.startswith("two-scenes-") and docs[0].clip_id.endswith("-c000") and docs[1].clip_id.endswith("-c001")


# --------------------------------------------------------------------------------------------
# Stages one by one
# --------------------------------------------------------------------------------------------
def test_scene_cuts_find_the_join_and_drop_short_scenes():
    from annotate.scenes import SceneConfig, detect_scenes

    a = generate_clip(1, height=SIZE, width=SIZE, duration=2.0).frames  # 33 frames, dark grey background
    b = generate_clip(3, height=SIZE, width=SIZE, duration=2.0).frames  # beige
    c = generate_clip(4, height=SIZE, width=SIZE, duration=0.5).frames[:8]  # too short
    res = detect_scenes(np.concatenate([a, b, c]), 16, SceneConfig(min_seconds=1.0))
    assert 33 in res["cuts"] and 66 in res["cuts"]
    assert res["clips"] == [(0, 33), (33, 66)]
    assert res["dropped"] and res["dropped"][0][:2] == (66, 74) and "shorter than the minimum" in res["dropped"][0][2]
    assert res["backend"] == "pyscenedetect-content+hsv-hog-offline-similarity"
    res = detect_scenes(np.concatenate([a, b]), 16, SceneConfig(min_seconds=1.0, max_seconds=1.0))
    assert all((e - s - 1) % 4 == 0 and e - s <= 17 for s, e in res["clips"]) and len(res["clips"]) == 4


def test_text_regions_are_cropped_away():
    import cv2

    from annotate.quality import QualityConfig, assess, largest_free_rectangle

    blocked = np.zeros((10, 12), bool)
    blocked[7:, :] = True
    blocked[:, 10:] = True
    assert largest_free_rectangle(blocked) == (0, 0, 10, 7)
    clip = generate_clip(8, height=128, width=128, duration=1.0)
    frames = clip.frames.copy()
    for f in frames:
        cv2.putText(f, "SAMPLE", (4, 122), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    cropped, rec = assess(frames, QualityConfig(ocr="rapidocr"))
    x, y, w, h = rec["text"]["crop"]
    assert rec["text"]["boxes"] and "SAMPLE" in rec["text"]["boxes"][0]["text"] and y + h <= 104 and cropped.shape[1:3] == (h, w) and w % 2 == 0 and h % 2 == 0
    assert rec["backends"]["text"] == "rapidocr-ppocr(det+rec)" and rec["motion"]["separation"] == "residual to median flow"
    with pytest.raises(StageError, match="text covers the frame"):
        assess(frames, QualityConfig(ocr="rapidocr", min_keep_fraction=0.95))


def test_motion_separates_camera_from_subject():
    from annotate.quality import motion_scores

    rng = np.random.default_rng(0)
    bg = (rng.random((80, 120, 3)) * 255).astype(np.uint8)
    bg = np.asarray(__import__("cv2").GaussianBlur(bg, (7, 7), 2))
    pan = np.stack([bg[:, i:i + 64] for i in range(0, 16, 2)])  # camera pans, nothing moves by itself
    m = motion_scores(pan)
    assert m["background_px"] > 1.5 and m["foreground_share"] < 0.2
    clip = generate_clip(0, height=SIZE, width=SIZE)  # sprites move over a still background
    m = motion_scores(clip.frames)
    assert m["background_px"] < 0.1 and m["foreground_px"] > 0.5 and 0 < m["foreground_share"] < 0.3


def test_entities_from_the_taxonomy_and_spacy(tmp_path):
    from annotate.entities import Taxonomy, extract_entities

    tax = Taxonomy.load()
    ents, backend, _ = extract_entities("a red striped circle, a blue star and a green checkered triangle on a light grey background", tax)
    assert [(e.label, e.kind, e.colour) for e in ents] == [("the red striped circle", "object", "red"), ("the blue star", "object", "blue"),
                                                           ("the green checkered triangle", "object", "green")]
    assert backend.startswith("taxonomy+spacy")
    ents, _, _ = extract_entities("a magenta checkered cross on a slate background", tax)  # spaCy puts no chunk round "cross"
    assert [(e.label, e.colour) for e in ents] == [("the magenta checkered cross", "magenta")]
    ents, _, _ = extract_entities("A woman in a white spacesuit is smiling in front of a flag.", tax)
    assert ents[0].label == "the woman in a white spacesuit" and ents[0].kind == "human" and ents[0].living
    with pytest.raises(StageError, match="plural subject"):
        extract_entities("two men walk their dogs", tax)
    with pytest.raises(StageError, match="names no entity"):
        extract_entities("a zorblax is dancing", tax)
    # every sprite scene prompt gives exactly its subjects' names (the small parser tags "square" and
    # "cross" as adjectives or verbs in some of them)
    for seed in range(200):
        clip = generate_clip(seed, height=16, width=16, duration=0.5)
        assert sorted(e.label for e in extract_entities(clip.timeline.prompt, tax)[0]) == sorted(s.name for s in clip.timeline.subjects)
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"living": {"animal": ["zorblax"]}}))
    ents, _, _ = extract_entities("a zorblax is dancing", Taxonomy.load(extra))
    assert ents[0].kind == "animal"


def test_motion_track_labels_exact_sprite_clips():
    from annotate.common import ClipState
    from annotate.entities import Taxonomy
    from annotate.timeline_labels import MotionConfig, MotionTrackGenerator, segment_track, track_signals

    gen = MotionTrackGenerator(Taxonomy.load().actions)
    for seed in (0, 1, 2):
        clip = generate_clip(seed, height=SIZE, width=SIZE)
        for s, subj in enumerate(clip.timeline.subjects):
            sig = track_signals(clip.frames, clip.masks[s])
            cands = gen(ClipState("c", clip.frames, 16), None, subj.id, sig)
            got = [(c.start_frame, c.end_frame, caption_to_action(c.text)) for c in cands]
            want = [(round(a.start * 16), round(a.end * 16), act) for a, act in zip(subj.sorted_actions(), clip.actions[s])]
            assert len(got) == len(want), (seed, subj.name, got, want)
            assert all(g[2] == w[2] and abs(g[0] - w[0]) <= 4 and abs(g[1] - w[1]) <= 4 for g, w in zip(got, want)), (got, want)
    assert segment_track(track_signals(clip.frames[:3], clip.masks[0][:3]), 3, SIZE, SIZE, MotionConfig()) == []


def test_faces_nms_at_25_percent_and_five_uniform_frames():
    from annotate.faces import nms, pick_uniform

    faces = [{"frame": 0, "box": (10, 10, 20, 20), "score": 0.99}, {"frame": 0, "box": (14, 10, 20, 20), "score": 0.95},  # IoU 0.67: duplicate
             {"frame": 0, "box": (26, 10, 20, 20), "score": 0.97}]  # IoU 0.11 with the first: kept
    assert [f["box"] for f in nms(faces, 0.25)] == [(10, 10, 20, 20), (26, 10, 20, 20)]
    many = [{"frame": f, "box": (0, 0, 10, 10), "score": 0.95 + 0.001 * (f % 7)} for f in range(0, 40, 2)]
    many.append({"frame": 41, "box": (0, 0, 10, 10), "score": 0.5})  # not confident
    picked = pick_uniform(many, 5, 0.9)
    assert [f["frame"] for f in picked] == [0, 10, 20, 28, 38]


def test_photographic_clip_finds_a_person_and_her_face(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    if importlib.util.find_spec("facenet_pytorch") is None:
        pytest.skip("facenet-pytorch is not installed")
    pytest.importorskip("ai_edge_litert")
    import cv2

    from annotate.run import run as run_pipeline

    photo = skimage_data.astronaut()  # 512x512, Eileen Collins (public domain, shipped with scikit-image)
    frames = []
    for k in range(21):  # a slow pan and zoom over the photograph
        s = 400 - 4 * k
        x0, y0 = 40 + 2 * k, 10 + k
        frames.append(cv2.resize(photo[y0:y0 + s, x0:x0 + s], (160, 160), interpolation=cv2.INTER_AREA))
    v = tmp_path / "astronaut.mp4"
    export_mp4(np.stack(frames), v, 8)
    v.with_suffix(".txt").write_text("A woman in a white spacesuit is smiling in front of a flag.")
    cfg = _config()
    cfg.scenes.min_seconds = 1.0
    rep = run_pipeline([v], tmp_path / "ds", config=cfg, progress=False, difficulty=False)
    assert len(rep.clips_stored) == 1, rep
    with AnnotationStore(tmp_path / "ds" / DB_NAME) as store:
        doc = store.get(rep.clips_stored[0])
    s = doc.timeline.subjects[0]
    assert s.kind == "human" and s.name == "the woman in a white spacesuit"
    assert doc.sources["detection"].startswith("mediapipe-selfie-segmentation")
    assert "mtcnn" in doc.sources["faces"] and "nms0.25" in doc.sources["faces"]
    assert any("the flag" in e and "no detector" in e for e in doc.errors)  # an object the offline detectors cannot take
    person = doc.mask_array("s1")
    assert person.reshape(len(person), -1).mean(1).min() > 0.2  # she fills much of every frame
    assert 3 <= len(doc.faces) <= 5 and all(f.subject_id == "s1" and f.score > 0.9 and f.mask is not None for f in doc.faces)
    assert all(f.frame % 4 == 0 for f in doc.faces)  # sampled at 2 fps from an 8 fps clip
    for f in doc.faces:
        x, y, w, h = f.box
        assert person[f.frame, int(y + h / 2), int(x + w / 2)]  # the face is on the person


# --------------------------------------------------------------------------------------------
# Hub loaders: real, and clean failures here
# --------------------------------------------------------------------------------------------
def test_hub_loaders_fail_cleanly_without_weights(tmp_path):
    from annotate import hub

    for cls in (hub.DinoV2Features, hub.QwenVL, hub.Florence2Detector, hub.SiglipScorer, hub.Sam2Masker):
        for path in (None, tmp_path / "nowhere", tmp_path):
            with pytest.raises(NotAvailable, match="not available"):
                cls(path)
    with pytest.raises(NotAvailable, match="raft is not available"):
        hub.RaftFlow(tmp_path / "raft.pth")
    cfg = _config()
    cfg.detector_model = str(tmp_path / "florence")
    from annotate.pipeline import Pipeline

    with pytest.raises(NotAvailable, match="florence-2 is not available"):
        Pipeline(cfg)
    assert run_main(["x.mp4", "--out", str(tmp_path / "o"), "--masker", "sam2", "--quiet"]) == 2


def test_dinov2_loader_on_a_tiny_random_model_drives_scene_cuts(tmp_path):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    from annotate.hub import DinoV2Features
    from annotate.scenes import SceneConfig, detect_scenes

    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)
    Dinov2Model(cfg).save_pretrained(tmp_path)
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_center_crop=True).save_pretrained(tmp_path)
    feat = DinoV2Features(tmp_path, device="cpu")
    frames = generate_clip(1, height=SIZE, width=SIZE, duration=1.0).frames
    z = feat(frames)
    assert z.shape == (len(frames), 32) and np.isfinite(z).all()
    res = detect_scenes(frames, 16, SceneConfig(min_seconds=0.5, similarity_threshold=-1.0), feature=feat)
    assert res["backend"].endswith("dinov2(" + tmp_path.name + ")-similarity") and res["clips"] == [(0, 17)]


@pytest.mark.slow
def test_ray_engine_runs_the_same_stages(videos, tmp_path):
    pytest.importorskip("ray")
    d, _ = videos
    rep = run([d / "sprite0.mp4", d / "empty.mp4"], tmp_path / "ray", workers=1, engine="ray", config=_config(), progress=False, difficulty=False)
    assert rep.engine == "ray" and len(rep.clips_stored) == 1 and len(rep.errors) == 1 and "is empty" in rep.errors[0]["message"]
