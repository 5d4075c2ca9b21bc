"""Generation through a separate vLLM server (TRL's VLLMClient), for models too large to train and sample on
the same cards: the kit's path for DeepSpeed ZeRO-3 and several nodes (docs/gpu.md).

Layout: `trl vllm-serve --model M` on some GPUs; the trainer on the others under accelerate, with
train.vllm_server = "http://host:8000" (GRPOConfig use_vllm=True, vllm_mode="server"). TRL pushes the
current weights to the server before every step's rollout (LoRA merged; parameters gathered under
ZeRO-3), as for its own generation. The R3 rollout (train.py) then asks the server for the reflections
and retries through ServerGenerator, one `generate` call per turn:
    1. every rank sends its conversations' token ids to the main process (only it holds TRL's client);
    2. the main process collapses each run of identical prompts (a GRPO group's G copies; mining's k) into
       one prompt with n = the run's length, one request per distinct n. vLLM seeds each prompt of a
       request alike, so G copies of a prompt under one seed would be G identical samples, while n = G
       samples G different ones. The seed moves with the sampling seed (the step) and the request.
       Greedy turns (vLLM refuses n > 1 without sampling) send each distinct prompt once, with n = 1,
       and its one answer serves the whole run;
    3. the completions go back to every rank, which keeps its own rows: the same Completion (token ids,
       text, logprobs) as the in-process generators give, so rewards and masks are computed alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from r3kit.infra.distributed import _state, world
from r3kit.models.generation import Completion, Message, Sampling, Stats, prompt_ids, stop_ids


def runs(prompts: list[list[int]]) -> list[tuple[int, int]]:
    """(start, length) of each run of consecutive identical prompts."""
    out: list[tuple[int, int]] = []
    for i, prompt in enumerate(prompts):
        if out and prompts[out[-1][0]] == prompt:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((i, 1))
    return out


def request_kwargs(sampling: Sampling, n: int, seed: int | None, stops: list[int]) -> dict:
    """VLLMClient.generate arguments with every sampling knob set (vLLM's OpenAI server defaults are not ours)."""
    extra = {"stop_token_ids": stops, "skip_special_tokens": True}
    if seed is not None:
        extra["seed"] = seed
    return dict(n=n, temperature=sampling.temperature, top_p=sampling.top_p, top_k=-1, min_p=0.0,
                repetition_penalty=1.0, max_tokens=sampling.max_new_tokens, logprobs=0, generation_kwargs=extra)


def ask(client, prompts: list[list[int]], sampling: Sampling, stops: list[int]) -> list[tuple[list[int], list | None]]:
    """(completion ids, per-token logprobs) for every prompt, in order, from as few requests as the runs allow."""
    spans = runs(prompts)
    greedy = sampling.temperature == 0
    by_n: dict[int, list[tuple[int, int]]] = {}
    for start, length in spans:
        by_n.setdefault(1 if greedy else length, []).append((start, length))
    out: list[tuple[list[int], list | None] | None] = [None] * len(prompts)
    for number, (n, group) in enumerate(sorted(by_n.items())):
        seed = None if greedy else (sampling.seed * 1_000_003 + number) % 2**62
        answer = client.generate(prompts=[prompts[start] for start, _ in group], **request_kwargs(sampling, n, seed, stops))
        ids, logprobs = answer["completion_ids"], answer.get("logprobs")
        if len(ids) != len(group) * n:
            raise RuntimeError(f"the vLLM server returned {len(ids)} completions for {len(group)} prompts x n={n}")
        for j, (start, length) in enumerate(group):
            for k in range(length):
                row = j * n + (0 if greedy else k)  # prompt-major: the n samples of a prompt are consecutive
                lp = [step[0] for step in logprobs[row]] if logprobs is not None else None
                out[start + k] = (list(ids[row]), lp)
    return out  # type: ignore[return-value]


@dataclass
class ServerGenerator:
    """The generator interface (generation.py) over TRL's VLLMClient. `client` is needed on the main process
    only; under a launcher every rank calls `generate` together (a collective, like TRL's own server path)."""

    client: object | None
    tokenizer: object
    model: object = None  # for its generation_config's EOS ids (stop_ids); None: the tokenizer's EOS
    stats: Stats = field(default_factory=Stats)

    def generate(self, conversations: list[list[Message]], sampling: Sampling, progress: str | None = None) -> list[Completion]:
        sampling.validate()
        prompts = [prompt_ids(self.tokenizer, c) for c in conversations]
        stops = stop_ids(self.model, self.tokenizer) if self.model is not None else [self.tokenizer.eos_token_id]
        rank, size = world()
        start = time.perf_counter()
        if size == 1:
            answers = ask(self.client, prompts, sampling, stops) if prompts else []
        else:
            answers = _collective(self.client, prompts, sampling, stops, rank)
        self.stats.seconds += time.perf_counter() - start
        results = []
        for prompt, (ids, logprobs) in zip(prompts, answers):
            end = next((k for k, t in enumerate(ids) if t in stops), None)
            ids = ids[: end + 1] if end is not None else ids
            self.stats.tokens += len(ids)
            self.stats.sequences += 1
            results.append(Completion(text=self.tokenizer.decode(ids, skip_special_tokens=True), token_ids=ids,
                                      prompt_ids=prompt, finished=end is not None,
                                      logprobs=logprobs[: len(ids)] if logprobs is not None else None))
        return results


def _collective(client, prompts: list[list[int]], sampling: Sampling, stops: list[int], rank: int):
    """Every rank's prompts to the main process, one set of requests there, each rank's answers back."""
    from accelerate.utils import broadcast_object_list, gather_object


    _state()
    parts = gather_object([prompts])  # rank order
    payload: list = [None]
    if rank == 0:
        flat = [p for part in parts for p in part]
        try:
            answers = ask(client, flat, sampling, stops) if flat else []
        except Exception as error:  # every rank raises it, rather than waiting for answers that never come
            payload = [("error", f"{type(error).__name__}: {error}")]
        else:
            bounds, at = [], 0
            for part in parts:
                bounds.append((at, at + len(part)))
                at += len(part)
            payload = [[answers[a:b] for a, b in bounds]]
    broadcast_object_list(payload, from_process=0)
    if isinstance(payload[0], tuple):
        raise RuntimeError(f"the vLLM server request failed on the main process: {payload[0][1]}")
    return payload[0][rank]
