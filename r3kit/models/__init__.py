"""Models: loading (Unsloth, or plain transformers + PEFT), the character model the CPU students use, batched
generation (transformers, or Unsloth's vLLM engine) and the `trl vllm-serve` client.
"""
