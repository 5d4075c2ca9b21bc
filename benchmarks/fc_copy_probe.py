"""How fast the function-calling student learns to copy held-out argument values, on short sequences, on a CPU.

The cpu-demo-function-calling student needs about 1,200 SFT steps of full conversations (batch 32, ~5 s a
step on 2 cores) before it copies values it has never seen; before that it invents them. This probe asks
whether the copying alone is cheap to learn when the sequences are short: the same student (hidden 192,
4 layers) trains only on "extract" conversations, the query alone -> its calls' values in order
    user: "Show the 30-day price history of NBAK; then calculate the BMI for ... 105.6 kg and 1.57 m tall"
    assistant: "NBAK 30 105.6 1.57"
(no tool line, no JSON: about a third of a solve conversation's length), at a constant learning rate after
warm-up. Every --every steps it extracts greedily from the first --n validation rows (held-out values) and
records the exact-match rate and the wall time. With --solve-steps, a second phase goes on from those weights
(same optimizer) with "solve" conversations (the compact prompt: tool line and query -> the calls as JSON)
and scores greedy first attempts on the validation rows with the kit's real verifier. Writes one JSON record.

    .venv/bin/python benchmarks/fc_copy_probe.py --steps 2500 --minutes 30 --out benchmarks/results/fc_copy_probe_cpu.json
    .venv/bin/python benchmarks/fc_copy_probe.py --steps 3000 --solve-steps 400 --minutes 60 --out ...
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from r3kit.infra.io import write_json
from r3kit.models.loading import build_char_model
from r3kit.runs.pipeline import _rows, held_out_keys
from r3kit.runs.profiles import resolve
from r3kit.student import function_calling as student_calls
from r3kit.student.countdown import collate, encode, train_step
from r3kit.tasks import get_task


def values(row: dict) -> str:
    return student_calls.values(json.loads(row["answers"]))


def turns(row: dict) -> list[tuple[str, str, bool]]:
    return student_calls.conversation(row, "extract", random.Random(0))


def solve_turns(row: dict) -> list[tuple[str, str, bool]]:
    return student_calls.conversation(row, "solve", random.Random(0))


def batch(rows, tokenizer, size: int, make=turns):
    return collate([encode(tokenizer, make(next(rows))) for _ in range(size)], tokenizer.pad_token_id)


@torch.no_grad()
def greedy(model, tokenizer, make, rows: list[dict], max_new_tokens: int) -> list[str]:
    """Greedy replies to the first (user) turn of each row's conversation."""
    model.eval()
    replies = []
    for row in rows:
        ids, _ = encode(tokenizer, make(row)[:1])
        prompt = torch.tensor([ids + [tokenizer.convert_tokens_to_ids("<|assistant|>")]])
        out = model.generate(prompt, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        replies.append(tokenizer.decode(out[0, prompt.shape[1]:], skip_special_tokens=True))
    model.train()
    return replies


def exact_match(model, tokenizer, rows: list[dict]) -> float:
    replies = greedy(model, tokenizer, turns, rows, 48)
    return sum(reply.strip() == values(row) for reply, row in zip(replies, rows)) / len(rows)


def first_try(model, tokenizer, rows: list[dict]) -> float:
    """Greedy first attempts at the compact prompt, scored by the kit's verifier."""
    task = get_task("function_calling", style="compact")
    replies = greedy(model, tokenizer, solve_turns, rows, 192)
    return sum(task.verify(reply, row).ok for reply, row in zip(replies, rows)) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--minutes", type=float, default=35.0, help="stop after this much wall time")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--n", type=int, default=64, help="validation rows")
    parser.add_argument("--solve-steps", type=int, default=0, help="a second phase of solve conversations")
    parser.add_argument("--solve-every", type=int, default=100)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    run = resolve("cpu-demo-function-calling", Path("/tmp/fc-probe-run"))
    cfg = run.student
    validation = _rows(run, "validation")[: args.n]
    rows = student_calls.training_rows(cfg.seed, held_out_keys(run), run.data.generator)
    model, tokenizer = build_char_model(cfg.hidden, cfg.layers, cfg.heads, max_positions=student_calls.MAX_POSITIONS,
                                        seed=cfg.seed, extra_tokens=student_calls.TOKENS)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / cfg.warmup_steps))
    random.seed(0)
    record = {"probe": "extract (query -> values), no tool line", "student": {"hidden": cfg.hidden, "layers": cfg.layers},
              "batch_size": args.batch_size, "learning_rate": args.lr, "machine": "2 CPU cores", "n_validation": len(validation),
              "evaluations": [], "losses": []}
    start, train_seconds, losses = time.perf_counter(), 0.0, []
    for step in range(1, args.steps + 1):
        began = time.perf_counter()
        losses.append(train_step(model, optimizer, schedule, batch(rows, tokenizer, args.batch_size)))
        train_seconds += time.perf_counter() - began
        if step % args.every == 0 or step == args.steps:
            score = exact_match(model, tokenizer, validation)
            entry = {"step": step, "loss": round(sum(losses[-args.every:]) / len(losses[-args.every:]), 4),
                     "validation_exact": score, "train_seconds": round(train_seconds),
                     "wall_seconds": round(time.perf_counter() - start)}
            record["evaluations"].append(entry)
            record["losses"] = [round(x, 4) for x in losses[::10]]
            write_json(args.out, record)
            print(json.dumps(entry), flush=True)
            if time.perf_counter() - start > args.minutes * 60 and not args.solve_steps:
                break
    for step in range(1, args.solve_steps + 1):
        began = time.perf_counter()  # (the schedule is flat at 1.0 after warm-up: stepping it changes nothing)
        losses.append(train_step(model, optimizer, schedule, batch(rows, tokenizer, args.batch_size, solve_turns)))
        train_seconds += time.perf_counter() - began
        if step % args.solve_every == 0 or step == args.solve_steps:
            entry = {"solve_step": step, "loss": round(sum(losses[-args.solve_every:]) / len(losses[-args.solve_every:]), 4),
                     "validation_first_try": first_try(model, tokenizer, validation),
                     "train_seconds": round(train_seconds), "wall_seconds": round(time.perf_counter() - start)}
            record.setdefault("solve_phase", []).append(entry)
            record["losses"] = [round(x, 4) for x in losses[::10]]
            write_json(args.out, record)
            print(json.dumps(entry), flush=True)
            if time.perf_counter() - start > args.minutes * 60:
                break


if __name__ == "__main__":
    main()
