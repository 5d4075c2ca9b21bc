"""The vLLM-server path (ServerGenerator over TRL's VLLMClient) against a stand-in client that keeps the real
client's and server's semantics (tests/support/vllm_server_standin.py): how many requests, with which prompts and
sampling, and that the returned ids become the completions as on the in-process path."""

import types

import pytest
import vllm_standin
from vllm_server_standin import VLLMClientStandIn

from r3kit.core.episodes import reflection_conversation, retry_conversation
from r3kit.core.trainer import TrainConfig, make_rollout
from r3kit.models.generation import HFGenerator, Sampling, prompt_ids
from r3kit.models.vllm_server import ServerGenerator, runs
from r3kit.tasks import get_task

TASK = get_task("countdown", style="compact")


@pytest.fixture
def served(tiny):
    model, tokenizer = tiny
    return VLLMClientStandIn(vllm_standin.LLM(model, tokenizer)), model, tokenizer


def test_runs_of_identical_prompts():
    assert runs([[1], [1], [2], [1], [1], [1]]) == [(0, 2), (2, 1), (3, 3)]
    assert runs([]) == []


def test_a_group_is_one_request_with_n_and_its_samples_differ(served):
    client, model, tokenizer = served
    generator = ServerGenerator(client, tokenizer, model)
    convo = [{"role": "user", "content": "37 49 5 = 60"}]
    group = [convo] * 4 + [[{"role": "user", "content": "3 4 5 = 17"}]] * 4
    out = generator.generate(group, Sampling(max_new_tokens=10, temperature=1.0, seed=3))
    assert len(client.calls) == 1 and client.calls[0]["n"] == 4 and len(client.calls[0]["prompt"]) == 2
    assert client.calls[0]["prompt"][0] == prompt_ids(tokenizer, convo)  # token ids, as rendered for the other backends
    assert client.calls[0]["temperature"] == 1.0 and client.calls[0]["max_tokens"] == 10 and "seed" in client.calls[0]
    assert len({tuple(o.token_ids) for o in out[:4]}) > 1 and len({tuple(o.token_ids) for o in out[4:]}) > 1
    again = ServerGenerator(client, tokenizer, model).generate(group, Sampling(max_new_tokens=10, temperature=1.0, seed=3))
    other = ServerGenerator(client, tokenizer, model).generate(group, Sampling(max_new_tokens=10, temperature=1.0, seed=4))
    assert [o.token_ids for o in again] == [o.token_ids for o in out] != [o.token_ids for o in other]
    assert all(o.logprobs is not None and len(o.logprobs) == len(o.token_ids) for o in out)


def test_greedy_server_and_transformers_agree_token_for_token(served):
    client, model, tokenizer = served
    conversations = [[{"role": "user", "content": f"{a} 4 5 = 17"}] for a in range(3, 9)]
    greedy = Sampling(max_new_tokens=12, temperature=0.0)
    server = ServerGenerator(client, tokenizer, model).generate(conversations, greedy)
    local = HFGenerator(model, tokenizer, batch_size=1).generate(conversations, greedy)
    assert [o.token_ids for o in server] == [o.token_ids for o in local]
    assert [o.text for o in server] == [o.text for o in local] and [o.finished for o in server] == [o.finished for o in local]
    assert "seed" not in client.calls[0] and client.calls[0]["n"] == 1
    # greedy runs of identical prompts (two identical reflections lead to two identical retry prompts): vLLM
    # refuses n > 1 without sampling, so each distinct prompt goes once and its answer serves the run
    repeated = [conversations[0]] * 3 + [conversations[1]] * 2
    out = ServerGenerator(client, tokenizer, model).generate(repeated, greedy)
    assert client.calls[-1]["n"] == 1 and len(client.calls[-1]["prompt"]) == 2
    assert [o.token_ids for o in out] == [server[0].token_ids] * 3 + [server[1].token_ids] * 2


def test_the_server_rollout_requests_reflections_and_retries_and_trains_the_returned_ids(served):
    client, model, tokenizer = served
    cfg = TrainConfig(problems_per_step=2, group_size=4, micro_batch_size=4, reflection_tokens=8, retry_tokens=6,
                      temperature=1.0, retry_temperature=0.0, report_to="none")
    examples = [{"target": 7, "nums": [7, 1, 2]}, {"target": 9, "nums": [9, 1, 2]}]
    heads = [reflection_conversation(TASK, e, "<answer>1</answer>") for e in examples]
    prompts = [h for h in heads for _ in range(4)]  # TRL repeats each prompt group_size times in a row
    log: dict = {}
    trainer = types.SimpleNamespace(model=model, processing_class=tokenizer, state=types.SimpleNamespace(global_step=0),
                                    accelerator=types.SimpleNamespace(unwrap_model=lambda m: m))
    rollout = make_rollout(TASK, cfg, log, "unused", lambda m, tok, **_: ServerGenerator(client, tok, m))
    out = rollout(prompts, trainer)
    reflections, retries = client.calls
    assert reflections["n"] == 4 and reflections["prompt"] == [prompt_ids(tokenizer, h) for h in heads]
    assert reflections["temperature"] == cfg.temperature and reflections["max_tokens"] == cfg.reflection_tokens
    assert retries["n"] == 1 and retries["temperature"] == 0.0 and retries["max_tokens"] == cfg.retry_tokens
    # the trained completion is exactly what the server returned for each reflection, in order
    assert out["completion_ids"] == client.answers[0]["completion_ids"]
    assert out["logprobs"] == [[step[0] for step in seq] for seq in client.answers[0]["logprobs"]]
    assert out["prompt_ids"] == [prompt_ids(tokenizer, p) for p in prompts]
    assert len({tuple(ids) for ids in out["completion_ids"][:4]}) > 1  # G different reflections per group
    texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in out["completion_ids"]]
    assert out["reflection_text"] == texts
    expected_retries = [prompt_ids(tokenizer, retry_conversation(TASK, p, t)) for p, t in zip(prompts, texts)]
    assert retries["prompt"] == expected_retries  # each retry follows its own reflection
    assert len(out["judged_text"]) == 8 and all(len(lp) == len(ids) for lp, ids in zip(out["logprobs"], out["completion_ids"]))
    trainer.state.global_step = 1
    later = rollout(prompts, trainer)
    assert later["completion_ids"] != out["completion_ids"]  # the next step samples afresh (the seed moves with it)


def test_server_mode_is_trl_server_mode_and_needs_gpus(tmp_path):
    from trl import GRPOConfig

    from r3kit.core.trainer import server_arguments

    cfg = TrainConfig(vllm_server="http://10.0.0.2:8000", report_to="none")
    cfg.validate()
    with pytest.raises(ValueError, match="needs GPUs"):
        server_arguments(cfg, on_gpu=False)
    served = server_arguments(cfg, on_gpu=True)
    assert served == {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": "http://10.0.0.2:8000"}
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, num_generations=2, per_device_train_batch_size=2, **served)
    assert (args.use_vllm, args.vllm_mode, args.vllm_server_base_url) == (True, "server", "http://10.0.0.2:8000")
    assert server_arguments(TrainConfig(report_to="none"), on_gpu=False) == {}
    with pytest.raises(ValueError, match="base URL"):
        TrainConfig(vllm_server="10.0.0.2:8000", report_to="none").validate()
