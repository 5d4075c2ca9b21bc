"""Batched generation behind one small interface, with two backends.

    generator.generate(conversations, sampling, progress=...) -> list[Completion]

Each conversation (a list of chat messages) is rendered with the tokenizer's chat template and an open
assistant turn, and one completion is sampled for it. Completions keep their token ids (ending with the
EOS token when the model stopped by itself), so the trainer can score exactly what was sampled.

Both backends tokenise a conversation the same way (`prompt_ids`: the rendered template, no special tokens
added, since the template already holds them) and sample exactly what they are asked: temperature, top-p,
top-k off, min-p off, no repetition penalty are set explicitly, so neither inherits the sampling settings of
the model's generation_config (Qwen2.5 ships repetition_penalty 1.05 and top_k 20).

HFGenerator (CPU or GPU): transformers `generate`, prompts sorted by length and cut into batches of
`batch_size` (left padding), greedy when temperature == 0, else temperature / top-p sampling with a
seed per batch (transformers draws different noise for every row); it stops at any EOS id.
VLLMGenerator (GPU only): Unsloth's `fast_generate` (its colocated vLLM engine), one request per
conversation, each with its own seed derived from the sampling seed. vLLM seeds every request on its
own, so one seed for the batch would make the G identical prompts of a GRPO group (and mining's k
attempts) identical samples. LoRA: the live adapter of a training model (`load_lora(live_dir,
load_tensors=True)`, whose config Unsloth writes into `live_dir`) or a saved adapter folder that vLLM
reads from disk (`load_lora(folder)`, as Unsloth's GRPO notebooks evaluate a saved LoRA).
Both count generated tokens and seconds, so `stats` reports tokens per second.
With `split=True` (mining and evaluation under a launcher; see distributed.py) each rank generates its share
of the one-process plan (HF: every N-th batch, with that batch's seed; vLLM: a block of requests, with their
seeds) and every rank receives all completions in order: the same completions as one process. `stats`
then counts the tokens of all ranks and this rank's seconds.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from r3kit.infra.distributed import gather_in_order, share, world
from r3kit.infra.notebook import progress as tqdm
from r3kit.models.loading import for_inference, for_training, torch

Message = dict[str, str]


@dataclass
class Sampling:
    """How to sample one turn. temperature == 0 means greedy."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def validate(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    prompt_ids: list[int]
    finished: bool  # stopped at EOS rather than at max_new_tokens
    logprobs: list[float] | None = None


@dataclass
class Stats:
    tokens: int = 0
    seconds: float = 0.0
    sequences: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def render(tokenizer, messages: list[Message]) -> str:
    """The chat-template text of `messages` followed by an open assistant turn."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer, messages: list[Message]) -> list[int]:
    """The token ids both backends feed the model: the rendered template, with no special tokens added
    (templates such as Llama 3's already begin with BOS; tokenising the text again would double it)."""
    return tokenizer(render(tokenizer, messages), add_special_tokens=False)["input_ids"]


def stop_ids(model, tokenizer) -> list[int]:
    ids = set()
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (eos if isinstance(eos, list) else [eos]) + [tokenizer.eos_token_id]:
        if isinstance(value, int):
            ids.add(value)
    return sorted(ids)


def request_seeds(sampling: Sampling, n: int) -> list[int | None]:
    """One seed per request, derived from `sampling.seed` (reproducible); None when greedy (no noise)."""
    if sampling.temperature == 0:
        return [None] * n
    return [(sampling.seed * 1_000_003 + i) % 2**62 for i in range(n)]


def hf_sampling_kwargs(sampling: Sampling) -> dict:
    """transformers `generate` arguments that pin the knobs a model's generation_config may set (transformers 5
    fills every argument left as None from it): repetition penalties always; when sampling, the warpers too."""
    fixed = dict(repetition_penalty=1.0, no_repeat_ngram_size=0, num_beams=1)
    if sampling.temperature > 0:
        return {**fixed, "do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0,
                "min_p": 0.0, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}
    return {**fixed, "do_sample": False}


def vllm_sampling_kwargs(sampling: Sampling, seed: int | None, stops: list[int]) -> dict:
    """vLLM SamplingParams arguments with every knob set (top_k -1 = off in every vLLM release)."""
    return dict(n=1, temperature=sampling.temperature, top_p=sampling.top_p, top_k=-1, min_p=0.0,
                repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0, max_tokens=sampling.max_new_tokens,
                seed=seed, logprobs=0, stop_token_ids=stops, skip_special_tokens=True)


@contextlib.contextmanager
def inference_mode(model):
    """Eval mode, KV cache on, no grad; restores training mode afterwards if the model was training."""
    was_training = model.training
    for_inference(model)
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            for_training(model)


@dataclass
class HFGenerator:
    model: object
    tokenizer: object
    batch_size: int = 64
    stats: Stats = field(default_factory=Stats)
    split: bool = False  # share each call's batches among the launcher's processes (distributed.py)

    def generate(self, conversations: list[list[Message]], sampling: Sampling, progress: str | None = None) -> list[Completion]:
        sampling.validate()
        if not conversations:
            return []
        tok = self.tokenizer
        prompts = [prompt_ids(tok, c) for c in conversations]
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        stops = stop_ids(self.model, tok)
        pad = tok.pad_token_id if tok.pad_token_id is not None else stops[0]
        device = next(self.model.parameters()).device
        results: list[Completion | None] = [None] * len(prompts)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        rank, size = world() if self.split else (0, 1)
        mine = [(number, batch) for number, batch in enumerate(batches) if number % size == rank]
        with inference_mode(self.model):
            for number, batch in tqdm(mine, desc=progress, disable=progress is None or rank > 0, leave=False):
                width = max(len(prompts[i]) for i in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
                    mask[row, width - len(prompts[i]) :] = 1
                kwargs = dict(max_new_tokens=sampling.max_new_tokens, eos_token_id=stops, pad_token_id=pad,
                              **hf_sampling_kwargs(sampling))
                if sampling.temperature > 0:
                    torch.manual_seed(sampling.seed * 100_003 + number)
                start = time.perf_counter()
                out = self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
                self.stats.seconds += time.perf_counter() - start
                for row, i in enumerate(batch):
                    results[i] = self._completion(out[row, width:].tolist(), prompts[i], stops)
        if size > 1:
            results = _gathered(self.stats, {i: c for i, c in enumerate(results) if c is not None}, len(prompts))
        return results  # type: ignore[return-value]

    def _completion(self, generated: list[int], prompt: list[int], stops: list[int]) -> Completion:
        end = next((k for k, t in enumerate(generated) if t in stops), None)
        token_ids = generated[: end + 1] if end is not None else generated
        self.stats.tokens += len(token_ids)
        self.stats.sequences += 1
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        return Completion(text=text, token_ids=token_ids, prompt_ids=prompt, finished=end is not None)


def _gathered(stats: Stats, part: dict[int, Completion], n: int) -> list[Completion]:
    """All ranks' completions in order; stats count every rank's tokens (as one process would)."""
    local = sum(len(c.token_ids) for c in part.values())
    results = gather_in_order(part, n)
    stats.tokens += sum(len(c.token_ids) for c in results) - local
    stats.sequences += n - len(part)
    return results


@dataclass
class VLLMGenerator:
    """GPU only: Unsloth's vLLM engine (`FastLanguageModel.from_pretrained(..., fast_inference=True)`).

    `adapter`: a saved LoRA folder to generate with (evaluation). Otherwise a model that carries LoRA
    (training) generates with its live weights, whose adapter config Unsloth writes into `live_lora_dir`
    (a folder of the run, or a temporary one: never the working directory)."""

    model: object
    tokenizer: object
    adapter: str | None = None
    live_lora_dir: str | None = None
    stats: Stats = field(default_factory=Stats)
    split: bool = False  # share each call's requests among the launcher's processes (distributed.py)
    base: bool = False  # generate with the base weights alone, whatever LoRA the model carries

    def lora_request(self):
        if self.base:
            return None
        if self.adapter is not None:  # path mode: vLLM reads the folder itself, once (the request is kept)
            if getattr(self, "_adapter_request", None) is None:
                self._adapter_request = self.model.load_lora(str(self.adapter))
            return self._adapter_request
        if not hasattr(self.model, "peft_config"):
            return None
        if self.live_lora_dir is None:
            import tempfile

            self.live_lora_dir = tempfile.mkdtemp(prefix="r3kit-live-lora-")
        return self.model.load_lora(str(self.live_lora_dir), load_tensors=True)

    def generate(self, conversations: list[list[Message]], sampling: Sampling, progress: str | None = None) -> list[Completion]:
        from vllm import SamplingParams, TokensPrompt

        sampling.validate()
        if not conversations:
            return []
        prompts = [prompt_ids(self.tokenizer, c) for c in conversations]
        stops = stop_ids(self.model, self.tokenizer)
        seeds = request_seeds(sampling, len(prompts))
        rank, size = world() if self.split else (0, 1)
        mine = share(size, len(prompts), rank)
        params = [SamplingParams(**vllm_sampling_kwargs(sampling, seeds[i], stops)) for i in mine]
        lora = self.lora_request()
        start = time.perf_counter()
        outputs = self.model.fast_generate([TokensPrompt(prompt_token_ids=prompts[i]) for i in mine],
                                           sampling_params=params, lora_request=lora, use_tqdm=progress is not None and rank == 0)
        self.stats.seconds += time.perf_counter() - start
        results = []
        for output in outputs:
            sample = output.outputs[0]
            logprobs = (
                [step[token].logprob for token, step in zip(sample.token_ids, sample.logprobs)] if sample.logprobs else None
            )
            self.stats.tokens += len(sample.token_ids)
            self.stats.sequences += 1
            results.append(Completion(
                text=sample.text, token_ids=list(sample.token_ids), prompt_ids=list(output.prompt_token_ids),
                finished=sample.finish_reason == "stop", logprobs=logprobs,
            ))
        if size > 1:
            results = _gathered(self.stats, dict(zip(mine, results)), len(prompts))
        return results


@dataclass
class AdapterOffGenerator(HFGenerator):
    """transformers generation with a PEFT model's adapter switched off (peft's `disable_adapter`): the base model."""

    def generate(self, conversations: list[list[Message]], sampling: Sampling, progress: str | None = None) -> list[Completion]:
        with self.model.disable_adapter():
            return super().generate(conversations, sampling, progress)


def base_generator(model, tokenizer, batch_size: int = 64, split: bool = False):
    """A generator of the base model under `model`'s LoRA adapter (vLLM: no LoRA request; transformers: the
    adapter switched off), or None when `model` carries no adapter (fully fine-tuned weights: load the base
    model by itself). One model in memory serves both, as the frozen retrier needs (eval/evaluate.py)."""
    if getattr(model, "vllm_engine", None) is not None:
        carries = getattr(model, "r3kit_adapter", None) is not None or hasattr(model, "peft_config")
        return VLLMGenerator(model, tokenizer, split=split, base=True) if carries else None
    if hasattr(model, "peft_config") and hasattr(model, "disable_adapter"):
        return AdapterOffGenerator(model, tokenizer, batch_size=batch_size, split=split)
    return None


def make_generator(model, tokenizer, batch_size: int = 64, backend: str = "auto", live_lora_dir: str | None = None,
                   split: bool = False):
    """vLLM when the model carries Unsloth's vLLM engine (and backend allows it), else transformers.
    A model loaded with a saved adapter for vLLM (`load_model(..., adapter=)`) generates with that adapter.
    `split`: share every call among the launcher's processes (mining and evaluation; never the trainer's
    rollout, whose prompts TRL has already shared out)."""
    if backend not in ("auto", "hf", "vllm"):
        raise ValueError(f"generation backend must be auto, hf or vllm, got {backend!r}")
    has_vllm = getattr(model, "vllm_engine", None) is not None
    if backend == "vllm" and not has_vllm:
        raise ValueError("backend='vllm' needs a model loaded with fast_inference=True on a GPU")
    if has_vllm and backend != "hf":
        return VLLMGenerator(model, tokenizer, adapter=getattr(model, "r3kit_adapter", None), live_lora_dir=live_lora_dir,
                             split=split)
    return HFGenerator(model, tokenizer, batch_size=batch_size, split=split)
