"""The sprite world's motion vocabulary and how a caption is read into it.

Shared by the sprite world (train/sprites.py, which adds its exact caption paraphrases) and the
annotation pipeline's offline timeline labeller (annotate/timeline_labels.py). DESIGN.md §2 lets both
import `model`, and neither the other.
"""

from __future__ import annotations

import re

ACTIONS = ("move_left", "move_right", "move_up", "move_down", "jump", "spin", "grow", "shrink", "stay")

# Keywords. "Specific" verbs win over direction words ("jumps up" is a jump, "stays on the left" is a
# stay); directions alone decide a move.
_SPECIFIC_WORDS = {
    "jump": r"jump\w*|hop\w*|leap\w*|bounc\w*",
    "spin": r"spin\w*|rotat\w*|twirl\w*|whirl\w*|turns? around|turning around",
    "grow": r"grow\w*|bigger|larger|expand\w*|swell\w*|enlarg\w*",
    "shrink": r"shrink\w*|smaller|contract\w*|dwindl\w*",
    "stay": r"stay\w*|still|rests?|resting|remain\w*|wait\w*|paus\w*|motionless|idle",
}
_DIRECTION_WORDS = {
    "move_left": r"left\w*|west\w*",
    "move_right": r"right\w*|east\w*",
    "move_up": r"up|upwards?|ris\w*|ascend\w*|climb\w*",
    "move_down": r"down|downwards?|sink\w*|sank|descend\w*|fall\w*|fell|drop\w*",
}
_SPECIFIC_RE = {k: re.compile(rf"\b(?:{v})\b") for k, v in _SPECIFIC_WORDS.items()}
_DIRECTION_RE = {k: re.compile(rf"\b(?:{v})\b") for k, v in _DIRECTION_WORDS.items()}


def normalise_text(text: str) -> str:
    """Lower case, letters and single spaces only."""
    return re.sub(r"\s+", " ", re.sub(r"[^a-z ]+", " ", text.lower())).strip()


def keyword_action(text: str) -> str | None:
    """The action a caption names by its keywords (one of ACTIONS), or None when it names none or several."""
    norm = normalise_text(text)
    specific = [a for a, rx in _SPECIFIC_RE.items() if rx.search(norm)]
    if len(specific) == 1:
        return specific[0]
    if len(specific) > 1:
        return None
    directions = [a for a, rx in _DIRECTION_RE.items() if rx.search(norm)]
    return directions[0] if len(directions) == 1 else None
