"""One rank of a two-process R3 training run (tests/test_distributed.py starts it with torchrun, gloo on CPU).

It trains the tiny model for two steps through r3kit.core.trainer.train with a scripted generator, and writes what
this rank saw to OUT/rank<r>.json: the problems of each step, the trained weights' hash after each step,
and each reward beside the reflection and retry it judged.
"""

import hashlib
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["R3KIT_REPORT_TO"] = "none"
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
sys.path.insert(0, os.path.dirname(__file__))

from r3kit.models.loading import fast_language_model  # noqa: E402

fast_language_model()  # Unsloth before transformers, TRL and PEFT, as everywhere in the kit

import datasets  # noqa: E402
import torch  # noqa: E402
from fakes import ScriptedGenerator  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from r3kit.core import trainer as train_module  # noqa: E402
from r3kit.infra.distributed import world  # noqa: E402
from r3kit.models.loading import ModelConfig  # noqa: E402
from r3kit.tasks import Verdict  # noqa: E402
from r3kit.tasks.countdown import CountdownTask  # noqa: E402
from r3kit.tasks.prompts import get_prompts  # noqa: E402

OUT = sys.argv[1]
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 2  # a later call with more steps resumes from the checkpoint
RANK, SIZE = world()


class EvenRetry(CountdownTask):
    """A retry passes iff its answer is an even digit (the retry repeats its reflection's last digit)."""

    name = "even_retry"

    def verify(self, completion, example):
        digit = completion.replace("<answer>", "").replace("</answer>", "")
        ok = digit.isdigit() and int(digit) % 2 == 0
        return Verdict(ok, "even" if ok else "odd")


TASK = EvenRetry(prompts=get_prompts("countdown", "compact"))
FAILURES = datasets.Dataset.from_list(
    [{"target": t, "nums": [t, 1, 2], "failed_attempt": "<answer>1</answer>"} for t in range(3, 11)])
record = {"rank": RANK, "size": SIZE, "problems": [], "weights": [], "rewards": [], "generators": []}


def factory(model, tokenizer, batch_size=64, **_):
    """One rollout (a step): reflection j of this rank is "r<j mod 10>"; the retry repeats the reflection's last
    character, so its reward says which reflection it followed."""
    count = {"n": 0}
    record["problems"].append([])

    def script(conversation):
        if conversation[-1]["content"] == TASK.prompts.reflection_request:
            record["problems"][-1].append(conversation[0]["content"])
            count["n"] += 1
            return f"r{count['n'] % 10}"
        return f"<answer>{conversation[-2]['content'][-1]}</answer>"

    generator = ScriptedGenerator(tokenizer, script)
    record["generators"].append(generator)
    return generator


class Weights(TrainerCallback):
    def on_step_end(self, args, state, control, model=None, **kwargs):
        digest = hashlib.sha256()
        for name, param in sorted(model.named_parameters()):
            if param.requires_grad:
                digest.update(name.encode())
                digest.update(param.detach().to(torch.float32).cpu().numpy().tobytes())
        record["weights"].append({"step": state.global_step, "sha256": digest.hexdigest()})


build = train_module.build_trainer


def recording_trainer(*args, **kwargs):
    trainer = build(*args, **kwargs)
    trainer.add_callback(Weights())
    reward = trainer.reward_funcs[0]

    def recorded(*a, **kw):
        values = reward(*a, **kw)
        record["rewards"].extend(zip(kw["reflection_text"], kw["judged_text"], values))
        return values

    recorded.__name__ = reward.__name__
    trainer.reward_funcs[0] = recorded
    return trainer


train_module.build_trainer = recording_trainer
cfg = train_module.TrainConfig(steps=STEPS, problems_per_step=2, group_size=4, micro_batch_size=2, learning_rate=5e-2,
                               grpo_config={**train_module.GRPO_PINNED, "beta": 0.0}, reflection_tokens=8, retry_tokens=8, save_steps=1, generation_batch_size=8,
                               report_to="none")
summary = train_module.train(ModelConfig(name="tiny"), TASK, FAILURES, cfg, os.path.join(OUT, "run"),
                             generator_factory=factory)
record["generated_tokens"] = [g.stats.tokens for g in record.pop("generators")]  # per step, this rank
record["summary_steps"] = summary["steps"]
record["resumed_from"] = summary["resumed_from"]
with open(os.path.join(OUT, f"rank{RANK}.json"), "w") as handle:
    json.dump(record, handle)
