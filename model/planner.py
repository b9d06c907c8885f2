"""Prompt to timeline: turn a free description into a per-subject timeline document.

"a man waves, then sits down while the dog runs in" ->
    the man:  [0.00-2.00] waves, [2.00-4.00] sits down
    the dog:  [2.00-4.00] runs in

Three planners, tried in this order (`plan`):

1. an OpenAI-compatible chat endpoint (`/chat/completions`), when a base URL and model are configured
   (REACTID_LLM_BASE_URL / REACTID_LLM_MODEL / REACTID_LLM_API_KEY or `PlannerConfig`), spoken to with
   urllib (no client package);
2. a local transformers causal LM, when a path is configured (REACTID_LLM_PATH);
3. the offline rule planner (`plan_with_rules`), which always works: it splits the prompt into clauses
   on "then", "while", "and", commas and sentence ends, finds who acts in each clause from the
   subjects' names (or makes new subjects from noun phrases), gives every step of the story an equal
   share of the duration (or the share a clause asks for: "for 2 seconds") and snaps every boundary to
   the model's latent-frame grid.

An answer from a language model that cannot be used (not JSON, wrong shape, breaks the timeline rules,
network error) falls back to the rule planner, and the result says why in `messages`. A prompt that
no planner can turn into a timeline raises `PlanError` with a message meant for the user.

No Gradio here: the studio calls `plan(...)` and shows `PlanResult.messages`.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .timeline import (
    DEFAULT_FPS,
    KINDS,
    MAX_SUBJECTS,
    Action,
    Subject,
    Timeline,
    TimelineError,
    fix_overlaps,
    min_action_seconds,
    snap_to_grid,
)

MAX_PROMPT_CHARS = 2000


class PlanError(ValueError):
    """The prompt cannot be turned into a timeline; the message says why and what to write instead."""


# --------------------------------------------------------------------------------------------
# Configuration and result
# --------------------------------------------------------------------------------------------
@dataclass
class PlannerConfig:
    """Where a language-model planner lives. Nothing configured -> the rule planner only."""

    base_url: str | None = None  # e.g. "http://localhost:8000/v1" (OpenAI-compatible)
    model: str | None = None
    api_key: str | None = None
    local_path: str | None = None  # a transformers causal LM directory
    timeout: float = 30.0
    max_new_tokens: int = 512  # local LM only

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "PlannerConfig":
        env = os.environ if env is None else env

        def get(key: str) -> str | None:
            value = (env.get(key) or "").strip()
            return value or None

        return cls(
            base_url=get("REACTID_LLM_BASE_URL"),
            model=get("REACTID_LLM_MODEL"),
            api_key=get("REACTID_LLM_API_KEY"),
            local_path=get("REACTID_LLM_PATH"),
        )

    @property
    def backend(self) -> str:
        """The planner `plan` tries first: "llm", "local" or "rules"."""
        if self.base_url and self.model:
            return "llm"
        if self.local_path:
            return "local"
        return "rules"

    def describe(self) -> str:
        if self.backend == "llm":
            return f"chat endpoint {self.base_url} (model {self.model})"
        if self.backend == "local":
            return f"local language model at {self.local_path}"
        return "offline rule planner"


@dataclass
class PlanResult:
    timeline: Timeline
    backend: str  # the planner that produced `timeline`: "llm", "local" or "rules"
    messages: list[str] = field(default_factory=list)  # what the user should know (fallbacks, skipped clauses)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def plan(
    prompt: str,
    subjects: Sequence[Subject] | None = None,
    duration: float = 4.0,
    fps: int = DEFAULT_FPS,
    config: PlannerConfig | None = None,
    *,
    max_subjects: int = MAX_SUBJECTS,
    scene_prompt: str | None = None,
) -> PlanResult:
    """Plan `prompt` onto `subjects` (the editor's subjects; their ids, names, kinds and references are
    kept, their actions replaced). Subjects the prompt mentions but that are not in `subjects` are
    added, up to `max_subjects`. `scene_prompt` becomes the timeline's global prompt (default: the
    prompt itself). Raises PlanError when even the rule planner cannot make a timeline."""
    prompt = _check_prompt(prompt)
    _check_duration(duration, fps)
    config = config or PlannerConfig()
    subjects = list(subjects or [])
    messages: list[str] = []
    if config.backend in ("llm", "local"):
        try:
            if config.backend == "llm":
                answer = chat_completion(config, _llm_messages(prompt, subjects, duration, fps, max_subjects))
            else:
                answer = local_completion(config, _llm_messages(prompt, subjects, duration, fps, max_subjects))
            tl, notes = timeline_from_llm_answer(answer, subjects, duration, fps, max_subjects=max_subjects)
            tl.prompt = scene_prompt if scene_prompt else prompt
            return PlanResult(tl, config.backend, notes)
        except PlanError as exc:
            messages.append(f"The {config.describe()} gave an answer that cannot be used ({exc}); planned with the offline rule planner instead.")
        except Exception as exc:  # network, HTTP, model loading: never fatal, the rule planner always works
            messages.append(f"The {config.describe()} could not be reached or run ({_short(exc)}); planned with the offline rule planner instead.")
    result = plan_with_rules(prompt, subjects, duration, fps, max_subjects=max_subjects, scene_prompt=scene_prompt)
    result.messages[:0] = messages
    return result


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _check_prompt(prompt: str) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise PlanError("the prompt is empty: describe who does what, e.g. 'the red circle moves to the right, then jumps'")
    prompt = " ".join(prompt.split())
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PlanError(f"the prompt is {len(prompt)} characters long; keep it under {MAX_PROMPT_CHARS}")
    if not re.search(r"[A-Za-z]", prompt):
        raise PlanError(f"the prompt {prompt!r} has no words to plan from: describe who does what, e.g. 'the dog runs in, then sits'")
    return prompt


def _check_duration(duration: float, fps: int) -> None:
    if not duration or duration < min_action_seconds(fps):
        raise PlanError(f"the video must last at least {min_action_seconds(fps):.2f}s to hold one action (got {duration}s)")


# --------------------------------------------------------------------------------------------
# Language-model planners
# --------------------------------------------------------------------------------------------
def _llm_messages(prompt: str, subjects: Sequence[Subject], duration: float, fps: int, max_subjects: int) -> list[dict]:
    names = ", ".join(repr(s.name) for s in subjects) or "(none yet: name them from the description)"
    system = (
        "You plan videos. Turn the user's description into a per-subject timeline of sub-actions. "
        "Answer with one JSON object and nothing else, shaped like "
        '{"subjects": [{"name": "the man in red", "kind": "human", "actions": [{"start": 0.0, "end": 2.0, "text": "waves"}]}]}. '
        f"Rules: times are seconds between 0 and {duration:g}; within one subject actions do not overlap; "
        f"every action lasts at least {min_action_seconds(fps):g} seconds; kind is one of {', '.join(KINDS)}; "
        f"at most {max_subjects} subjects; captions are short verb phrases without the subject's name. "
        f"Known subjects (reuse these names exactly): {names}."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]


def chat_completion(config: PlannerConfig, messages: list[dict]) -> str:
    """POST to an OpenAI-compatible `/chat/completions`; return the first choice's text."""
    url = config.base_url.rstrip("/")
    if not url.endswith("/chat/completions"):
        url += "/chat/completions"
    if not url.startswith(("http://", "https://")):
        raise PlanError(f"the planner base URL must start with http:// or https:// (got {config.base_url!r})")
    body = json.dumps({"model": config.model, "messages": messages, "temperature": 0}).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=config.timeout) as response:  # noqa: S310 (URL scheme checked above)
            payload = response.read(2_000_000)
    except urllib.error.HTTPError as exc:
        raise ConnectionError(f"HTTP {exc.code} from {url}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectionError(f"{url}: {reason}") from None
    try:
        data = json.loads(payload)
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise PlanError("the endpoint's reply is not an OpenAI-style chat completion") from None
    if not isinstance(content, str):
        raise PlanError("the endpoint's reply has no text content")
    return content


_LOCAL_MODELS: dict[str, tuple] = {}


def local_completion(config: PlannerConfig, messages: list[dict]) -> str:
    """Greedy generation with a local transformers causal LM (loaded once per path)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = config.local_path
    if path not in _LOCAL_MODELS:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
        model.eval()
        _LOCAL_MODELS[path] = (tokenizer, model)
    tokenizer, model = _LOCAL_MODELS[path]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\n\nassistant: "
    inputs = tokenizer(text, return_tensors="pt")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=config.max_new_tokens, do_sample=False, pad_token_id=pad_id)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def _extract_json(answer: str) -> object:
    text = answer.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, flags=re.S)
    if fence:
        text = fence.group(1).strip()
    start = text.find("{")
    if start < 0:
        raise PlanError("the answer contains no JSON object")
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        raise PlanError(f"the answer's JSON is malformed ({exc.msg} at character {exc.pos})") from None
    return obj


def timeline_from_llm_answer(
    answer: str,
    subjects: Sequence[Subject],
    duration: float,
    fps: int,
    *,
    max_subjects: int = MAX_SUBJECTS,
) -> tuple[Timeline, list[str]]:
    """Turn a model's JSON answer into a valid timeline on the editor's subjects; PlanError if it can't."""
    obj = _extract_json(answer)
    if not isinstance(obj, dict) or not isinstance(obj.get("subjects"), list) or not obj["subjects"]:
        raise PlanError("the answer has no 'subjects' list")
    notes: list[str] = []
    out = _fresh_subjects(subjects)
    used: set[str] = set()
    for k, item in enumerate(obj["subjects"]):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
            raise PlanError(f"subject #{k + 1} in the answer has no name")
        actions = item.get("actions", [])
        if not isinstance(actions, list):
            raise PlanError(f"subject {item['name']!r} in the answer has no 'actions' list")
        editor_subjects = [s for s in out if s.id in {x.id for x in subjects}]
        target = _match_known(item["name"], editor_subjects, used) or next(
            (s for s in out if s.id not in {x.id for x in subjects} and s.name.lower() == item["name"].strip().lower()), None)
        if target is None:
            if len(out) >= max_subjects:
                notes.append(f"The plan names more than {max_subjects} subjects; {item['name']!r} was left out.")
                continue
            kind = item.get("kind") if item.get("kind") in KINDS else _guess_kind(item["name"])
            target = Subject(_new_id(out), item["name"].strip(), kind, [], [])
            out.append(target)
        used.add(target.id)
        for j, a in enumerate(actions):
            if not isinstance(a, dict):
                raise PlanError(f"action {j + 1} of {item['name']!r} is not an object")
            try:
                start, end, text = float(a["start"]), float(a["end"]), str(a["text"]).strip()
            except (KeyError, TypeError, ValueError):
                raise PlanError(f"action {j + 1} of {item['name']!r} needs numeric 'start', 'end' and a 'text'") from None
            start = min(max(0.0, snap_to_grid(start, fps)), duration)
            end = duration if end >= duration - 1e-6 else min(snap_to_grid(end, fps), duration)
            target.actions.append(Action(start, end, text))
    tl = Timeline(duration=float(duration), subjects=out, fps=fps)
    problems = tl.problems()
    if problems and all(p.fixable for p in problems):
        tl = fix_overlaps(tl)
        notes.append("The language model's plan had overlapping actions; they were shortened so that each starts where the previous ends.")
        problems = tl.problems()
    if problems:
        raise PlanError("the plan breaks the timeline rules: " + "; ".join(p.message for p in problems[:3]))
    if not any(s.actions for s in tl.subjects):
        raise PlanError("the plan has no actions")
    return tl, notes


# --------------------------------------------------------------------------------------------
# The offline rule planner
# --------------------------------------------------------------------------------------------
_DETERMINERS = {"a", "an", "the", "this", "that", "these", "those", "his", "her", "their", "its", "my", "your", "our", "one", "two", "three", "another", "some"}
_PRONOUNS = {"he", "she", "it", "they", "him", "them", "we", "i", "you"}
_PREPOSITIONS = {"in", "on", "with", "of", "at", "from", "wearing", "by", "near", "under", "over", "behind", "beside", "holding"}
_STOP = _DETERMINERS | _PREPOSITIONS | {"and", "or", "to", "is", "are", "who", "which"}
_LEADING_FILLERS = {"then", "first", "firstly", "next", "finally", "afterwards", "also", "suddenly", "slowly", "quickly", "now", "later", "soon", "and"}

_VERBS = set(
    """walk run jump hop skip spin rotate turn twirl grow shrink expand move stay remain sit stand wave
    fly swim dance enter leave exit fall roll bounce slide glide climb look smile laugh talk speak eat drink
    open close pick put place throw toss catch kick push pull lift raise drop hold carry shake nod point clap
    sleep bark meow chase follow approach come go appear disappear vanish rise sink stop start begin wait rest
    lie crawl dash race drive ride play sing write read cook cut hug kiss wink blink cry shout yell bow kneel
    squat stretch lean twist flip swing float hover land take give get reach wander stroll march sprint
    zoom drift orbit shoot change fade pop burst wobble shiver tremble vibrate pulse flash glow blink
    return arrive depart step trot gallop fetch bite lick sniff wag purr roar growl chirp peck flap
    stare watch listen answer greet shrug frown grin pose sway rock hide emerge jog kick punch dodge duck
    scratch paint draw type swipe tap knock ring pour stir slice serve sip chew""".split()
)
_IRREGULAR = {
    "sat": "sit", "ran": "run", "flew": "fly", "fell": "fall", "stood": "stand", "went": "go", "came": "come",
    "rose": "rise", "took": "take", "gave": "give", "swam": "swim", "sang": "sing", "ate": "eat", "drank": "drink",
    "threw": "throw", "caught": "catch", "held": "hold", "lay": "lie", "lies": "lie", "lying": "lie", "began": "begin",
    "got": "get", "does": "do", "did": "do", "spun": "spin", "grew": "grow", "shrank": "shrink", "rode": "ride",
    "drove": "drive", "wrote": "write", "hid": "hide", "shook": "shake", "slid": "slide", "leapt": "leap",
    "leaps": "leap", "leaping": "leap", "leap": "leap",
}
_VERBS.add("leap")

_HUMAN_WORDS = set(
    """man woman boy girl person child kid lady guy gentleman people dancer player chef doctor teacher
    student worker soldier king queen prince princess baby mother father mom dad grandma grandpa friend
    runner singer musician actor actress driver rider farmer police officer nurse athlete skater surfer
    climber waiter waitress clown wizard knight robot""".split()
)
_ANIMAL_WORDS = set(
    """dog puppy cat kitten bird horse cow sheep goat pig chicken duck fish rabbit bunny mouse rat fox wolf
    bear lion tiger elephant monkey deer squirrel owl eagle parrot frog turtle snake dolphin whale shark
    penguin giraffe zebra camel butterfly bee spider hamster pony""".split()
)

# connector strength: how a clause attaches to the previous one
_SEQ, _PAR, _AND = "seq", "par", "and"
_SPLIT = re.compile(
    r"(\band then\b|\bthen\b|\bafter that\b|\bafterwards\b|\bafter which\b|\bfinally\b|\bnext\b|\bbefore\b"
    r"|\bwhile\b|\bwhilst\b|\bmeanwhile\b|\bat the same time\b|\bas well as\b|\band\b|[,;.!?])",
    flags=re.I,
)
_CONNECTOR_KIND = {
    "and then": _SEQ, "then": _SEQ, "after that": _SEQ, "afterwards": _SEQ, "after which": _SEQ, "finally": _SEQ,
    "next": _SEQ, "before": _SEQ, "while": _PAR, "whilst": _PAR, "meanwhile": _PAR, "at the same time": _PAR,
    "as well as": _AND, "and": _AND, ",": _AND, ";": _AND, ".": _AND, "!": _AND, "?": _AND,
}
_STRENGTH = {_AND: 0, _SEQ: 1, _PAR: 2}
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "a": 1, "an": 1, "half a": 0.5, "half": 0.5}
_FOR_SECONDS = re.compile(r"\bfor\s+(\d+(?:\.\d+)?|one|two|three|four|five|six|an?|half a)\s*(?:seconds?|secs?|s)\b", flags=re.I)


@dataclass
class _Clause:
    connector: str  # how it attaches to the previous clause
    text: str
    seconds: float | None = None  # "for 2 seconds"


def _split_clauses(prompt: str) -> list[_Clause]:
    parts = _SPLIT.split(prompt)
    clauses: list[_Clause] = []
    pending = _AND
    for k, part in enumerate(parts):
        if k % 2 == 1:  # a connector
            kind = _CONNECTOR_KIND.get(part.lower(), _AND)
            if _STRENGTH[kind] > _STRENGTH[pending]:
                pending = kind
            continue
        text = part.strip(" \t\"'()")
        if not re.search(r"[A-Za-z]", text):
            continue
        seconds = None
        m = _FOR_SECONDS.search(text)
        if m:
            raw = m.group(1).lower()
            seconds = float(_NUMBER_WORDS.get(raw, raw)) if raw in _NUMBER_WORDS else float(raw)
            text = (text[: m.start()] + text[m.end():]).strip()
        clauses.append(_Clause(pending if clauses else _SEQ, " ".join(text.split()), seconds))
        pending = _AND
    return clauses


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z][A-Za-z'-]*", text.lower())


def _verb_base(word: str) -> str | None:
    w = word.lower()
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if w in _VERBS:
        return w
    candidates = []
    if w.endswith("ies"):
        candidates.append(w[:-3] + "y")
    if w.endswith("es"):
        candidates.append(w[:-2])
    if w.endswith("s"):
        candidates.append(w[:-1])
    if w.endswith("ing"):
        stem = w[:-3]
        candidates += [stem, stem + "e"]
        if len(stem) > 2 and stem[-1] == stem[-2]:
            candidates.append(stem[:-1])
    if w.endswith("ed"):
        stem = w[:-2]
        candidates += [stem, w[:-1]]
        if len(stem) > 2 and stem[-1] == stem[-2]:
            candidates.append(stem[:-1])
        if stem.endswith("i"):
            candidates.append(stem[:-1] + "y")
    for c in candidates:
        if c in _VERBS:
            return c
    return None


def _verb_rank(word: str) -> int:
    """0: inflected (3rd person -s, past), 1: bare form, 2: -ing form."""
    w = word.lower()
    if w.endswith("ing") and w not in _VERBS:
        return 2
    if w in _VERBS:
        return 1
    return 0


def _name_keywords(name: str) -> tuple[set[str], str | None]:
    """Content words of a subject's name and its head noun ('the man in red' -> {man, red}, 'man')."""
    words = _words(name)
    keywords = {w for w in words if w not in _STOP}
    head = None
    for w in words:
        if w in _PREPOSITIONS:
            break
        if w not in _STOP:
            head = w
    return keywords, head


def _guess_kind(name: str) -> str:
    for w in _words(name):
        base = w[:-1] if w.endswith("s") and w[:-1] in (_HUMAN_WORDS | _ANIMAL_WORDS) else w
        if base in _HUMAN_WORDS or w in {"men", "women", "children", "people"}:
            return "human"
        if base in _ANIMAL_WORDS:
            return "animal"
    return "object"


def _new_id(subjects: Sequence[Subject]) -> str:
    taken = {s.id for s in subjects}
    n = len(subjects) + 1
    while f"s{n}" in taken:
        n += 1
    return f"s{n}"


def _fresh_subjects(subjects: Sequence[Subject]) -> list[Subject]:
    return [Subject(s.id, s.name, s.kind, list(s.references), []) for s in subjects]


def _match_known(phrase: str, subjects: Sequence[Subject], used: set[str] | None = None) -> Subject | None:
    """The subject `phrase` names: the exact name; else one whose name contains every content word of
    the phrase ('the man' -> 'the man in red'; 'the blue circle' does not match 'the red circle');
    else one whose name's words are all in the phrase ('the man in red' -> 'the man'). Ties go to the
    most shared words, then to a subject not yet `used`."""
    phrase_words = set(_words(phrase)) - _STOP
    if not phrase_words:
        return None
    norm = " ".join(w for w in _words(phrase) if w not in _DETERMINERS)
    for s in subjects:
        if " ".join(w for w in _words(s.name) if w not in _DETERMINERS) == norm:
            return s
    for test in (lambda kw: phrase_words <= kw, lambda kw: kw and kw <= phrase_words):
        best, best_score = None, -1.0
        for s in subjects:
            keywords, _ = _name_keywords(s.name)
            if not test(keywords):
                continue
            score = len(phrase_words & keywords) - (0.5 if used is not None and s.id in used else 0.0)
            if score > best_score:
                best, best_score = s, score
        if best is not None:
            return best
    return None


@dataclass
class _Parsed:
    subject_phrase: str | None  # noun phrase naming who acts (None: no subject named)
    pronoun: bool  # starts with he/she/it/they
    action: str  # the caption


def _parse_clause(text: str, known: Sequence[Subject]) -> _Parsed:
    tokens = text.split()
    while tokens and tokens[0].lower().strip(",") in _LEADING_FILLERS:
        tokens = tokens[1:]
    if not tokens:
        return _Parsed(None, False, "")
    first = tokens[0].lower()
    if first in _PRONOUNS:
        return _Parsed(None, True, " ".join(tokens[1:]))
    # A known subject's name written out at the start ("the man in red waves")
    lowered = " ".join(t.lower() for t in tokens)
    for s in sorted(known, key=lambda s: -len(s.name)):
        name = " ".join(s.name.lower().split())
        bare = re.sub(r"^(the|a|an)\s+", "", name)
        for candidate in (name, "the " + bare, "a " + bare, "an " + bare, bare):
            if lowered == candidate or lowered.startswith(candidate + " "):
                n = len(candidate.split())
                if n < len(tokens) and tokens[n].lower() in _PREPOSITIONS:
                    break  # "the man in red waves" with a subject named "the man": take the longer phrase
                return _Parsed(" ".join(tokens[:n]), False, " ".join(tokens[n:]))
    if _verb_base(first) and first not in _DETERMINERS:
        return _Parsed(None, False, " ".join(tokens))  # starts with a verb: same subject as before
    # A noun phrase up to the first verb. A bare verb form right after a determiner is more likely a
    # noun ("the red circle moves"), so an inflected form (moves, moved, sat) wins, then a bare form
    # (the birds fly), then an -ing form (the spinning top falls).
    for rank in (0, 1, 2):
        for i in range(1, len(tokens)):
            word = re.sub(r"[^A-Za-z'-]", "", tokens[i]).lower()
            if word in _STOP or not _verb_base(word) or _verb_rank(word) != rank:
                continue
            return _Parsed(" ".join(tokens[:i]), False, " ".join(tokens[i:]))
    # No known verb: a determiner + noun (+ adjectives are not guessable), or a 3rd-person -s word
    for i in range(1, len(tokens)):
        word = re.sub(r"[^A-Za-z'-]", "", tokens[i]).lower()
        if word.endswith("s") and not word.endswith(("ss", "us", "is")) and word not in _STOP and i >= (2 if first in _DETERMINERS else 1):
            return _Parsed(" ".join(tokens[:i]), False, " ".join(tokens[i:]))
    if first in _DETERMINERS and len(tokens) >= 3:
        return _Parsed(" ".join(tokens[:2]), False, " ".join(tokens[2:]))
    if first in _DETERMINERS:
        return _Parsed(" ".join(tokens), False, "")
    return _Parsed(None, False, " ".join(tokens))


def _subject_name(phrase: str) -> str:
    words = phrase.split()
    if words and words[0].lower() in {"a", "an", "the", "this", "that", "another", "some"}:
        words = words[1:]
    return "the " + " ".join(words) if words else phrase


def plan_with_rules(
    prompt: str,
    subjects: Sequence[Subject] | None = None,
    duration: float = 4.0,
    fps: int = DEFAULT_FPS,
    *,
    max_subjects: int = MAX_SUBJECTS,
    scene_prompt: str | None = None,
) -> PlanResult:
    """The offline planner (see the module docstring). Raises PlanError when nothing can be planned."""
    prompt = _check_prompt(prompt)
    _check_duration(duration, fps)
    messages: list[str] = []
    out = _fresh_subjects(subjects or [])
    clauses = _split_clauses(prompt)
    if not clauses:
        raise PlanError(f"no actions found in {prompt!r}: describe who does what, e.g. 'the red circle moves to the right, then jumps'")

    # Place each clause on a step of the story: steps[k] = {subject_id: [captions]}
    steps: list[dict[str, list[str]]] = []
    step_seconds: list[float | None] = []
    cursor: dict[str, int] = {}  # next free step of each subject
    prev_subject: Subject | None = None
    prev_step = -1
    dropped: list[str] = []
    for clause in clauses:
        parsed = _parse_clause(clause.text, out)
        action = parsed.action.strip(" ,;:.!?\"'")
        subject: Subject | None = None
        if parsed.subject_phrase:
            subject = _match_known(parsed.subject_phrase, out)
            if subject is None:
                if len(out) >= max_subjects:
                    dropped.append(parsed.subject_phrase)
                    continue
                name = _subject_name(parsed.subject_phrase)
                subject = Subject(_new_id(out), name, _guess_kind(name), [], [])
                out.append(subject)
        elif parsed.pronoun or prev_subject is not None:
            subject = prev_subject
            if subject is None and out:
                subject = out[0]
        elif out:
            subject = out[0]
            if len(out) > 1:
                messages.append(f"'{clause.text}' does not say who acts; it was given to {subject.name}.")
        if subject is None:
            raise PlanError(f"cannot tell who acts in '{clause.text}': name a subject, e.g. 'the red circle {clause.text}'")
        if not action:
            messages.append(f"'{clause.text}' has no action for {subject.name}; it was skipped.")
            continue

        same = prev_subject is not None and subject.id == prev_subject.id
        if prev_step < 0:
            step = 0
        elif clause.connector == _PAR:
            step = prev_step
        elif clause.connector == _SEQ:
            step = max(prev_step + 1, cursor.get(subject.id, 0)) if not same else prev_step + 1
        else:  # "and", commas, sentence ends
            step = prev_step + 1 if same else cursor.get(subject.id, 0)
        while len(steps) <= step:
            steps.append({})
            step_seconds.append(None)
        captions = steps[step].setdefault(subject.id, [])
        if captions and clause.connector == _PAR:
            captions[-1] = f"{captions[-1]} while {action}"
        elif captions:  # already acting in this step: move to the next free one
            step = max(step + 1, cursor.get(subject.id, 0))
            while len(steps) <= step:
                steps.append({})
                step_seconds.append(None)
            steps[step].setdefault(subject.id, []).append(action)
        else:
            captions.append(action)
        if clause.seconds is not None:
            step_seconds[step] = max(step_seconds[step] or 0.0, clause.seconds)
        cursor[subject.id] = step + 1
        prev_subject, prev_step = subject, step

    if dropped:
        messages.append(f"At most {max_subjects} subjects fit; left out: {', '.join(repr(d) for d in dropped)}.")
    steps_used = [k for k, st in enumerate(steps) if st]
    if not steps_used:
        raise PlanError(f"no actions found in {prompt!r}: describe who does what, e.g. 'the dog runs in, then sits down'")
    bounds = _step_bounds([step_seconds[k] for k in steps_used], duration, fps)
    for n, k in enumerate(steps_used):
        start, end = bounds[n], bounds[n + 1]
        for sid, captions in steps[k].items():
            s = next(x for x in out if x.id == sid)
            s.actions.append(Action(start, end, " ".join(captions)))
    for s in out:
        if not s.actions:
            messages.append(f"{s.name} is not mentioned in the prompt and has no actions.")
    tl = Timeline(duration=float(duration), subjects=out, prompt=scene_prompt if scene_prompt else prompt, fps=fps)
    try:
        tl.validate()
    except TimelineError as exc:  # should not happen: report rather than hand over a broken plan
        raise PlanError(str(exc)) from None
    return PlanResult(tl, "rules", messages)


def _step_bounds(requested: list[float | None], duration: float, fps: int) -> list[float]:
    """Boundaries (len n+1) of n consecutive steps over [0, duration], on the latent-frame grid, each
    at least one latent frame long. Steps with a requested length get it (if it fits); the rest share
    what is left equally."""
    n = len(requested)
    min_span = min_action_seconds(fps)
    if n * min_span > duration + 1e-6:
        raise PlanError(
            f"the prompt has {n} consecutive steps, more than fit in {duration:g}s (each needs at least "
            f"{min_span:g}s); make the video longer or describe fewer steps"
        )
    fixed = sum(r for r in requested if r)
    free = [r for r in requested if not r]
    if fixed > duration + 1e-6 or (free and duration - fixed < len(free) * min_span):
        requested = [None] * n  # asked-for lengths do not fit: split equally
        fixed, free = 0.0, requested
    share = (duration - fixed) / len(free) if free else 0.0
    lengths = [r if r else share for r in requested]
    if not free:  # every step has a length: stretch the last to the end
        lengths[-1] += duration - fixed
    bounds = [0.0]
    acc = 0.0
    for i, length in enumerate(lengths[:-1]):
        acc += length
        b = snap_to_grid(acc, fps)
        lo = bounds[-1] + min_span
        hi = duration - (n - 1 - i) * min_span
        b = min(max(b, lo), hi)
        bounds.append(round(b, 6))
    bounds.append(float(duration))
    return bounds


# --------------------------------------------------------------------------------------------
# Used by the studio to describe a plan in words
# --------------------------------------------------------------------------------------------
def describe_plan(tl: Timeline) -> str:
    lines = []
    for s in tl.subjects:
        acts = ", ".join(f"{a.start:.2f}-{a.end:.2f}s {a.text}" for a in s.sorted_actions()) or "no actions"
        lines.append(f"{s.name}: {acts}")
    return "\n".join(lines)

