"""Prompt -> timeline planner: the offline rules on a set of prompts, the OpenAI-compatible path against
a tiny local HTTP server, the fallbacks, and the local transformers path on a tiny random model."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from model.planner import PlanError, PlannerConfig, plan, plan_with_rules, timeline_from_llm_answer
from model.timeline import Subject, Timeline


def acts(result, name: str) -> list[tuple[float, float, str]]:
    s = next(s for s in result.timeline.subjects if s.name == name)
    return [(a.start, a.end, a.text) for a in s.actions]


# --------------------------------------------------------------------------------------------
# Offline rule planner
# --------------------------------------------------------------------------------------------
def test_issue_example_new_subjects():
    r = plan_with_rules("a man waves, then sits down while the dog runs in", duration=4.0, fps=16)
    assert r.backend == "rules"
    assert [(s.name, s.kind) for s in r.timeline.subjects] == [("the man", "human"), ("the dog", "animal")]
    assert acts(r, "the man") == [(0.0, 2.0, "waves"), (2.0, 4.0, "sits down")]
    assert acts(r, "the dog") == [(2.0, 4.0, "runs in")]
    assert r.timeline.prompt == "a man waves, then sits down while the dog runs in"
    r.timeline.validate()


def test_matches_editor_subjects_by_name_and_keeps_them():
    subjects = [Subject("s1", "the man in red", "human", ["/refs/man.png"], []), Subject("s2", "the brown dog", "animal", [], [])]
    r = plan_with_rules("a man waves, then sits down while the dog runs in", subjects, duration=5.0, fps=16, scene_prompt="a park")
    assert [s.id for s in r.timeline.subjects] == ["s1", "s2"]
    assert r.timeline.subjects[0].references == ["/refs/man.png"]
    assert acts(r, "the man in red") == [(0.0, 2.5, "waves"), (2.5, 5.0, "sits down")]
    assert acts(r, "the brown dog") == [(2.5, 5.0, "runs in")]
    assert r.timeline.prompt == "a park"


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("the red circle moves to the right, then jumps", {"the red circle": [(0.0, 2.0, "moves to the right"), (2.0, 4.0, "jumps")]}),
        ("The cat sleeps. The dog barks and then runs away.",
         {"the cat": [(0.0, 2.0, "sleeps")], "the dog": [(0.0, 2.0, "barks"), (2.0, 4.0, "runs away")]}),
        ("a woman dances for 3 seconds then bows", {"the woman": [(0.0, 3.0, "dances"), (3.0, 4.0, "bows")]}),
        ("the green triangle spins while the orange star grows, then the orange star moves up",
         {"the green triangle": [(0.0, 2.0, "spins")], "the orange star": [(0.0, 2.0, "grows"), (2.0, 4.0, "moves up")]}),
        ("the man in red walks in from the left, then he picks up a cup and drinks",
         {"the man in red": [(0.0, 1.25, "walks in from the left"), (1.25, 2.75, "picks up a cup"), (2.75, 4.0, "drinks")]}),
        ("two birds fly in, then land on the fence", {"the two birds": [(0.0, 2.0, "fly in"), (2.0, 4.0, "land on the fence")]}),
        ("the red circle jumps and the blue circle spins", {"the red circle": [(0.0, 4.0, "jumps")], "the blue circle": [(0.0, 4.0, "spins")]}),
    ],
)
def test_rule_planner_prompts(prompt, expected):
    r = plan_with_rules(prompt, duration=4.0, fps=16)
    got = {s.name: [(a.start, a.end, a.text) for a in s.actions] for s in r.timeline.subjects}
    assert got == expected
    grid = 4 / 16
    for s in r.timeline.subjects:
        for a in s.actions:  # every boundary on the latent-frame grid
            assert abs(a.start / grid - round(a.start / grid)) < 1e-9 and abs(a.end / grid - round(a.end / grid)) < 1e-9


def test_uneven_split_is_snapped_to_the_grid():
    r = plan_with_rules("the cube jumps, then spins, then grows", duration=5.0, fps=16)
    assert acts(r, "the cube") == [(0.0, 1.75, "jumps"), (1.75, 3.25, "spins"), (3.25, 5.0, "grows")]


def test_subject_limit_and_unmentioned_subjects_are_reported():
    subjects = [Subject("s1", "the red circle"), Subject("s2", "the blue square")]
    r = plan_with_rules("the red circle jumps and the cat sleeps and the dog barks", subjects, max_subjects=3)
    assert [s.name for s in r.timeline.subjects] == ["the red circle", "the blue square", "the cat"]
    assert any("left out: 'the dog'" in m for m in r.messages)
    assert any("the blue square is not mentioned" in m for m in r.messages)


@pytest.mark.parametrize(
    "prompt, needle",
    [
        ("", "the prompt is empty"),
        ("   ", "the prompt is empty"),
        ("!!! ???", "has no words"),
        ("jumps then spins", "cannot tell who acts in 'jumps'"),
        ("the dog", "no actions found"),
        ("the ball " + " then ".join(["bounces"] * 20), "more than fit in 4s"),
        ("x" * 2100, "keep it under 2000"),
    ],
)
def test_prompts_that_cannot_be_planned(prompt, needle):
    with pytest.raises(PlanError, match=None) as err:
        plan_with_rules(prompt, duration=4.0, fps=16)
    assert needle in str(err.value)


def test_longer_or_shorter_names_match_the_editor_subject():
    r = plan_with_rules("the man in red waves, then the man sits", [Subject("s1", "the man", "human")])
    assert [s.name for s in r.timeline.subjects] == ["the man"]
    assert acts(r, "the man") == [(0.0, 2.0, "waves"), (2.0, 4.0, "sits")]


def test_prompt_without_subject_goes_to_the_only_subject():
    r = plan_with_rules("jumps then spins", [Subject("s1", "the star")])
    assert acts(r, "the star") == [(0.0, 2.0, "jumps"), (2.0, 4.0, "spins")]


# --------------------------------------------------------------------------------------------
# OpenAI-compatible endpoint
# --------------------------------------------------------------------------------------------
class _Endpoint:
    """A tiny /v1/chat/completions server; `answer` is what the 'model' says."""

    def __init__(self, answer: str, status: int = 200):
        self.answer, self.status, self.requests = answer, status, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                payload = json.dumps({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": outer.answer}}]}).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def endpoint():
    servers = []

    def make(answer: str, status: int = 200) -> _Endpoint:
        servers.append(_Endpoint(answer, status))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


GOOD_ANSWER = """Here is the plan:
```json
{"subjects": [
  {"name": "the man in red", "kind": "human", "actions": [{"start": 0, "end": 1.9, "text": "waves"}, {"start": 1.9, "end": 4, "text": "sits down"}]},
  {"name": "the dog", "kind": "animal", "actions": [{"start": 2.1, "end": 4.0, "text": "runs in"}]}
]}
```"""


def test_llm_plan_through_chat_endpoint(endpoint):
    ep = endpoint(GOOD_ANSWER)
    cfg = PlannerConfig(base_url=ep.base_url, model="tiny-planner", api_key="sk-test")
    subjects = [Subject("s1", "the man in red", "human", ["/refs/a.png"], [])]
    r = plan("a man waves, then sits down while the dog runs in", subjects, 4.0, 16, cfg)
    assert r.backend == "llm" and r.messages == []
    assert acts(r, "the man in red") == [(0.0, 2.0, "waves"), (2.0, 4.0, "sits down")]  # snapped to the grid
    assert acts(r, "the dog") == [(2.0, 4.0, "runs in")]
    assert r.timeline.subjects[0].id == "s1" and r.timeline.subjects[0].references == ["/refs/a.png"]
    assert r.timeline.subjects[1].kind == "animal"
    req = ep.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "tiny-planner" and req["body"]["messages"][1]["content"].startswith("a man waves")
    assert "'the man in red'" in req["body"]["messages"][0]["content"]


def test_llm_overlaps_are_repaired_with_a_note(endpoint):
    answer = json.dumps({"subjects": [{"name": "the ball", "actions": [{"start": 0, "end": 3, "text": "rolls"}, {"start": 2, "end": 4, "text": "stops"}]}]})
    r = plan("the ball rolls then stops", None, 4.0, 16, PlannerConfig(base_url=endpoint(answer).base_url, model="m"))
    assert r.backend == "llm"
    assert acts(r, "the ball") == [(0.0, 3.0, "rolls"), (3.0, 4.0, "stops")]
    assert "overlapping" in r.messages[0]


@pytest.mark.parametrize(
    "answer, why",
    [
        ("I think the man waves and then sits.", "contains no JSON object"),
        ('{"subjects": [{"name": "the man", "actions": [{"start": 0, "end": 2, "text": "waves"}', "malformed"),
        ('{"plan": []}', "no 'subjects' list"),
        ('{"subjects": [{"name": "the man", "actions": [{"start": "soon", "end": 2, "text": "waves"}]}]}', "needs numeric"),
        ('{"subjects": [{"name": "the man", "actions": [{"start": 0, "end": 0.1, "text": "waves"}]}]}', "breaks the timeline rules"),
    ],
)
def test_malformed_llm_answer_falls_back_with_message(endpoint, answer, why):
    cfg = PlannerConfig(base_url=endpoint(answer).base_url, model="m")
    r = plan("a man waves, then sits down", None, 4.0, 16, cfg)
    assert r.backend == "rules"
    assert acts(r, "the man") == [(0.0, 2.0, "waves"), (2.0, 4.0, "sits down")]
    assert "planned with the offline rule planner instead" in r.messages[0] and why in r.messages[0]


def test_unreachable_or_failing_endpoint_falls_back(endpoint):
    ep = endpoint(GOOD_ANSWER, status=500)
    r = plan("a man waves", None, 4.0, 16, PlannerConfig(base_url=ep.base_url, model="m"))
    assert r.backend == "rules" and "HTTP 500" in r.messages[0]
    r = plan("a man waves", None, 4.0, 16, PlannerConfig(base_url="http://127.0.0.1:9/v1", model="m", timeout=2))
    assert r.backend == "rules" and "could not be reached" in r.messages[0]


def test_unparseable_prompt_is_refused_before_any_request(endpoint):
    ep = endpoint(GOOD_ANSWER)
    with pytest.raises(PlanError, match="the prompt is empty"):
        plan("  ", None, 4.0, 16, PlannerConfig(base_url=ep.base_url, model="m"))
    assert ep.requests == []


def test_config_from_env_and_backend_choice():
    env = {"REACTID_LLM_BASE_URL": "http://h/v1", "REACTID_LLM_MODEL": "m", "REACTID_LLM_API_KEY": "k", "REACTID_LLM_PATH": "/models/x"}
    cfg = PlannerConfig.from_env(env)
    assert (cfg.base_url, cfg.model, cfg.api_key, cfg.local_path, cfg.backend) == ("http://h/v1", "m", "k", "/models/x", "llm")
    assert PlannerConfig.from_env({"REACTID_LLM_PATH": "/models/x"}).backend == "local"
    assert PlannerConfig.from_env({}).backend == "rules"


def test_llm_answer_with_more_subjects_than_allowed():
    answer = json.dumps({"subjects": [{"name": f"shape {k}", "actions": [{"start": 0, "end": 4, "text": "spins"}]} for k in range(4)]})
    tl, notes = timeline_from_llm_answer(answer, [], 4.0, 16, max_subjects=3)
    assert isinstance(tl, Timeline) and len(tl.subjects) == 3
    assert "'shape 3' was left out" in notes[0]


# --------------------------------------------------------------------------------------------
# Local transformers causal LM (a tiny random model saved to disk: its answer is noise -> fallback)
# --------------------------------------------------------------------------------------------
def test_local_language_model_path_runs_and_falls_back(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["<unk>", "<eos>", "{", "}", "the", "man", "waves", "subjects", ":", '"', "[", "]"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")
    fast.save_pretrained(tmp_path)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_positions=1024, n_embd=16, n_layer=1, n_head=2)).save_pretrained(tmp_path)

    cfg = PlannerConfig(local_path=str(tmp_path), max_new_tokens=8)
    r = plan("the man waves", None, 4.0, 16, cfg)
    assert r.backend == "rules"
    assert "local language model" in r.messages[0] and "planned with the offline rule planner instead" in r.messages[0]
    assert acts(r, "the man") == [(0.0, 4.0, "waves")]
