"""The CPU student: plans, training conversations, label masks, and a tiny make_student run."""

import dataclasses
import itertools
import random
import re

import pytest

from r3kit.data.countdown import iter_problems, key
from r3kit.models.loading import build_char_tokenizer
from r3kit.student.countdown import (
    FAULTS,
    StudentConfig,
    _batches,
    _value,
    arithmetic,
    comparison,
    conversation,
    encode,
    faulty_attempt,
    make_student,
    plans,
    recompute,
    recorded_identity,
    searched,
    training_identity,
    training_problems,
    wrong_attempt,
)
from r3kit.tasks import get_task

TASK = get_task("countdown")


def test_reflections_work_out_verified_solutions():
    options = plans([7, 3, 12], 33)
    assert ("3*7=21,21+12=33 so (3*7)+12", "(3*7)+12") in options
    assert all("12-7" not in reflection for reflection, _ in options)
    assert ("49-37=12,12*5=60 so (49-37)*5", "(49-37)*5") in plans([37, 49, 5], 60)
    assert ("2+3=5,10-5=5 so 10-(2+3)", "10-(2+3)") in plans([2, 3, 10], 5)
    for nums, target in [([7, 3, 12], 33), ([37, 49, 5], 60), ([2, 2, 2], 8), ([6, 4, 9], 15), ([2, 3, 10], 5)]:
        for reflection, answer in plans(nums, target):
            assert TASK.verify(f"<answer>{answer}</answer>", {"nums": nums, "target": target}).ok
            steps, concluded = reflection.split(" so ")
            first, second = steps.split(",")
            assert concluded == answer and first.split("=")[0] in answer and second.endswith(f"={target}")
    assert plans([1, 1, 1], 100) == []


def test_conversations_train_only_the_right_turns():
    rng = random.Random(0)
    problem = {"nums": [37, 49, 5], "target": 60}
    solve = conversation(problem, "solve", rng)
    assert [(r, t) for r, _, t in solve] == [("user", False), ("assistant", True)]
    reflect = conversation(problem, "reflect", rng)
    assert [t for _, _, t in reflect] == [False, False, False, True, False, True]
    wrong = reflect[1][1]
    assert not TASK.verify(wrong, problem).ok and TASK.verify(reflect[-1][1], problem).ok
    worked = reflect[3][1]
    assert worked.split("=")[0] in reflect[-1][1]
    generic = conversation(problem, "generic", rng)
    assert generic[3] == ("assistant", "think again", False)
    assert not TASK.verify(wrong_attempt([1, 2, 3], 6, rng), {"nums": [1, 2, 3], "target": 6}).ok


def test_worked_attempts_show_their_steps_with_true_values():
    rng = random.Random(1)
    problem = {"nums": [37, 49, 5], "target": 60}
    solve = conversation(problem, "solve", rng, work=True)
    steps, answer = solve[1][1].split(" so ")
    assert steps.endswith("=60") and answer.startswith("<answer>") and TASK.verify(solve[1][1], problem).ok
    reflect = conversation(problem, "reflect", rng, work=True)
    assert "<answer>" not in reflect[3][1] and reflect[-1][1].startswith("<answer>")  # reflection and retry as before
    for seed in range(50):
        wrong = wrong_attempt([37, 49, 5], 60, random.Random(seed), work=True)
        assert not TASK.verify(wrong, problem).ok
        if wrong.count("=") == 2:  # its steps carry their true values, so they show why it failed
            first, second = wrong.split(" so ")[0].split(",")
            a, op, b, value = re.fullmatch(r"(\d+)([-+*/])(\d+)=(\d+)", first).groups()
            assert _value(op, int(a), int(b)) == int(value) and not second.endswith("=60")
    no_reflect = conversation(problem, "no_reflect", rng, work=True)
    assert " so <answer>" in no_reflect[-1][1]


def test_encoding_matches_the_chat_template_and_masks_labels():
    tokenizer = build_char_tokenizer()
    turns = [("user", "1 2 3 = 6", False), ("assistant", "<answer>1+2+3</answer>", True)]
    ids, labels = encode(tokenizer, turns)
    rendered = tokenizer.apply_chat_template([{"role": r, "content": c} for r, c, _ in turns], tokenize=False)
    assert ids == tokenizer(rendered, add_special_tokens=False)["input_ids"]
    trained = [i for i, label in zip(ids, labels) if label != -100]
    assert tokenizer.decode(trained) == "<answer>1+2+3</answer><|im_end|>"


def test_training_stream_never_contains_excluded_problems():
    cfg = StudentConfig(max_num=6, max_target=12)
    unfiltered = [key(p) for p in itertools.islice(training_problems(cfg, set()), 3000)]
    exclude = set(unfiltered[:5])
    filtered = [key(p) for p in itertools.islice(training_problems(cfg, exclude), 3000)]
    assert sum(k in exclude for k in unfiltered) > 5  # the excluded problems do come up in the raw stream
    assert not exclude & set(filtered)
    ids, labels, mask = next(_batches(StudentConfig(batch_size=8), build_char_tokenizer(), exclude, random.Random(0)))
    assert ids.shape[0] == 8 and (labels != -100).any()


def test_make_student_saves_a_loadable_model(tmp_path):
    from r3kit.models.loading import ModelConfig, load_model

    summary = make_student(StudentConfig(hidden=32, layers=1, heads=2, steps=3, batch_size=4), tmp_path / "student",
                           exclude={key({"target": 6, "nums": [1, 2, 3]})})
    assert summary["parameters"] > 10_000 and len(summary["loss_curve"]) == 3
    assert summary["arithmetic"]["n"] == 400 and set(summary["arithmetic"]["by_op"]) == {"+", "-", "*", "/"}
    model, tokenizer = load_model(ModelConfig(name=str(tmp_path / "student")))
    text = "37 49 5 = 60 <answer>5*(49-37)</answer>"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_student_device_and_mix_are_checked_before_training(tmp_path):
    import torch

    with pytest.raises(ValueError, match="student.device must be 'cpu' or 'cuda'"):
        StudentConfig(device="tpu").validate()
    StudentConfig(device="cuda").validate()  # a run set up for a GPU still resolves on a CPU (figures, evaluation)
    with pytest.raises(ValueError, match="mix_extract and extract_steps are for the function-calling student"):
        make_student(StudentConfig(mix_extract=0.3), tmp_path / "never")
    with pytest.raises(ValueError, match="extract_steps and arith_steps must be >= 0 and together below steps"):
        StudentConfig(steps=10, extract_steps=10).validate()
    with pytest.raises(ValueError, match="extract_steps and arith_steps must be >= 0 and together below steps"):
        StudentConfig(steps=10, arith_steps=6, extract_steps=4).validate()
    for style in ("recompute", "verify"):
        with pytest.raises(ValueError, match=f"'{style}' recomputes an attempt's worked steps; set worked_attempts=True"):
            StudentConfig(reflection_style=style).validate()
    with pytest.raises(ValueError, match="mix weights must be non-negative"):
        StudentConfig(mix_arith=-0.1).validate()
    for wrong in ({"mix_arith": 0.1}, {"arith_steps": 2}, {"reflection_style": "recompute", "worked_attempts": True}):
        with pytest.raises(ValueError, match="are for the countdown student"):
            make_student(StudentConfig(**wrong), tmp_path / "never", task="function_calling")
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        StudentConfig(lr_schedule="linear").validate()
    with pytest.raises(ValueError, match="stop_at_first_try must be in"):
        StudentConfig(stop_at_first_try=1.5).validate()
    with pytest.raises(ValueError, match="needs a validation check"):
        make_student(StudentConfig(stop_at_first_try=0.3), tmp_path / "never")
    if not torch.cuda.is_available():  # on a GPU the same config trains (benchmarks/fc_student_steps.py ran so)
        with pytest.raises(ValueError, match="needs a CUDA GPU"):
            make_student(StudentConfig(device="cuda"), tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_check_style_reflections_check_the_failed_attempt_then_fix_it():
    task = get_task("countdown", style="compact")
    rng = random.Random(3)
    kept_first_step = 0
    for problem in iter_problems(60, seed=4, num_counts=(3,), max_num=30, max_target=60):
        turns = conversation(problem, "reflect", rng, work=True, style="check")
        if turns is None:
            continue
        attempt, reflection, retry = turns[1][1], turns[3][1], turns[5][1]
        equation = attempt.split("<answer>")[1].split("</answer>")[0]
        value = attempt.split(" so ")[0].rsplit("=", 1)[1]
        # the reflection starts by checking the attempt: its equation, its true value, the target
        assert reflection.startswith(f"{equation}={value} not {problem['target']}. ")
        fix = reflection.split(". ", 1)[1]
        assert task.verify(retry, problem).ok and retry == f"<answer>{fix.rsplit(' so ', 1)[1]}</answer>"
        kept_first_step += fix.split(",")[0] == attempt.split(",")[0]
    assert kept_first_step > 0  # where a solution keeps the attempt's first step, the fix builds on it
    with pytest.raises(ValueError, match="reflection_style"):
        StudentConfig(reflection_style="poetry").validate()


def test_the_fresh_style_draws_in_the_order_the_cpu_demo_student_was_always_trained_with():
    # golden output of the code before reflection_style existed (commit 6a2b4d7), seed 5: a change in the order of
    # random draws would change every cpu-demo student
    problems = list(iter_problems(8, seed=9, num_counts=(3,), max_num=50, max_target=100))
    kinds = ["solve", "reflect", "no_reflect", "generic"]
    rng = random.Random(5)
    last = [conversation(p, kinds[i % 4], rng, True)[-1][1] for i, p in enumerate(problems)]
    assert last == ['40*18=720,720/24=30 so <answer>(40*18)/24</answer>', '<answer>(44+22)+1</answer>',
                    '22*6=132,132-39=93 so <answer>(22*6)-39</answer>', '<answer>(25+47)-11</answer>',
                    '16-11=5,11-5=6 so <answer>11-(16-11)</answer>', '<answer>33-(38-9)</answer>',
                    '48-19=29,29-7=22 so <answer>(48-19)-7</answer>', '<answer>(47+27)-6</answer>']
    assert rng.random() == 0.9783414907096316


@pytest.mark.parametrize("task", ["countdown", "function_calling"])
def test_an_interrupted_student_resumes_to_the_same_weights(tmp_path, monkeypatch, task):
    """A crash mid-training loses at most CHECKPOINT_SECONDS: the rerun resumes from the saved state and saves
    the very student an unbroken run saves (same weights, same loss curve); other settings are refused."""
    import torch
    from safetensors.torch import load_file

    import r3kit.student.countdown as student

    generator = {"hold_out_values": True, "max_calls": 2, "max_distractors": 1} if task == "function_calling" else None
    exclude = {key({"target": 6, "nums": [1, 2, 3]})} if task == "countdown" else set()
    cfg = StudentConfig(hidden=32, layers=1, heads=2, steps=6, batch_size=4, warmup_steps=2, reflection_style="check")
    whole = make_student(cfg, tmp_path / "whole", exclude=exclude, task=task, generator=generator)
    assert "resumed_from_step" not in whole and not (tmp_path / "whole" / student.STATE_FILE).exists()

    monkeypatch.setattr(student, "CHECKPOINT_SECONDS", 0.0)  # a state after every step
    clip, calls = torch.nn.utils.clip_grad_norm_, []

    def power_cut_in_step_five(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("power cut")
        return clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", power_cut_in_step_five)
    broken = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="power cut"):
        make_student(cfg, broken, exclude=exclude, task=task, generator=generator)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    assert torch.load(broken / student.STATE_FILE, weights_only=True)["step"] == 4
    assert not (broken / "model.safetensors").exists() and not (broken / "student.json").exists()

    with pytest.raises(ValueError, match=r"other settings \(differing: config.learning_rate\)"):
        make_student(dataclasses.replace(cfg, learning_rate=3e-3), broken, exclude=exclude, task=task,
                     generator=generator)
    resumed = make_student(cfg, broken, exclude=exclude, task=task, generator=generator)
    assert resumed["resumed_from_step"] == 4 and resumed["loss_curve"] == whole["loss_curve"]
    weights, expected = load_file(broken / "model.safetensors"), load_file(tmp_path / "whole" / "model.safetensors")
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in expected)
    assert not (broken / student.STATE_FILE).exists()  # the student is whole: its state is gone


def test_a_student_killed_while_saving_resumes_to_exactly_its_steps(tmp_path, monkeypatch):
    """Killed during the final save (a half-written model file): the rerun resumes from the last saved state,
    trains only the steps left, and saves the student an unbroken run saves."""
    import torch
    from safetensors.torch import load_file

    import r3kit.student.countdown as student

    cfg = StudentConfig(hidden=32, layers=1, heads=2, steps=4, batch_size=4, warmup_steps=2, reflection_style="check")
    whole = make_student(cfg, tmp_path / "whole")
    monkeypatch.setattr(student, "CHECKPOINT_SECONDS", 0.0)  # a state after every step
    real = student.save_model

    def killed_while_saving(model, tokenizer, out_dir):
        (tmp_path / "broken" / "model.safetensors").write_bytes(b"half a file")
        raise RuntimeError("killed while saving")

    monkeypatch.setattr(student, "save_model", killed_while_saving)
    with pytest.raises(RuntimeError, match="killed while saving"):
        make_student(cfg, tmp_path / "broken")
    monkeypatch.setattr(student, "save_model", real)
    resumed = make_student(cfg, tmp_path / "broken")
    assert resumed["resumed_from_step"] == 3 and resumed["steps_trained"] == 4
    assert resumed["loss_curve"] == whole["loss_curve"]
    weights, expected = load_file(tmp_path / "broken" / "model.safetensors"), load_file(tmp_path / "whole" / "model.safetensors")
    assert all(torch.equal(weights[k], expected[k]) for k in expected)


def test_a_finished_student_is_kept_by_a_resumed_run_and_retrained_when_its_settings_change(tmp_path, capsys):
    """`r3kit reproduce --resume` runs notebook 01 again: a student finished with the same settings is kept
    (hours on a CPU for function calling), one with other settings or other held-out rows is trained again."""
    from r3kit.runs.pipeline import student_stage
    from r3kit.runs.profiles import resolve

    run = resolve("smoke", tmp_path / "run")
    first = student_stage(run)
    weights = tmp_path / "run" / "student" / "model.safetensors"
    written = weights.stat().st_mtime_ns
    assert student_stage(run) == first and weights.stat().st_mtime_ns == written
    assert "student already trained" in capsys.readouterr().out
    other_test_split = student_stage(resolve("smoke", tmp_path / "run", {"data": {"n_test": 10}}))
    assert other_test_split["trained_on"]["exclude"] != first["trained_on"]["exclude"]  # trained again, without
    assert weights.stat().st_mtime_ns != written                                       # the new test rows
    again = student_stage(resolve("smoke", tmp_path / "run", {"student": {"steps": 4}}))
    assert again["config"]["steps"] == 4 and len(again["loss_curve"]) == 4


def test_a_student_stops_at_the_first_validation_check_that_reaches_its_target(tmp_path):
    """After the extract steps, the check runs every check_every steps; the student stops at the first one that
    reaches stop_at_first_try. With the constant schedule the stopped student is the one a shorter run makes."""
    import torch
    from safetensors.torch import load_file

    generator = {"hold_out_values": True, "max_calls": 2, "max_distractors": 1}
    cfg = StudentConfig(hidden=32, layers=1, heads=2, steps=12, batch_size=2, warmup_steps=2, extract_steps=2,
                        lr_schedule="constant", stop_at_first_try=0.5, check_every=2, reflection_style="check")
    verdicts, seen = iter([0.0, 0.25, 0.5, 1.0]), []

    def check(model, tokenizer):  # stands in for the validation first-try rate (pipeline.validation_check)
        seen.append(model.training)
        return next(verdicts)

    stopped = make_student(cfg, tmp_path / "stopped", task="function_calling", generator=generator, check=check)
    assert [c["step"] for c in stopped["validation_checks"]] == [4, 6, 8]
    assert [c["first_try"] for c in stopped["validation_checks"]] == [0.0, 0.25, 0.5]
    assert stopped["steps_trained"] == 8 and stopped["reached_stop_at_first_try"] is True and seen == [True] * 3
    short = make_student(dataclasses.replace(cfg, steps=8, stop_at_first_try=None), tmp_path / "short",
                         task="function_calling", generator=generator)
    assert short["loss_curve"] == stopped["loss_curve"] and "validation_checks" not in short
    weights, expected = load_file(tmp_path / "stopped" / "model.safetensors"), load_file(tmp_path / "short" / "model.safetensors")
    assert all(torch.equal(weights[k], expected[k]) for k in expected)

    never = make_student(dataclasses.replace(cfg, steps=6), tmp_path / "never", task="function_calling",
                         generator=generator, check=lambda model, tokenizer: 0.1)
    assert never["steps_trained"] == 6 and never["reached_stop_at_first_try"] is False


def test_the_extract_steps_come_first_then_the_mix():
    """The first extract_steps batches are extract conversations (the query -> the calls' values); then the mix."""
    import json

    from r3kit.student import function_calling as student_calls
    from r3kit.student.countdown import _batches

    generator = {"hold_out_values": True, "max_calls": 2, "max_distractors": 1}
    cfg = StudentConfig(steps=10, batch_size=1, extract_steps=2, mix_solve=1.0, mix_reflect=0, mix_no_reflect=0,
                        mix_generic=0)
    tokenizer = build_char_tokenizer(extra_tokens=student_calls.TOKENS)
    batches = _batches(cfg, tokenizer, set(), random.Random(0), "function_calling", generator)
    rows = student_calls.training_rows(cfg.seed, set(), generator)
    for expected in ("extract", "extract", "solve", "solve"):
        ids, labels, _ = next(batches)
        row = next(rows)
        trained = tokenizer.decode([t for t in labels[0].tolist() if t != -100], skip_special_tokens=True)
        calls = json.loads(row["answers"])
        assert trained == (student_calls.values(calls) if expected == "extract" else student_calls.dump(calls))
        prompt = tokenizer.decode(ids[0].tolist(), skip_special_tokens=True)
        assert prompt.startswith(row["query"]) == (expected == "extract")


def test_faulty_attempts_fail_and_carry_each_fault_in_about_its_share():
    from r3kit.tasks.countdown import diagnose, operations

    rng, seen = random.Random(0), {name: 0 for name in FAULTS}
    problems = list(itertools.islice(iter_problems(None, seed=2, num_counts=(3,), max_num=15, max_target=60), 400))
    for problem in problems:
        nums, target = problem["nums"], problem["target"]
        attempt = faulty_attempt(nums, target, rng)
        assert not TASK.verify(attempt, problem).ok
        fault, first = diagnose(attempt, nums, target)
        steps = operations(attempt)
        assert len(steps) == 2 and first is not None
        wrong = [claimed != true for _, _, _, claimed, true in steps]
        if "twice" in fault:
            seen["misused_number"] += 1
        elif wrong[0]:
            seen["slipped_step"] += 1
            assert fault.startswith(f"{steps[0][0]}{steps[0][1]}{steps[0][2]}={first.split('=')[1]} not ")
        elif wrong[1]:
            seen["faked_target"] += 1
            assert steps[1][3] == target
        else:
            seen["honest"] += 1
    for name, share in FAULTS.items():  # 400 draws: each share within 8 points
        assert abs(seen[name] / len(problems) - share) < 0.08, seen


@pytest.mark.parametrize("style", ["recompute", "verify", "exhaustive"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recompute_reflections_name_the_fault_then_fix_from_the_true_first_step(seed, style):
    from r3kit.tasks.countdown import diagnose, extract_answer, written_operations

    task = get_task("countdown", style="compact")
    rng = random.Random(seed)
    problems = iter_problems(None, seed=seed, num_counts=(3,), max_num=15, max_target=60)
    made = 0
    for problem in itertools.islice(problems, 60):
        turns = conversation(problem, "reflect", rng, work=True, style=style)
        if turns is None:
            continue
        made += 1
        attempt, reflection, retry = turns[1][1], turns[3][1], turns[5][1]
        assert not task.verify(attempt, problem).ok
        fault, first = diagnose(attempt, problem["nums"], problem["target"])
        assert reflection.startswith(fault + " ")
        plan = reflection[len(fault) + 1:]
        assert all(written_operations(plan))  # the fix writes true values only
        conclusion = plan.rsplit(" so ", 1)[1]
        assert retry == f"<answer>{conclusion}</answer>" and task.verify(retry, problem).ok
        assert conclusion != extract_answer(attempt)  # never the failed equation
        keeps = [r for r, _ in plans(problem["nums"], problem["target"]) if r.split(",")[0] == first]
        assert not keeps or plan.split(",")[0] == first  # a plan that keeps the true first step, where one exists
        searched = re.findall(r"=(\d+)( vs \d+)? (no|so)", plan)
        assert searched[-1][2] == "so" and all(said == "no" for *_, said in searched[:-1])
        assert all(int(value) != problem["target"] for value, *_ in searched[:-1])  # rejected by their true values
        assert all(versus == (f" vs {problem['target']}" if style != "recompute" else "") for _, versus, _ in searched)
        read = task.read_reflection(problem, attempt, reflection)
        assert read == {"values_right": 1.0, "names_the_fault": True, "conclusion_verifies": True,
                        "repeats_failed": False}
    assert made > 40


def test_recompute_retries_without_a_reflection_solve_afresh_after_a_faulty_attempt():
    rng = random.Random(4)
    problem = {"target": 21, "nums": [9, 2, 3]}
    for kind in ("no_reflect", "generic"):
        turns = conversation(problem, kind, rng, work=True, style="recompute")
        assert not TASK.verify(turns[1][1], problem).ok
        assert TASK.verify(turns[-1][1], problem).ok and turns[-1][2]
    solve = conversation(problem, "solve", rng, work=True, style="recompute")
    assert len(solve) == 2 and TASK.verify(solve[1][1], problem).ok


def test_arithmetic_conversations_write_true_values_of_operations_in_the_students_range():
    from r3kit.tasks.countdown import written_operations

    cfg, rng = StudentConfig(max_num=15), random.Random(0)
    ops = set()
    for _ in range(300):
        (_, ask, asked_trained), (_, said, said_trained) = arithmetic(cfg, rng)
        assert ask == "compute " + said.split("=")[0] and not asked_trained and said_trained
        assert written_operations(said) == [True]
        ops.add(re.search(r"[+\-*/]", said).group())
    assert ops == {"+", "-", "*", "/"}


def test_arith_steps_come_first_then_the_mix_with_its_arith_share():
    cfg = StudentConfig(steps=40, batch_size=1, arith_steps=3, mix_solve=0.5, mix_reflect=0, mix_no_reflect=0,
                        mix_generic=0, mix_arith=0.5, worked_attempts=True, reflection_style="recompute")
    tokenizer = build_char_tokenizer()
    batches = _batches(cfg, tokenizer, set(), random.Random(0))
    prompts = [tokenizer.decode(next(batches)[0][0].tolist(), skip_special_tokens=True) for _ in range(40)]
    arith = [p.startswith("compute ") for p in prompts]
    assert arith[:3] == [True] * 3
    assert 5 <= sum(arith[3:]) <= 32  # about half of the mixed batches


def test_a_student_saved_before_the_arithmetic_settings_keeps_its_identity():
    cfg = StudentConfig(steps=12)
    identity = training_identity(cfg, "countdown", None, set())
    old = {k: v for k, v in identity["config"].items() if k not in ("mix_arith", "arith_steps")}
    summary = {"config": old, "trained_on": {k: v for k, v in identity.items() if k != "config"}}
    assert recorded_identity(summary) == identity
    assert recorded_identity({**summary, "config": {**old, "steps": 13}}) != identity


def test_the_arithmetic_probe_scores_exact_answers_by_operation(monkeypatch):
    """A generator that answers every operation but multiplication right scores 1 on +, -, / and 0 on *."""
    from types import SimpleNamespace

    from r3kit.student import countdown as student
    from r3kit.tasks.countdown import operations

    class Answering:
        def __init__(self, *args, **kwargs):
            pass

        def generate(self, conversations, sampling):
            out = []
            for c in conversations:
                a, op, b = re.fullmatch(r"compute (\d+)([+\-*/])(\d+)", c[0]["content"]).groups()
                value = operations(f"{a}{op}{b}=0")[0][4]
                out.append(SimpleNamespace(text=f"{a}{op}{b}={value + (op == '*')} "))
            return out

    monkeypatch.setattr(student, "HFGenerator", Answering)
    probe = student.arithmetic_accuracy(None, None, StudentConfig(max_num=15), n=200)
    assert probe["n"] == 200 and probe["by_op"]["*"] == 0
    assert probe["by_op"]["+"] == probe["by_op"]["-"] == probe["by_op"]["/"] == 1
    assert 0.6 < probe["accuracy"] < 0.9


def test_a_countdown_student_stops_once_its_arithmetic_reaches_the_rule(tmp_path, monkeypatch):
    """With stop_at_arithmetic the single-operation probe runs every check_every steps after the arith steps, and
    the student stops at the first check that reaches it; a student that never reaches it trains every step."""
    from r3kit.student import countdown as student

    scores = iter([0.5, 0.8, 0.95, 1.0])
    monkeypatch.setattr(student, "arithmetic_accuracy", lambda model, tokenizer, cfg, n=400: {"accuracy": next(scores)})
    cfg = StudentConfig(hidden=32, layers=1, heads=2, steps=12, batch_size=2, warmup_steps=2, arith_steps=2,
                        mix_arith=0.5, check_every=2, stop_at_arithmetic=0.9, max_num=9, max_target=30)
    stopped = make_student(cfg, tmp_path / "stopped")
    assert [c["step"] for c in stopped["validation_checks"]] == [4, 6, 8]
    assert [c["arithmetic"] for c in stopped["validation_checks"]] == [0.5, 0.8, 0.95]
    assert stopped["steps_trained"] == 8 and stopped["reached_stop_at_arithmetic"] is True
    monkeypatch.setattr(student, "arithmetic_accuracy", lambda model, tokenizer, cfg, n=400: {"accuracy": 0.1})
    never = make_student(dataclasses.replace(cfg, steps=6), tmp_path / "never")
    assert never["steps_trained"] == 6 and never["reached_stop_at_arithmetic"] is False
    with pytest.raises(ValueError, match="stop_at_arithmetic must be in"):
        StudentConfig(stop_at_arithmetic=0).validate()


def test_a_searched_plan_rejects_second_steps_by_their_true_values():
    from r3kit.tasks.countdown import operations

    plan, rng, counts = "49-37=12,12*5=60 so (49-37)*5", random.Random(0), set()
    for _ in range(50):
        text = searched(plan, 60, rng)
        steps, answer = text.rsplit(" so ", 1)
        parts = steps.split(",")
        assert answer == "(49-37)*5" and parts[0] == "49-37=12" and parts[-1] == "12*5=60"
        tried = parts[1:-1]
        counts.add(len(tried))
        assert all(t.endswith(" no") for t in tried) and len(set(tried)) == len(tried)
        for a, op, b, claimed, true in operations(steps):
            assert claimed == true  # every value written is its true value
            assert {a, b} == {12, 5} or (a, op, b) == (49, "-", 37)
            assert claimed != 60 or (a, op, b) == (12, "*", 5)
    assert counts == {0, 1, 2}


def test_a_training_state_saved_before_the_arithmetic_settings_still_resumes(tmp_path):
    import torch

    from r3kit.student.countdown import _load_state

    identity = training_identity(StudentConfig(steps=12), "countdown", None, set())
    old = {**identity, "config": {k: v for k, v in identity["config"].items()
                                  if k not in ("mix_arith", "arith_steps", "stop_at_arithmetic")}}
    torch.save({"identity": old, "step": 5}, tmp_path / "state.pt")
    assert _load_state(tmp_path / "state.pt", identity)["step"] == 5
    torch.save({"identity": {**old, "config": {**old["config"], "steps": 13}}, "step": 5}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other settings \(differing: config.steps\)"):
        _load_state(tmp_path / "other.pt", identity)


def test_comparisons_stop_only_on_equal_numbers_and_only_students_that_compare_learn_them():
    cfg, rng = StudentConfig(max_num=15, max_target=40), random.Random(0)
    said = []
    for _ in range(400):
        (_, ask, asked_trained), (_, answer, trained) = comparison(cfg, rng)
        value, target = map(int, ask.removeprefix("compare ").split())
        assert answer == f"{value} vs {target} {'so' if value == target else 'no'}" and trained and not asked_trained
        said.append(answer.endswith("so"))
    assert 150 < sum(said) < 250  # equal about half the time
    for style, compares in (("verify", True), ("exhaustive", True), ("recompute", False)):
        cfg = StudentConfig(steps=60, batch_size=1, mix_solve=0, mix_reflect=0, mix_no_reflect=0, mix_generic=0,
                            mix_arith=1.0, worked_attempts=True, reflection_style=style)
        tokenizer = build_char_tokenizer()
        batches = _batches(cfg, tokenizer, set(), random.Random(0))
        prompts = [tokenizer.decode(next(batches)[0][0].tolist(), skip_special_tokens=True) for _ in range(60)]
        assert any(p.startswith("compare ") for p in prompts) is compares
        assert any(p.startswith("compute ") for p in prompts)


@pytest.mark.parametrize("seed", [0, 1])
def test_an_exhaustive_reflection_tries_every_second_step_in_order_and_draws_nothing(seed):
    """The same problem and failed attempt give the same reflection whatever the random state; its second steps are
    those of SECOND_STEPS from its first step's value, in that order, up to the first that reaches the target."""
    from r3kit.student.countdown import SECOND_STEPS, second_steps
    from r3kit.tasks.countdown import diagnose

    rng = random.Random(seed)
    problems = iter_problems(None, seed=seed, num_counts=(3,), max_num=15, max_target=60)
    made = 0
    for problem in itertools.islice(problems, 80):
        turns = conversation(problem, "reflect", rng, work=True, style="exhaustive")
        if turns is None:
            continue
        made += 1
        attempt, reflection = turns[1][1], turns[3][1]
        options = plans(problem["nums"], problem["target"])
        state = rng.getstate()
        assert recompute(attempt, problem, options, random.Random(99), "exhaustive")[0] == reflection
        assert rng.getstate() == state  # nothing drawn from the caller's stream either
        fault, first = diagnose(attempt, problem["nums"], problem["target"])
        plan = reflection[len(fault) + 1:]
        step, *tried = plan.rsplit(" so ", 1)[0].split(",")
        if first in {p.split(",")[0] for p, _ in options}:
            assert step == first
        a, b = map(int, re.findall(r"\d+", step.split("=")[0]))
        rest = list(problem["nums"])
        rest.remove(a)
        rest.remove(b)
        expected = second_steps(int(step.split("=")[1]), rest[0])
        assert [t.split(" vs ")[0] for t in tried] == [w for w, *_ in expected][: len(tried)]
        assert [int(t.split("=")[1].split(" ")[0]) == problem["target"] for t in tried] == [False] * (len(tried) - 1) + [True]
        assert len(tried) <= len(SECOND_STEPS)
    assert made > 50
