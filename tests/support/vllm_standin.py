"""A CPU stand-in for vLLM's offline engine as Unsloth attaches it, keeping the real libraries' semantics.

Read from the sources (vllm: sampling_params.py, entrypoints/llm.py, v1 sampler and parallel_sampling.py,
outputs.py, logprobs.py, lora/request.py; unsloth 2026.10.9: models/llama.py and
models/_utils.py::patch_peft_fast_inference; unsloth_zoo 2026.10.9: vllm_utils.py::load_lora):

* SamplingParams: temperature < 1e-5 is greedy (top_p, top_k, min_p reset; n > 1 refused); a request
  with a seed samples from its own torch.Generator seeded with it, so the same prompt with the same seed
  gives the same sample, whatever else is in the batch; n > 1 splits into n child requests seeded
  seed + index, so they differ; seed None draws from the engine's global generator (fresh randomness).
* LLM.generate(prompts, sampling_params=None, use_tqdm=True, lora_request=None): prompts are text, which
  is tokenised with the tokenizer's defaults (add_special_tokens=True, so a template that holds BOS gets a
  second one), or TokensPrompt dicts, used as given; sampling_params is one for all or a list of the same
  length (else ValueError); None means the model's generation_config defaults (repetition_penalty,
  temperature, top_k, top_p); a user's SamplingParams is used as given, except that the model's EOS ids
  always stop. Outputs come back in input order; a stop token stays in token_ids but not in text;
  finish_reason is "stop" or "length"; logprobs=0 gives one {token: Logprob} dict per token (raw logits).
* LoRA: a LoRARequest names a folder vLLM reads (path mode) or carries tensors (Unsloth's tensor mode);
  a rank above max_lora_rank is refused; adapters are cached by lora_int_id (a new id reloads).
* Unsloth: from_pretrained(fast_inference=True) attaches `vllm_engine` and `fast_generate` (the engine's
  generate, on the base weights: no LoRA unless a lora_request is passed); `load_lora` is attached by
  Unsloth's own PEFT wrapping of such a model (get_peft_model; peft's PeftModel.from_pretrained has none); load_lora(folder) needs the folder to exist, load_lora(folder,
  load_tensors=True) writes the live adapter_config.json into folder and sends the live tensors; every
  call takes a new request id.

The engine runs a real (tiny) transformers model token by token; nothing here knows r3kit's code.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import sys
import types
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch

GREEDY_EPS = 1e-5
SUPPORTED_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


@dataclass
class SamplingParams:
    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop_token_ids: list[int] | None = None
    max_tokens: int | None = 16
    logprobs: int | None = None
    skip_special_tokens: bool = True

    def __post_init__(self):
        if self.stop_token_ids is None:
            self.stop_token_ids = []
        if not 0 <= self.temperature <= 2 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0:
            raise ValueError(f"invalid sampling parameters: {self}")
        if self.top_k < -1 or self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"invalid top_k or max_tokens: {self}")
        if self.temperature < GREEDY_EPS:
            self.top_p, self.top_k, self.min_p = 1.0, 0, 0.0
            if self.n > 1:
                raise ValueError(f"n must be 1 when using greedy sampling, got {self.n}")


def TokensPrompt(prompt_token_ids: list[int]) -> dict:  # noqa: N802 (vLLM's TypedDict is called like this)
    return {"prompt_token_ids": list(prompt_token_ids)}


@dataclass
class LoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str = ""
    lora_tensors: dict | None = None
    lora_config: dict | None = None


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict] | None
    finish_reason: str | None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool = True


@dataclass
class LLM:
    """vLLM's engine over a copy of a transformers model's base weights."""

    model: object
    tokenizer: object
    max_lora_rank: int = 16
    seed: int = 0
    calls: list = field(default_factory=list)
    _loras: dict = field(default_factory=dict)

    def __post_init__(self):
        self.global_generator = torch.Generator().manual_seed(self.seed)
        self.max_lora_rank = next(r for r in SUPPORTED_RANKS if r >= self.max_lora_rank)

    def get_default_sampling_params(self) -> SamplingParams:
        config = self.model.generation_config
        diff = {name: getattr(config, name) for name in ("repetition_penalty", "temperature", "top_k", "top_p")
                if getattr(config, name, None) is not None}
        return SamplingParams(**diff)

    def generate(self, prompts, sampling_params=None, use_tqdm=True, lora_request=None):
        if getattr(self, "deleted", False):
            raise RuntimeError("this vLLM engine was deleted (unsloth_zoo.vllm_utils.delete_vllm)")
        prompts = prompts if isinstance(prompts, list) else [prompts]
        if sampling_params is None:
            sampling_params = self.get_default_sampling_params()
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError("The lengths of prompts and params must be the same.")
        model = self._with_lora(lora_request)
        self.calls.append({"prompts": prompts, "params": params, "lora_request": lora_request})
        outputs = []
        for request_id, (prompt, param) in enumerate(zip(prompts, params)):
            if isinstance(prompt, str):
                ids, text = self.tokenizer.encode(prompt), prompt
            else:
                ids, text = list(prompt["prompt_token_ids"]), None
            children = []
            for index in range(param.n):
                generator = (torch.Generator().manual_seed(param.seed + index) if param.seed is not None
                             else self.global_generator)
                children.append(self._sample(model, ids, param, generator, index))
            outputs.append(RequestOutput(str(request_id), text, ids, children))
        return outputs

    def _stops(self, param: SamplingParams) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        return set(param.stop_token_ids) | set(eos if isinstance(eos, list) else [eos] if eos is not None else [])

    @torch.no_grad()
    def _sample(self, model, prompt: list[int], param: SamplingParams, generator, index: int) -> CompletionOutput:
        ids, out, logprobs, finish = list(prompt), [], [], "length"
        stops = self._stops(param)
        device, past, feed = next(model.parameters()).device, None, list(prompt)
        for _ in range(param.max_tokens):
            step = model(torch.tensor([feed], device=device), past_key_values=past, use_cache=True)
            past = step.past_key_values
            raw = step.logits[0, -1].float().cpu()
            logits = raw.clone()
            if param.repetition_penalty != 1.0:
                seen = torch.tensor(sorted(set(ids)))
                picked = logits[seen]
                logits[seen] = torch.where(picked > 0, picked / param.repetition_penalty, picked * param.repetition_penalty)
            if param.temperature < GREEDY_EPS:
                token = int(torch.argmax(logits))
            else:
                probs = self._filtered(logits / param.temperature, param).softmax(-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            if param.logprobs is not None:
                raw_logprobs = raw.log_softmax(-1)
                rank = int((raw_logprobs > raw_logprobs[token]).sum()) + 1
                logprobs.append({token: Logprob(float(raw_logprobs[token]), rank, self.tokenizer.decode([token]))})
            out.append(token)
            ids.append(token)
            feed = [token]
            if token in stops:
                finish = "stop"
                break
        visible = out[:-1] if finish == "stop" else out
        text = self.tokenizer.decode(visible, skip_special_tokens=param.skip_special_tokens)
        cumulative = sum(next(iter(step.values())).logprob for step in logprobs) if param.logprobs is not None else None
        return CompletionOutput(index, text, out, cumulative, logprobs if param.logprobs is not None else None, finish)

    @staticmethod
    def _filtered(logits, param: SamplingParams):
        if param.top_k > 0:
            kth = torch.topk(logits, min(param.top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < kth, -math.inf)
        if param.top_p < 1.0:
            ordered, order = logits.sort(descending=True)
            cumulative = ordered.softmax(-1).cumsum(-1)
            drop = cumulative - ordered.softmax(-1) > param.top_p
            logits = logits.clone()
            logits[order[drop]] = -math.inf
        if param.min_p > 0:
            probs = logits.softmax(-1)
            logits = logits.masked_fill(probs < param.min_p * probs.max(), -math.inf)
        return logits

    def _with_lora(self, request: LoRARequest | None):
        if request is None:
            return self.model
        if request.lora_int_id < 1:
            raise ValueError("lora_int_id must be > 0")
        if request.lora_int_id in self._loras:
            return self._loras[request.lora_int_id]
        from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict

        if request.lora_tensors is not None:
            config = LoraConfig(**{k: v for k, v in request.lora_config.items() if k in LoraConfig.__dataclass_fields__})
            if config.r > self.max_lora_rank:
                raise ValueError(f"LoRA rank {config.r} is greater than max_lora_rank {self.max_lora_rank}.")
            model = get_peft_model(copy.deepcopy(self.model), config)
            set_peft_model_state_dict(model, request.lora_tensors)
        else:
            path = Path(request.lora_path)
            if not (path / "adapter_config.json").exists():
                raise ValueError(f"No adapter found for {request.lora_path}")
            rank = json.loads((path / "adapter_config.json").read_text())["r"]
            if rank > self.max_lora_rank:
                raise ValueError(f"LoRA rank {rank} is greater than max_lora_rank {self.max_lora_rank}.")
            model = PeftModel.from_pretrained(copy.deepcopy(self.model), str(path))
        model.eval()
        self._loras[request.lora_int_id] = model
        return model


# ---- Unsloth's side ------------------------------------------------------------------------------------
_next_lora_id = [1]


def load_lora(model, save_directory, load_tensors=False, lora_request_id=None):
    """unsloth_zoo.vllm_utils.load_lora: a new LoRARequest per call, by path or with the live tensors."""
    request_id = _next_lora_id[0] if lora_request_id is None else lora_request_id
    if load_tensors:
        config = model.peft_config["default"]
        config.save_pretrained(save_directory)
        live = {k.replace(".default", ""): v.detach().clone() for k, v in model.state_dict().items()
                if ".lora_A." in k or ".lora_B." in k}
        config_dict = json.loads((Path(save_directory) / "adapter_config.json").read_text())
        request = LoRARequest(str(request_id), request_id, lora_tensors=live, lora_config=config_dict)
    else:
        if not Path(save_directory).exists():
            raise OSError(f"Unsloth: LoRA filepath = {save_directory} does not exist!")
        request = LoRARequest(str(request_id), request_id, str(save_directory))
    _next_lora_id[0] += 1
    return request


class FastLanguageModelStandIn:
    """Unsloth's FastLanguageModel with `fast_inference=True` honoured on CPU: the real Unsloth CPU path
    loads the model, and a stand-in vLLM engine is attached where Unsloth attaches its own."""

    def __init__(self, real):
        self.real = real
        self.engines = []  # weak references: a stage that really frees its engine leaves a dead one
        self.deleted = 0

    def from_pretrained(self, model_name, fast_inference=False, gpu_memory_utilization=0.5, max_lora_rank=64, **kwargs):
        model, tokenizer = self.real.from_pretrained(model_name, **kwargs)
        if fast_inference:
            engine = LLM(copy.deepcopy(model).eval(), tokenizer, max_lora_rank=max_lora_rank)
            self.engines.append(weakref.ref(engine))
            model.vllm_engine = engine
            model.fast_generate = engine.generate
        return model, tokenizer

    def get_peft_model(self, model, *args, **kwargs):
        engine = getattr(model, "vllm_engine", None)
        if engine is not None:  # hidden from the real get_peft_model, whose GPU path would import the real vLLM
            del model.vllm_engine, model.fast_generate
        peft = self.real.get_peft_model(model, *args, **kwargs)
        if engine is not None:  # patch_peft_fast_inference
            model.vllm_engine, model.fast_generate = engine, engine.generate
            peft.vllm_engine, peft.fast_generate = engine, engine.generate
            peft.load_lora = functools.partial(load_lora, peft)
        return peft

    def __getattr__(self, name):
        return getattr(self.real, name)


def install(monkeypatch) -> FastLanguageModelStandIn:
    """Put the stand-in where r3kit looks for vLLM and Unsloth; returns the FastLanguageModel stand-in."""
    import r3kit.models.loading

    stand_in = FastLanguageModelStandIn(r3kit.models.loading.fast_language_model())
    # TRL's own vLLM integration stays off (r3kit generates in its rollout): let TRL import as it would on a
    # machine without vLLM before the stand-in module appears.
    from trl import GRPOConfig, GRPOTrainer  # noqa: F401

    vllm = types.ModuleType("vllm")
    vllm.SamplingParams, vllm.TokensPrompt, vllm.LLM = SamplingParams, TokensPrompt, LLM
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = LoRARequest
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", lora)
    monkeypatch.setitem(sys.modules, "vllm.lora.request", request)
    monkeypatch.setattr(r3kit.models.loading, "fast_language_model", lambda: stand_in)
    monkeypatch.setattr(r3kit.models.loading, "vllm_available", lambda: True)
    def delete_engine(engine):
        engine.deleted = True
        stand_in.deleted += 1

    monkeypatch.setattr(r3kit.models.loading, "delete_engine", delete_engine)
    return stand_in
