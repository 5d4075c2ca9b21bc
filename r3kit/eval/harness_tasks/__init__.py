"""lm-evaluation-harness tasks shipped with r3kit (YAML configs, found by r3kit.eval.forgetting.task_manager).

    r3kit_countdown_four_numbers  Countdown with 4 numbers (1-50) and targets 1-100
    r3kit_countdown_far_targets   Countdown with 3 numbers (1-50) and targets 101-300
Both step outside the world the cpu-demo student is trained in (3 numbers, targets 1-100): the forgetting
check of the CPU profiles, where the student knows nothing but Countdown. The problems are generated
offline and deterministically (r3kit.data.countdown, seed in the YAML), written in the compact prompt
style the student reads, and scored first try by the kit's own Countdown verifier (`accuracy`, 0 or 1).
"""

from pathlib import Path

FOLDER = Path(__file__).parent
