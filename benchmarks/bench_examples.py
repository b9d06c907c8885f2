"""The studio's three examples on the embedded default model: the sprite benchmark's scores per example and a frame
strip (6 frames per example, one row each), as a creator would see them.

    python benchmarks/bench_examples.py   # prints one line per example, writes docs/img/default_examples.png
    python benchmarks/bench_examples.py runs/ladder_l2e/export /tmp/l2e_examples.png   # another exported model
    LAYOUT=none python benchmarks/bench_examples.py assets/default_model /tmp/free.png   # start layout: none, columns

The start layout is the studio's "Automatic": the model's default_layout (reactid_pipeline.json) unless LAYOUT says.
"""
import numpy as np, os, sys
sys.path.insert(0, ".")
from PIL import Image
from model.default import load_default_pipeline
from model.timeline import Timeline
from studio.examples import list_scenes, load_scene
from train.sprite_eval import evaluate_clip
if len(sys.argv) > 1:
    from model.pipeline import ReactIDPipeline
    pipe = ReactIDPipeline.from_pretrained(sys.argv[1])
else:
    pipe = load_default_pipeline()
out_png = sys.argv[2] if len(sys.argv) > 2 else "docs/img/default_examples.png"
layout = os.environ.get("LAYOUT") or pipe.config.default_layout or "none"
print(f"start layout: {layout}")
rows = []
for title, slug in list_scenes():
    doc = load_scene(slug); tl = Timeline.from_dict(doc)
    refs = {s.id: [np.asarray(Image.open(p).convert("RGB")) for p in s.references] for s in tl.subjects}
    out = pipe(tl, refs, num_inference_steps=20, guidance_scale=3.0, seed=0, progress=False, layout=None if layout == "none" else layout)
    sc = evaluate_clip(out.frames, tl, [refs[s.id][0] for s in tl.subjects])
    print(f"{title}: identity {sc.identity_fidelity:.2f}, action {sc.action_accuracy:.2f} ({sc.n_actions}), binding {sc.binding_accuracy}, "
          + "; ".join(f"{a['subject']}:{a['commanded']}->{a['observed']}" for a in sc.actions))
    idx = np.linspace(0, len(out.frames) - 1, 6).round().astype(int)
    rows.append(np.concatenate([np.kron(out.frames[i], np.ones((3, 3, 1), dtype=np.uint8)) for i in idx], 1))
Image.fromarray(np.concatenate(rows, 0)).save(out_png)
