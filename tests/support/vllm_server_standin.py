"""A CPU stand-in for TRL 1.15's VLLMClient talking to vLLM's OpenAI-compatible server (`trl vllm-serve`),
keeping the real semantics, read from trl/generation/vllm_client.py (VLLMClient.generate, lines 346-442) and
vLLM's completions endpoint:

* generate(prompts, features=None, n=1, repetition_penalty=1.0, temperature=1.0, top_p=1.0, top_k=0,
  min_p=0.0, max_tokens=16, logprobs=0, structured_outputs_regex=None, generation_kwargs=None) sends ONE
  request body {"prompt": prompts, n, repetition_penalty, temperature, top_p, top_k, min_p, max_tokens,
  logprobs, **generation_kwargs}: generation_kwargs goes in last and overrides the named fields; there is no
  seed argument (a `seed` in generation_kwargs is the request's seed).
* prompts are text or token-id lists; every prompt of the body becomes its own engine request with the same
  sampling parameters, so the same prompt twice under one seed gives the same sample, while n > 1 children
  are seeded seed + index (vLLM's parallel sampling) and differ.
* the answer: prompt_ids (one per prompt, not repeated n times), completion_ids (len(prompts) * n,
  prompt-major: the n samples of a prompt are consecutive, stop token kept), logprobs shaped
  (sequence, token, 1) with logprobs=0, logprob_token_ids alike.

The engine is vllm_standin.LLM: a real (tiny) transformers model sampled token by token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import vllm_standin


@dataclass
class VLLMClientStandIn:
    engine: vllm_standin.LLM
    calls: list = field(default_factory=list)
    answers: list = field(default_factory=list)

    def generate(self, prompts, features=None, n=1, repetition_penalty=1.0, temperature=1.0, top_p=1.0, top_k=0,
                 min_p=0.0, max_tokens=16, logprobs=0, structured_outputs_regex=None, generation_kwargs=None):
        if features is not None or structured_outputs_regex is not None:
            raise NotImplementedError("not used by r3kit")
        body = {"prompt": prompts, "n": n, "repetition_penalty": repetition_penalty, "temperature": temperature,
                "top_p": top_p, "top_k": top_k, "min_p": min_p, "max_tokens": max_tokens, "logprobs": logprobs,
                **(generation_kwargs or {})}
        self.calls.append(body)
        params = vllm_standin.SamplingParams(
            n=body["n"], temperature=body["temperature"], top_p=body["top_p"], top_k=body["top_k"], min_p=body["min_p"],
            repetition_penalty=body["repetition_penalty"], max_tokens=body["max_tokens"], logprobs=body["logprobs"],
            seed=body.get("seed"), stop_token_ids=body.get("stop_token_ids"),
            skip_special_tokens=body.get("skip_special_tokens", True))
        requests = [p if isinstance(p, str) else vllm_standin.TokensPrompt(p) for p in body["prompt"]]
        outputs = self.engine.generate(requests, sampling_params=params, use_tqdm=False)
        choices = [c for o in outputs for c in o.outputs]
        lps = None if body["logprobs"] is None else [
            [[step[token].logprob] for token, step in zip(c.token_ids, c.logprobs)] for c in choices]
        ids = None if lps is None else [[[token] for token in c.token_ids] for c in choices]
        answer = {"prompt_ids": [list(o.prompt_token_ids) for o in outputs],
                  "completion_ids": [list(c.token_ids) for c in choices], "logprobs": lps, "logprob_token_ids": ids}
        self.answers.append(answer)
        return answer
