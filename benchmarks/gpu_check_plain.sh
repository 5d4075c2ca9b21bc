#!/usr/bin/env bash
# The loader="transformers" path on one CUDA card (the ZeRO-3 / vLLM-server path without Unsloth), through the
# launchers: vanilla evaluation in a plain process, mining under `accelerate launch`, 2 R3 GRPO steps with LoRA under
# `torchrun` (an NCCL process group of one: TRL's own GRPO forward, its Triton kernel), the trained adapter evaluated.
#     bash benchmarks/gpu_check_plain.sh RUN_DIR   (RUN_DIR holds a cpu-demo student: student/, student.json)
# Each stage is its own process (loader="transformers" trains only where Unsloth was never imported).
set -u
R=${1:?usage: bash benchmarks/gpu_check_plain.sh RUN_DIR (a fresh folder holding student/ and student.json)}
if [ ! -d "$R/student" ] || [ -e "$R/train" ] || [ -e "$R/failures" ]; then
  echo "RUN_DIR must hold a cpu-demo student (student/) and no earlier failures/ or train/ (they would be resumed)" >&2
  exit 2
fi
export R3KIT_REPORT_TO=none
SETS=(--profile cpu-demo --out "$R" --set model.loader=transformers --set data.n_train=2000 --set data.n_validation=200
      --set evaluate.n_examples=300 --set mine.chunk_size=2000 --set train.steps=2 --set train.finetune=lora
      --set train.problems_per_step=16 --set train.group_size=8 --set train.micro_batch_size=32
      --set train.learning_rate=1e-4 --set 'train.lora_config={"r": 16, "lora_alpha": 32}' --set train.save_steps=1)
status=0
step() {  # name, command...
  local name=$1; shift
  local t0=$SECONDS
  "$@"; local rc=$?
  echo "== $name: rc=$rc, $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || status=1
}
step evaluate_vanilla python -m r3kit run evaluate "${SETS[@]}" --which vanilla
step mine_accelerate python -m accelerate.commands.launch --num_processes 1 -m r3kit run mine "${SETS[@]}"
step train_r3_torchrun python -m torch.distributed.run --nproc_per_node 1 -m r3kit run train "${SETS[@]}" --arm r3
step evaluate_trained python -m r3kit run evaluate "${SETS[@]}" --which trained
for f in eval/vanilla/metrics.json eval/trained/metrics.json metrics.json train/r3/log.csv; do
  echo "-- $f"; cat "$R/$f" 2>/dev/null | head -c 1500; echo
done
exit $status
