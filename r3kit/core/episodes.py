"""Episodes: attempt -> verify -> (if wrong) reflect -> retry -> verify, batched over many problems.

    1. first attempt for every problem (one batched generation), verified by the task;
    2. a first-try success ends its episode: no reflection is ever asked of it;
    3. every failure gets the second turn of its condition, each stage one batched generation:
         "reflection"          reflection request -> reflection -> retry request -> retry   (R3)
         "no_reflection"       "wrong, try again" -> retry                                 (control)
         "generic_reflection"  reflection request -> a fixed generic reflection -> retry    (control)
    4. the retry is verified; the verdicts, every message and the token counts are kept.
Several conditions can share one set of first attempts (`second_turns`), so controls are compared on
exactly the same failures. The conversation builders here are the ones the trainer uses too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from r3kit.models.generation import Completion, Sampling
from r3kit.tasks import Message, Task, Verdict

CONDITIONS = ("reflection", "no_reflection", "generic_reflection")


@dataclass
class EpisodeConfig:
    """Lengths and sampling of the three turns. temperature 0 = greedy (the evaluation default)."""

    attempt_tokens: int = 512
    reflection_tokens: int = 256
    retry_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def sampling(self, turn: str, seed_offset: int = 0) -> Sampling:
        tokens = {"attempt": self.attempt_tokens, "reflection": self.reflection_tokens, "retry": self.retry_tokens}
        if turn not in tokens:
            raise ValueError(f"turn must be attempt, reflection or retry, got {turn!r}")
        return Sampling(tokens[turn], self.temperature, self.top_p, self.seed + seed_offset)


# ---- conversation builders (shared with train.py) ------------------------------------------------------
def reflection_conversation(task: Task, example: dict, attempt: str) -> list[Message]:
    """Task, the failed attempt, and the request to reflect: the prompt whose completion R3 rewards."""
    return [*task.first_messages(example), {"role": "assistant", "content": attempt}, task.reflection_request()]


def retry_conversation(task: Task, reflection_prompt: list[Message], reflection: str) -> list[Message]:
    return [*reflection_prompt, {"role": "assistant", "content": reflection}, task.retry_request()]


def episode_prompt(task: Task, example: dict, attempt: str = "") -> list[Message]:
    """The longest conversation of an episode (the retry's prompt) with its generated turns left empty
    (or a given attempt): what the context must hold besides the turns still to be generated."""
    return retry_conversation(task, reflection_conversation(task, example, attempt), "")


def check_context(max_seq_length: int, prompt_tokens: int, attempt: int, reflection: int, retry: int, where: str) -> None:
    """Raise, naming the numbers, when prompt + attempt + reflection + retry tokens exceed the context."""
    need = prompt_tokens + attempt + reflection + retry
    if need > max_seq_length:
        raise ValueError(
            f"model.max_seq_length = {max_seq_length} cannot hold a whole episode ({where}): prompt {prompt_tokens} + "
            f"attempt {attempt} + reflection {reflection} + retry {retry} = {need} tokens; raise model.max_seq_length "
            f"to at least {need} or shorten the turns")


def control_conversation(task: Task, example: dict, attempt: str, condition: str) -> list[Message]:
    first = [*task.first_messages(example), {"role": "assistant", "content": attempt}]
    if condition == "no_reflection":
        return [*first, task.retry_without_reflection()]
    if condition == "generic_reflection":
        return [*first, task.reflection_request(), task.generic_reflection(), task.retry_request()]
    raise ValueError(f"not a control condition: {condition!r}")


# ---- episodes -------------------------------------------------------------------------------------------
@dataclass
class SecondTurn:
    condition: str
    messages: list[Message]  # the turns after the first attempt, retry included
    verdict: Verdict
    reflection_tokens: int = 0
    retry_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "verdict": self.verdict.to_dict(),
                "reflection_tokens": self.reflection_tokens, "retry_tokens": self.retry_tokens}


@dataclass
class Episode:
    index: int
    example: dict
    difficulty: str
    prompt: list[Message]  # the first-attempt conversation
    attempt: str
    first: Verdict
    attempt_tokens: int
    second: dict[str, SecondTurn] = field(default_factory=dict)

    def solved(self, condition: str = "reflection") -> bool:
        """Success within two tries: first-try successes count, failures count by their retry."""
        return self.first.ok or (condition in self.second and self.second[condition].verdict.ok)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "example": self.example, "difficulty": self.difficulty,
            "first": {"messages": [*self.prompt, {"role": "assistant", "content": self.attempt}],
                      "verdict": self.first.to_dict(), "attempt_tokens": self.attempt_tokens},
            "second": {name: turn.to_dict() for name, turn in self.second.items()},
        }


def first_attempts(generator, task: Task, examples: list[dict], cfg: EpisodeConfig, progress: bool = True) -> list[Episode]:
    """Step 1-2: one batched generation of first attempts, each verified."""
    for example in examples:
        task.validate_example(example)
    conversations = [task.first_messages(e) for e in examples]
    outs: list[Completion] = generator.generate(conversations, cfg.sampling("attempt"), progress="attempts" if progress else None)
    return [
        Episode(i, dict(example), task.difficulty(example), convo, out.text, task.verify(out.text, example), len(out.token_ids))
        for i, (example, convo, out) in enumerate(zip(examples, conversations, outs))
    ]


def second_turns(generator, task: Task, episodes: list[Episode], cfg: EpisodeConfig, condition: str = "reflection",
                 progress: bool = True, retrier=None) -> list[Episode]:
    """Step 3-4 for `condition`, on the episodes whose first attempt failed (others are left untouched).
    `retrier`: another model's generator writes the retries (the frozen retrier, eval/evaluate.py)."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; choose from {CONDITIONS}")
    failed = [e for e in episodes if not e.first.ok]
    if not failed:
        return episodes
    label = (lambda stage: f"{condition}: {stage}") if progress else (lambda stage: None)
    if condition == "reflection":
        prompts = [reflection_conversation(task, e.example, e.attempt) for e in failed]
        reflections = generator.generate(prompts, cfg.sampling("reflection", 1), progress=label("reflections"))
        retry_prompts = [retry_conversation(task, p, r.text) for p, r in zip(prompts, reflections)]
    else:
        reflections = [None] * len(failed)
        retry_prompts = [control_conversation(task, e.example, e.attempt, condition) for e in failed]
    retries = (retrier or generator).generate(retry_prompts, cfg.sampling("retry", 2), progress=label("retries"))
    for episode, convo, reflection, retry in zip(failed, retry_prompts, reflections, retries):
        after_attempt = convo[len(episode.prompt) + 1 :]
        episode.second[condition] = SecondTurn(
            condition=condition,
            messages=[*after_attempt, {"role": "assistant", "content": retry.text}],
            verdict=task.verify(retry.text, episode.example),
            reflection_tokens=len(reflection.token_ids) if reflection is not None else 0,
            retry_tokens=len(retry.token_ids),
        )
    return episodes


def run_episodes(generator, task: Task, examples: list[dict], cfg: EpisodeConfig,
                 conditions: tuple[str, ...] = ("reflection",), progress: bool = True) -> list[Episode]:
    """Full episodes for `examples`: shared first attempts, then each condition's second turn."""
    if not examples:
        raise ValueError("no examples to run")
    episodes = first_attempts(generator, task, examples, cfg, progress)
    for condition in conditions:
        second_turns(generator, task, episodes, cfg, condition, progress)
    return episodes
