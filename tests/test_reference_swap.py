"""benchmarks/reference_swap.py: the circle stand-in for a reference, and rows scored on a real generation."""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from reference_swap import circle_like, summary, swap_rows  # noqa: E402

from train.sprites import Identity, render_identity  # noqa: E402


def test_the_stand_in_is_a_disc_of_the_sprites_colour_and_circumradius_on_its_background():
    star = render_identity(Identity("star", "red"), size=32, scale=0.35, background="light grey")
    disc = circle_like(star)
    bg = star[0, 0]
    star_fg, disc_fg = (np.abs(a.astype(int) - bg.astype(int)).sum(-1) > 40 for a in (star, disc))
    assert (disc[~disc_fg] == bg).all() and (disc[disc_fg] == star[star_fg][0]).all()  # background and colour kept
    assert disc_fg.sum() > 1.3 * star_fg.sum()  # a star fills less of its circumcircle than a disc
    ys, xs = np.nonzero(disc_fg)
    assert abs((ys.max() - ys.min()) - (xs.max() - xs.min())) <= 1  # round
    assert (star_fg & ~disc_fg).sum() <= 4  # the star's points lie inside the disc


def test_rows_score_both_clips_against_both_references():
    from ladder import held_out, level_world

    clips = held_out(3, {**level_world("l2c"), "duration": 1.0})
    shape = clips[0].identities[0].shape
    rows = swap_rows(str(ROOT / "assets/default_model"), clips, shape, steps=2, keep_frames=True)
    assert rows and rows[0]["scene"] == 0
    assert rows[0]["frames"]["own"].shape == rows[0]["frames"]["circle"].shape == clips[0].frames.shape
    assert not np.array_equal(rows[0]["frames"]["own"], rows[0]["frames"]["circle"])  # the reference changed the clip
    for row in rows:
        for key in (f"own_passes_{shape}", "own_passes_circle", f"circle_passes_{shape}", "circle_passes_circle"):
            assert 0.0 <= row[key] <= 1.0
        assert row["truth_area"] > 20
    m = summary(rows)
    assert m["subjects"] == len(rows) and m["truth_area"] == np.median([r["truth_area"] for r in rows])
