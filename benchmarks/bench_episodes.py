"""Episodes per second: batched generation vs one episode at a time, same model, same episodes, CPU.

Runs the same greedy R3 episodes (attempt, verify, reflect, retry, verify) twice, once with the batched
generator and once with batch size 1, checks that both produced the same verdicts, and prints the ratio.

    .venv/bin/python benchmarks/bench_episodes.py [--model smollm2-135m] [--episodes 32] [--tokens 48]
"""

from __future__ import annotations

import argparse
import json
import time

from r3kit.core.episodes import EpisodeConfig, run_episodes
from r3kit.data import DataConfig, load_split
from r3kit.models.generation import HFGenerator
from r3kit.models.loading import ModelConfig, load_model
from r3kit.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--style", default="instruct")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=48, help="max new tokens per turn")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    model, tokenizer = load_model(ModelConfig(name=args.model, dtype="float32"))
    task = get_task("countdown", style=args.style)
    problems = [dict(r) for r in load_split(DataConfig(n_test=args.episodes, n_train=1, seed=1), "test")]
    cfg = EpisodeConfig(args.tokens, args.tokens, args.tokens)
    results = {}
    for label, batch in (("batched", args.batch), ("one_at_a_time", 1)):
        generator = HFGenerator(model, tokenizer, batch_size=batch)
        start = time.perf_counter()
        episodes = run_episodes(generator, task, problems, cfg, progress=False)
        seconds = time.perf_counter() - start
        results[label] = {"seconds": seconds, "episodes_per_second": len(episodes) / seconds,
                          "tokens_per_second": generator.stats.tokens_per_second,
                          "verdicts": [(e.first.ok, e.second["reflection"].verdict.ok if e.second else None) for e in episodes]}
    same = results["batched"]["verdicts"] == results["one_at_a_time"]["verdicts"]
    ratio = results["batched"]["episodes_per_second"] / results["one_at_a_time"]["episodes_per_second"]
    for label, r in results.items():
        print(f"{label:14} {r['episodes_per_second']:7.2f} episodes/s  {r['tokens_per_second']:8.0f} tokens/s  ({r['seconds']:.1f} s)")
    print(f"batched / one-at-a-time = {ratio:.1f}x   (model {args.model}, {args.episodes} episodes, batch {args.batch}, "
          f"same verdicts: {same})")
    print(json.dumps({"ratio": ratio, "same_verdicts": same, "model": args.model, "episodes": args.episodes,
                      **{k: {kk: vv for kk, vv in v.items() if kk != "verdicts"} for k, v in results.items()}}))


if __name__ == "__main__":
    main()
