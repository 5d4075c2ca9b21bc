"""Shrunk random models of the paper's architectures, written locally, for the CPU rehearsal of GPU profiles.

Each keeps what can break a profile: the architecture class (Qwen2, Llama with Llama 3.1's rope scaling,
Phi-3 with fused qkv/gate_up projections and long-rope), the attention heads' grouping ratio, tied or untied
embeddings, the EOS list of the generation config, and a chat template with the same structure and special
tokens as the real model's (Qwen's default system prompt, Llama 3.1's BOS inside the template and its header
tokens, Phi-3.5's <|end|> turns), over a byte-level tokenizer. Widths shrink to a few dozen, layers to two.
Values follow each model's published config.json; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nSYSTEM<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA31_TEMPLATE = (
    "{{- bos_token }}{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}{{- 'Cutting Knowledge Date: December 2023\\n' }}"
    "{{- 'Today Date: 26 Jul 2024\\n\\n' }}{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' "
    "+ message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
PHI35_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
    "{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"
)

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
FAMILIES = {
    # family: (architecture, template, special tokens, eos token, pad token, bos token, EOS ids named by the generation config)
    "qwen2.5": ("qwen2", QWEN_TEMPLATE.replace("SYSTEM", "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
                QWEN_SPECIALS, "<|im_end|>", "<|endoftext|>", None, ["<|im_end|>", "<|endoftext|>"]),
    "qwen2": ("qwen2", QWEN_TEMPLATE.replace("SYSTEM", "You are a helpful assistant."), QWEN_SPECIALS, "<|im_end|>",
              "<|endoftext|>", None, ["<|im_end|>", "<|endoftext|>"]),
    "llama3.1": ("llama", LLAMA31_TEMPLATE, ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                            "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>"],
                 "<|eot_id|>", None, "<|begin_of_text|>", ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"]),
    "phi3.5": ("phi3", PHI35_TEMPLATE, ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
               "<|endoftext|>", "<|endoftext|>", None, ["<|end|>", "<|endoftext|>"]),
}
# short name (as in r3kit.runs.gpu_profiles.MODELS) -> (family, attention heads, key/value heads, tied embeddings)
SHAPES = {
    "qwen2.5-1.5b": ("qwen2.5", 12, 2, True), "qwen2.5-3b": ("qwen2.5", 16, 2, True),
    "qwen2.5-7b": ("qwen2.5", 28, 4, False), "qwen2-1.5b": ("qwen2", 12, 2, True), "qwen2-7b": ("qwen2", 28, 4, False),
    "llama3.1-8b": ("llama3.1", 32, 8, False), "phi3.5-mini": ("phi3.5", 32, 32, False),
}
HEAD_DIM = 8


def tokenizer_for(family: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    _, template, specials, eos, pad, bos, _ = FAMILIES[family]
    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(specials + chars)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(specials)
    if bos is not None:  # Llama 3's tokenizer prepends BOS to any text it encodes with special tokens
        core.post_processor = TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab[bos])])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=eos, pad_token=pad, bos_token=bos)
    tokenizer.chat_template = template
    return tokenizer


def build(short: str, folder: str | Path) -> Path:
    """Write a shrunk random model of `short`'s architecture (and its tokenizer) to folder."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, Phi3Config, Qwen2Config

    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    family, heads, kv_heads, tied = SHAPES[short]
    arch, *_, eos_names = FAMILIES[family]
    tokenizer = tokenizer_for(family)
    ratio = heads // kv_heads
    kv = 1 if ratio > 1 else 4
    n_heads = kv * ratio
    hidden = n_heads * HEAD_DIM
    common = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                  num_attention_heads=n_heads, num_key_value_heads=kv, tie_word_embeddings=tied,
                  eos_token_id=tokenizer.convert_tokens_to_ids(eos_names[-1]),
                  pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else None)
    if arch == "qwen2":
        config = Qwen2Config(**common, max_position_embeddings=32768, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
                             use_sliding_window=False)
    elif arch == "llama":
        config = LlamaConfig(**common, max_position_embeddings=131072, rms_norm_eps=1e-5,
                             bos_token_id=tokenizer.bos_token_id,
                             rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                              "original_max_position_embeddings": 8192})
    else:
        half = HEAD_DIM // 2
        config = Phi3Config(**common, max_position_embeddings=131072, original_max_position_embeddings=4096,
                            rms_norm_eps=1e-5, sliding_window=262144,
                            rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                             "short_factor": [1.0 + 0.01 * i for i in range(half)],
                                             "long_factor": [1.0 + 0.5 * i for i in range(half)],
                                             "original_max_position_embeddings": 4096})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids(name) for name in eos_names],
        pad_token_id=common["pad_token_id"], bos_token_id=tokenizer.bos_token_id,
        # what the real models ship and a sampler must not inherit
        do_sample=True, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
