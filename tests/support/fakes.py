"""A scripted generator: deterministic text from a function of the conversation, with real token ids, so
rollout, mining, evaluation and the trainer can be checked exactly without depending on what a random
model happens to write."""

from __future__ import annotations

from dataclasses import dataclass, field

from r3kit.models.generation import Completion, Stats, prompt_ids


@dataclass
class ScriptedGenerator:
    tokenizer: object
    script: object  # callable(conversation) -> text
    calls: list = field(default_factory=list)
    fail_after: int | None = None  # raise on the call after this many (a simulated crash)
    stats: Stats = field(default_factory=Stats)

    def generate(self, conversations, sampling, progress=None):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls.append([list(c) for c in conversations])
        out = []
        for conversation in conversations:
            text = self.script(conversation)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][: sampling.max_new_tokens - 1]
            ids = ids + [self.tokenizer.eos_token_id]
            prompt = prompt_ids(self.tokenizer, conversation)
            self.stats.tokens += len(ids)
            self.stats.sequences += 1
            out.append(Completion(text=self.tokenizer.decode(ids, skip_special_tokens=True), token_ids=ids,
                                  prompt_ids=prompt, finished=True))
        return out
