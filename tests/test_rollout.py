"""Episodes: turn order and roles, no reflection after a first-try success, the controls' conversations."""

import pytest
from fakes import ScriptedGenerator

from r3kit.core.episodes import CONDITIONS, EpisodeConfig, control_conversation, run_episodes
from r3kit.models.generation import HFGenerator
from r3kit.tasks import get_task

TASK = get_task("countdown", style="compact")
PROBLEMS = [{"target": 6, "nums": [1, 2, 3]}, {"target": 24, "nums": [3, 4, 2]}]


def script(conversation):
    """Solves the first problem at once; fails the second, reflects "plan", and solves it on retry."""
    last = conversation[-1]["content"]
    if last == "1 2 3 = 6":
        return "<answer>1+2+3</answer>"
    if last == "3 4 2 = 24":
        return "<answer>3+4+2</answer>"
    if last == TASK.prompts.reflection_request:
        return "plan: 3*4=12"
    return "<answer>3*4*2</answer>" if conversation[-2]["content"] == "plan: 3*4=12" else "<answer>9</answer>"


@pytest.fixture
def episodes(tiny):
    generator = ScriptedGenerator(tiny[1], script)
    return run_episodes(generator, TASK, PROBLEMS, EpisodeConfig(), conditions=CONDITIONS, progress=False), generator


def test_first_try_success_never_triggers_a_reflection(episodes):
    solved, _ = episodes[0]
    assert solved.first.ok and solved.second == {}
    assert solved.solved("reflection") and solved.solved("no_reflection")


def test_failed_episode_turns_are_in_order_and_roles(episodes):
    failed = episodes[0][1]
    assert not failed.first.ok and failed.first.reason == "value 9 is not the target 24"
    turns = failed.second["reflection"].messages
    assert [m["role"] for m in turns] == ["user", "assistant", "user", "assistant"]
    assert [m["content"] for m in turns] == [TASK.prompts.reflection_request, "plan: 3*4=12", TASK.prompts.retry_request,
                                             "<answer>3*4*2</answer>"]
    assert failed.second["reflection"].verdict.ok
    record = failed.to_dict()
    assert [m["role"] for m in record["first"]["messages"]] == ["user", "assistant"]


def test_controls_build_the_conversations_they_claim(episodes):
    failed, generator = episodes[0][1], episodes[1]
    no_reflection = failed.second["no_reflection"].messages
    assert [m["content"] for m in no_reflection[:-1]] == [TASK.prompts.retry_without_reflection]
    generic = failed.second["generic_reflection"].messages
    assert [m["content"] for m in generic[:-1]] == [TASK.prompts.reflection_request, TASK.prompts.generic_reflection,
                                                     TASK.prompts.retry_request]
    # the scripted retry only succeeds after the model's own plan, so the controls fail here
    assert not failed.second["no_reflection"].verdict.ok and not failed.second["generic_reflection"].verdict.ok
    # every condition answered the same first attempt: one batched call for attempts, then per condition
    assert len(generator.calls[0]) == 2 and all(len(call) == 1 for call in generator.calls[1:])
    assert control_conversation(TASK, PROBLEMS[1], "x", "no_reflection")[:2] == [*TASK.first_messages(PROBLEMS[1]),
                                                                                  {"role": "assistant", "content": "x"}][:2]
    with pytest.raises(ValueError, match="not a control"):
        control_conversation(TASK, PROBLEMS[1], "x", "reflection")


def test_episodes_run_batched_on_a_real_model(tiny):
    model, tokenizer = tiny
    generator = HFGenerator(model, tokenizer, batch_size=8)
    episodes = run_episodes(generator, TASK, PROBLEMS * 3, EpisodeConfig(8, 6, 8), progress=False)
    assert len(episodes) == 6
    for episode in episodes:
        assert 1 <= episode.attempt_tokens <= 8
        if not episode.first.ok:
            turn = episode.second["reflection"]
            assert 1 <= turn.reflection_tokens <= 6 and 1 <= turn.retry_tokens <= 8


def test_bad_inputs_fail_before_generation(tiny):
    never = ScriptedGenerator(tiny[1], script, fail_after=0)
    with pytest.raises(ValueError, match="no examples"):
        run_episodes(never, TASK, [], EpisodeConfig())
    with pytest.raises(ValueError, match="missing column"):
        run_episodes(never, TASK, [{"target": 3}], EpisodeConfig())
    with pytest.raises(ValueError, match="unknown condition"):
        run_episodes(ScriptedGenerator(tiny[1], script), TASK, PROBLEMS, EpisodeConfig(), conditions=("shout",))
