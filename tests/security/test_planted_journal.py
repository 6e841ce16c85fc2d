"""A journal planted in a shared cache must not spend the victim's money (issue #22, finding 1).

The cache (NBPIPE_CACHE_DIR on a team disk, a CI cache restore) is writable by others, and its
`journal.jsonl` names creates to resend. A build resends only bodies its own manifest makes
now; anything else is set aside (said), and `--max-cost` and the summary measure what is sent.
Each test drives the real CLI against the loopback HiAPI fake and judges from outside: the
tasks the fake created, its bill, the summary, the exit code.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from nbpipe.catalog import builtin
from nbpipe.plan.frame import Request, frame_key
from tests.engine.test_hostile import hiapi_env, lock_frames, nbpipe, project
from tests.fakes.hiapi import FakeHiApi
from tests.samples import THREE

SET_ASIDE = re.compile(r"journal entr(y|ies) this project does not make \(.*\): not resent")
PRO_4K = {"model": "Nano-Banana-Pro", "input": {"prompt": "the attacker's poster",
                                                "resolution": "4K"}}


def bill(fake: FakeHiApi) -> Decimal:
    """What the fake's tasks cost at list price: the money that really left."""
    prices = builtin()
    total = Decimal(0)
    for task in fake.tasks.values():
        spec = prices.get("hiapi", task.model)
        assert spec is not None, task.model
        total += spec.price(task.input.get("resolution"))
    return total


def spent(said: str) -> Decimal:
    found = re.findall(r"spent USD ([0-9.]+)", said)
    assert found, said[-2000:]
    return Decimal(found[-1])


def plant(cache: Path, key: str | None, take: int, body: dict, prompt: str = "cheap") -> None:
    """Journal lines as a teammate with write access to the cache could write them: an intent
    that claims a cheap request (under its own key, unless `key` says another), and a create
    body that is something else."""
    request = {"frame": "a", "backend": "hiapi", "model": "Nano-Banana", "prompt": prompt,
               "params": {}, "inputs": []}
    key = key or frame_key(Request("hiapi", "Nano-Banana", prompt, {}))
    lines = [{"op": "intent", "key": key, "take": take, "frame": "a", "backend": "hiapi",
              "request": request},
             {"op": "sent", "key": key, "take": take,
              "body": json.dumps(body, separators=(",", ":"))}]
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "journal.jsonl").open("a") as journal:
        journal.writelines(json.dumps(line) + "\n" for line in lines)


def victim_keys(tmp_path: Path) -> tuple[dict[str, str], dict]:
    """The frame keys THREE makes, and frame a's create body as the server received it, from a
    build on a fake of its own and a cache of its own."""
    with FakeHiApi() as fake:
        root = project(tmp_path / "keys", THREE)
        nbpipe(root, hiapi_env(fake, NBPIPE_CACHE_DIR=str(tmp_path / "keys-cache")), "build",
               allowed=(0,))
        a = next(t for t in fake.tasks.values() if t.input["prompt"] == "a lighthouse")
        keys = {name: doc["key"] for name, doc in lock_frames(root).items()}
        return keys, {"model": a.model, "input": a.input}


def judge(fake: FakeHiApi, code: int, said: str, cap: Decimal | None) -> None:
    prompts = sorted(t.input["prompt"] for t in fake.tasks.values())
    assert prompts == ["a harbour", "a lighthouse", "a pier"], said[-3000:]
    assert code == 0, said[-3000:]
    assert spent(said) == bill(fake) == Decimal("0.15"), said[-3000:]
    if cap is not None:
        assert bill(fake) <= cap
    assert SET_ASIDE.search(said), said[-3000:]


@pytest.mark.parametrize("cap", [None, Decimal("0.50")])
def test_a_planted_create_for_a_request_the_project_does_not_make_is_not_resent(cap, tmp_path):
    """Five planted creates of 4K Pro posters, each under a key no frame of the victim has,
    the intent claiming a cheap Nano-Banana request (what --max-cost measured): 0 creates for
    them; the victim's three frames built; the summary's spend is the fake's bill."""
    with FakeHiApi() as fake:
        cache = tmp_path / "shared"
        for n in range(5):
            plant(cache, None, 1, PRO_4K, prompt=f"cheap {n}")
        root = project(tmp_path / "victim", THREE)
        limit = ["--max-cost", str(cap)] if cap is not None else []
        code, said = nbpipe(root, hiapi_env(fake, NBPIPE_CACHE_DIR=str(cache)), "build", *limit)
        judge(fake, code, said, cap)


@pytest.mark.parametrize("body", [
    PRO_4K,  # another model, tier and prompt
    {"model": "Nano-Banana-Pro", "input": {"prompt": "a lighthouse", "resolution": "4K"}},
    {"model": "Nano-Banana", "input": {"prompt": "a lighthouse, and the attacker's logo"}},
], ids=["all", "model-tier", "prompt"])
def test_a_planted_create_under_the_victims_own_key_with_another_body_is_not_resent(body,
                                                                                  tmp_path):
    """The planted entry claims frame a's own key (and the take number a's first render would
    get), with a body a does not make: a is rendered from its own body, under a new take; the
    planted one is neither resent nor collected into a."""
    keys, _ = victim_keys(tmp_path)
    with FakeHiApi() as fake:
        cache = tmp_path / "shared"
        plant(cache, keys["a"], 1, body)
        root = project(tmp_path / "victim", THREE)
        env = hiapi_env(fake, NBPIPE_CACHE_DIR=str(cache))
        code, said = nbpipe(root, env, "build", "--max-cost", "0.50")
        judge(fake, code, said, Decimal("0.50"))
        code, again = nbpipe(root, env, "build", allowed=(0,))
        assert len(fake.tasks) == 3, again  # set aside for good: the next build sends nothing


def test_a_create_of_the_victims_own_body_is_still_resent_once(tmp_path):
    """The rule keeps what the journal is for: a create whose reply was lost, journalled with
    the very body the frame makes, is resent under its Idempotency-Key (HiAPI answers with the
    original task), never paid twice."""
    keys, body = victim_keys(tmp_path)
    with FakeHiApi() as fake:
        cache = tmp_path / "shared"
        plant(cache, keys["a"], 1, body)
        root = project(tmp_path / "victim", THREE)
        code, said = nbpipe(root, hiapi_env(fake, NBPIPE_CACHE_DIR=str(cache)), "build",
                            allowed=(0,))
        assert sorted(t.input["prompt"] for t in fake.tasks.values()) == \
            ["a harbour", "a lighthouse", "a pier"], said
        assert not SET_ASIDE.search(said), said
        assert fake.counts["replays"] == 0 and len(fake.tasks) == 3


def test_a_planted_reported_line_never_hides_what_the_victim_pays(tmp_path):
    """A planted entry of the victim's own body with a planted `reported` record: the resent
    create makes a new task under the victim's key, and that payment is the victim's build's
    to report, whatever the journal claims."""
    keys, body = victim_keys(tmp_path)
    with FakeHiApi() as fake:
        cache = tmp_path / "shared"
        plant(cache, keys["a"], 1, body)
        with (cache / "journal.jsonl").open("a") as journal:
            journal.write(json.dumps({"op": "reported", "key": keys["a"], "take": 1}) + "\n")
        root = project(tmp_path / "victim", THREE)
        code, said = nbpipe(root, hiapi_env(fake, NBPIPE_CACHE_DIR=str(cache)), "build",
                            allowed=(0,))
        assert spent(said) == bill(fake) == Decimal("0.15"), said[-1500:]
EDIT = """\
version: 1
defaults: {backend: hiapi, model: Nano-Banana-2, resolution: 1K}
targets:
  e: {prompt: make it night, inputs: ["https://example.com/ref.png"]}
"""


def journal_of(cache: Path, frame, body: str, task_id: str | None = None) -> None:
    """The journal an earlier build of `frame` (its own intent, under its own key) would leave,
    with `body` as the create it sent and `task_id` as the task it got."""
    lines = [{"op": "intent", "key": frame.key, "take": 1, "frame": frame.name,
              "backend": "hiapi", "request": frame.record()},
             {"op": "sent", "key": frame.key, "take": 1, "body": body}]
    if task_id:
        lines.append({"op": "task", "key": frame.key, "take": 1, "task_id": task_id})
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "journal.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def edit_journalled(tmp_path: Path, url: str) -> tuple[Path, Path]:
    """The victim's edit project, and a shared cache whose journal holds a create of its frame
    `e` whose reply was lost, sent with `url` as the input."""
    from nbpipe.backends.hiapi import create_body, wire
    from nbpipe.plan.planner import open_project

    root = project(tmp_path / "victim", EDIT)
    frame = open_project(root).frames["e"]
    cache = tmp_path / "shared"
    journal_of(cache, frame, wire(create_body(frame.request, [url])))
    return root, cache


def test_a_planted_body_with_another_input_url_is_not_resent(tmp_path):
    """The planted body is the victim's edit frame's own but for its input, an attacker's URL:
    resent, the victim would pay for an image of the attacker's input, cached under its key.
    It is set aside; the frame is sent with its own URL."""
    root, cache = edit_journalled(tmp_path, "https://evil.example/x.png")
    with FakeHiApi() as fake:
        code, said = nbpipe(root, hiapi_env(fake, NBPIPE_CACHE_DIR=str(cache)), "build")
        sent = [t.input.get("image_input") for t in fake.tasks.values()]
        assert sent == [["https://example.com/ref.png"]], said[-3000:]
        assert code == 0 and SET_ASIDE.search(said), said[-3000:]


def test_a_journalled_create_of_the_frames_own_url_is_resent_and_said_paid_by_this_build(
        tmp_path):
    """A create whose reply was lost, with the frame's own input URL, is resent (once); the
    summary counts it, and the build says this build pays for it."""
    root, cache = edit_journalled(tmp_path, "https://example.com/ref.png")
    with FakeHiApi() as fake:
        code, said = nbpipe(root, hiapi_env(fake, NBPIPE_CACHE_DIR=str(cache)), "build")
        assert code == 0 and len(fake.tasks) == 1 and not SET_ASIDE.search(said), said
        assert spent(said) == bill(fake), said
        assert "paid for by an earlier build" not in said and "· free" not in said, said
        assert "resent (paid by this build)" in said, said


def test_a_paid_task_whose_body_differs_cosmetically_is_collected_not_paid_again(tmp_path):
    """An earlier build (another nbpipe version, say) journalled frame a's create with other
    whitespace, and got its task: polling is free, so the task is collected into a; only b
    and c are created."""
    from nbpipe.backends.hiapi import create_body
    from nbpipe.plan.planner import open_project

    root = project(tmp_path / "victim", THREE)
    frame = open_project(root).frames["a"]
    body = create_body(frame.request, [])
    cache = tmp_path / "shared"
    with FakeHiApi() as fake:
        task = fake._new_task(json.loads(json.dumps(body)), fake.key)
        journal_of(cache, frame, json.dumps(body, indent=2), task.task_id)
        code, said = nbpipe(root, hiapi_env(fake, NBPIPE_CACHE_DIR=str(cache)), "build")
        assert code == 0 and not SET_ASIDE.search(said), said[-3000:]
        assert len(fake.tasks) == 3 and fake.counts["creates"] == 2, said[-3000:]
