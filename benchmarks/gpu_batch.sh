#!/usr/bin/env bash
# The generation and tuning work of issues 22 and 23 in one GPU batch (plain llmcse commands; on one
# CPU thread the same commands take ~40 h: tune-generator alone ~70 s a step of 8 pairs).
#
#   bash benchmarks/gpu_batch.sh SECONDS [SMALL]
#
# Runs from the repository root with runs/retrieval/ and runs/gen23/ prepared on the CPU machine
# (round-trip filter + pairs need all-MiniLM-L6-v2; see benchmarks/results/gpu_batch_notes.md):
#   A  NFCorpus: expand round 0 (resumes the CPU-made file)  ||  tune the round-1 generator on the pairs
#      from round 0's first 1,472 documents  ->  expand round 1 (all 3,633 documents)
#   B  ArguAna: tune the round-1 generator on round 0's round-trip-kept pairs -> expand round 1
#   C  issue 23: tune SmolLM2 on 500 human NLI triplets (seeded generator) -> generate from every
#      Wikipedia seed -> filter (SmolLM2 judge) -> pairs from the kept records -> tune again
#      (self-instruct) -> generate -> filter
#   d  issue 23: the training head-to-head (benchmarks/training.py --base smollm2 --pairs 2560), seeds 42-44
#   e  issue 23: the self-instruct generator from every seed (twice: >= 10,000 records), judged, its rows
# LANES="d e" picks lanes (default "a b c"); the device setup: benchmarks/gpu_prepare.sh, benchmarks/gpu_setup.sh.
# Every step is resumable and stops cleanly (SIGINT) at the deadline; results are packed into
# $OUT (or runs/gpu_batch/) every minute. The tuned generators come back as rank-16 float16
# factors of (tuned - base) weights (benchmarks/lowrank.py), the merged folders being 540 MB each.
# SMALL=1: a few documents / seeds and 2 tuning steps, for checking the script on a CPU.
set -u
BUDGET=${1:-540}
SMALL=${2:-0}
START=$SECONDS
OUT=${OUT:-runs/gpu_batch}
mkdir -p "$OUT" runs/gen23 runs/logs
D=${LLMCSE_DATA_DIR:-../shared/data}
left() { echo $((BUDGET - (SECONDS - START) - 45)); }   # 45 s kept for packing
step() {  # step NAME CMD...: run under the deadline, log to runs/logs/NAME.log
  local name=$1; shift
  local t; t=$(left)
  if [ "$t" -le 5 ]; then echo "$(date +%T) skip $name (deadline)" | tee -a runs/logs/steps.log; return 1; fi
  echo "$(date +%T) start $name: $*" | tee -a runs/logs/steps.log
  timeout --signal=INT --kill-after=20 "$t" "$@" > "runs/logs/$name.log" 2>&1
  local rc=$?
  echo "$(date +%T) end $name rc=$rc" | tee -a runs/logs/steps.log
  return $rc
}
if [ "$SMALL" = 1 ]; then
  N_R1="--n 6"; N_SEEDS=8; TUNE="--max-steps 2"
  N_R0_EXTRA="--n 1476"   # 4 more documents than the CPU-made file
else
  N_R1=""; N_SEEDS=11548; TUNE=""; N_R0_EXTRA=""
fi
EXP="--queries 3 --keywords 5 --max-doc-tokens 256 --llm-batch-size 256 --chunk-size 256"
GEN="--recipe nli --seeds $D/unlabeled/wiki_sentences.txt --n $N_SEEDS --max-new-tokens 64 --chunk-size 1024 --llm-batch-size 512"
FILT="--quantile 0.25 --llm-batch-size 256"
TG="--epochs 1 --lr 2e-4 --lora-r 16 --batch-size 8 --max-length 768"   # recipes/retrieval-self-instruct.toml

lane_a() {
  step nf-r0 llmcse expand --corpus $D/beir/nfcorpus/corpus.jsonl --out runs/retrieval/nfcorpus.exp.jsonl $EXP $N_R0_EXTRA &
  step nf-tune llmcse tune-generator --data runs/retrieval/nfcorpus.pairs.jsonl --out runs/retrieval/nfcorpus.gen-r1 \
    --base SmolLM2-135M-Instruct $TG $TUNE &&
  { [ -f runs/factors/nfcorpus.gen-r1.safetensors ] || step nf-factors python benchmarks/lowrank.py save SmolLM2-135M-Instruct runs/retrieval/nfcorpus.gen-r1 runs/factors/nfcorpus.gen-r1.safetensors; } &&
  step nf-r1 llmcse expand --corpus $D/beir/nfcorpus/corpus.jsonl --out runs/retrieval/nfcorpus.exp.r1.jsonl \
    --llm hf:runs/retrieval/nfcorpus.gen-r1 $EXP $N_R1
  wait
  # issue 22 scope 6: the generator as a PromptEOL embedder (tuned and base), on the raw expansions of both
  # rounds (the round-trip filter needs all-MiniLM-L6-v2, which is not here)
  local sets="--expansions raw=runs/retrieval/nfcorpus.exp.jsonl --expansions raw-r1=runs/retrieval/nfcorpus.exp.r1.jsonl"
  local weights="--weights 1,1,0 --weights 1,0,1 --weights 1,1,1 --weights 1,0.5,0.5 --weights 1,0.25,0.25 --weights mean"
  for which in gen-r1:runs/retrieval/nfcorpus.gen-r1 base:SmolLM2-135M-Instruct; do
    ( step pe-${which%%:*} llmcse prompteol --base ${which#*:} --out runs/retrieval/nfcorpus.${which%%:*}.prompteol &&
      step sweep-pe-${which%%:*} llmcse sweep-expansions --task nfcorpus --data-dir $D \
        --model runs/retrieval/nfcorpus.${which%%:*}.prompteol $sets $weights \
        --output-dir runs/retrieval/sweep-prompteol-${which%%:*} ) &
  done
  wait
}
lane_b() {
  step ag-tune llmcse tune-generator --data runs/retrieval/arguana.pairs.jsonl --out runs/retrieval/arguana.gen-r1 \
    --base SmolLM2-135M-Instruct $TG $TUNE &&
  { [ -f runs/factors/arguana.gen-r1.safetensors ] || step ag-factors python benchmarks/lowrank.py save SmolLM2-135M-Instruct runs/retrieval/arguana.gen-r1 runs/factors/arguana.gen-r1.safetensors; } &&
  step ag-r1 llmcse expand --corpus $D/beir/arguana/corpus.jsonl --out runs/retrieval/arguana.exp.r1.jsonl \
    --llm hf:runs/retrieval/arguana.gen-r1 $EXP $N_R1
}
lane_c() {
  step c-tune-seeded llmcse tune-generator --data runs/gen23/seeded.pairs.jsonl --out runs/gen23/gen-seeded \
    --base SmolLM2-135M-Instruct --epochs 2 --lr 2e-4 --lora-r 16 --batch-size 8 --max-length 512 $TUNE &&
  { [ -f runs/factors/gen-seeded.safetensors ] || step c-factors-seeded python benchmarks/lowrank.py save SmolLM2-135M-Instruct runs/gen23/gen-seeded runs/factors/gen-seeded.safetensors; } &&
  step c-gen-seeded llmcse generate $GEN --llm hf:runs/gen23/gen-seeded --out runs/gen23/nli_seeded.jsonl &&
  step c-filter-seeded llmcse filter --in runs/gen23/nli_seeded.jsonl --out runs/gen23/nli_seeded.kept.jsonl $FILT &&
  step c-pairs-si llmcse record-pairs --records runs/gen23/nli_seeded.kept.jsonl --out runs/gen23/si.pairs.jsonl &&
  step c-tune-si llmcse tune-generator --data runs/gen23/si.pairs.jsonl --out runs/gen23/gen-si \
    --base runs/gen23/gen-seeded --epochs 1 --lr 2e-4 --lora-r 16 --batch-size 8 --max-length 512 $TUNE &&
  { [ -f runs/factors/gen-si.safetensors ] || step c-factors-si python benchmarks/lowrank.py save runs/gen23/gen-seeded runs/gen23/gen-si runs/factors/gen-si.safetensors; } &&
  step c-gen-si llmcse generate $GEN --llm hf:runs/gen23/gen-si --out runs/gen23/nli_si.jsonl &&
  step c-filter-si llmcse filter --in runs/gen23/nli_si.jsonl --out runs/gen23/nli_si.kept.jsonl $FILT
}
# Issue 23's head-to-head (benchmarks/training.py, the bf16 SmolLM2 base, 2,560 rows = 80 steps): every data set
# at seed 42, five processes side by side; then seeds 43 and 44 of each, as the deadline allows.
H2H_ROWS="sup-simcse-500 synth-nli-seeded multicsr-seeded synth-nli-judged mix-500-seeded"
lane_d() {
  local seed row
  for seed in 42 43 44; do
    for row in $H2H_ROWS; do
      step d-$row-$seed python3 benchmarks/training.py --base smollm2 --pairs 2560 --rows $row --seeds $seed &
    done
    wait
  done
}
# Issue 23 scope 5 and the self-instruct rows: the self-instruct generator (gen-si2) writes from every Wikipedia
# seed twice (sampling seeds 1234 and 1235, two processes: >= 10,000 records), the first pass is judged (yes/no +
# cosine, as the seeded set was), then the rows: raw (2,560), judged, and raw at 10,000 rows.
lane_e() {
  local gen="$GEN --llm hf:runs/gen23/gen-si2"
  step e-gen-a llmcse generate $gen --seed 1234 --out runs/gen23/nli_si2.a.jsonl &
  step e-gen-b llmcse generate $gen --seed 1235 --out runs/gen23/nli_si2.b.jsonl &
  wait
  step e-judge llmcse filter --in runs/gen23/nli_si2.a.jsonl --out runs/gen23/nli_si2.a.judged.jsonl $FILT \
    --scoring yesno+cosine --embedder prompteol:SmolLM2-135M-Instruct || return 1
  cat runs/gen23/nli_si2.a.jsonl runs/gen23/nli_si2.b.jsonl > benchmarks/data/nli_si_smollm2.jsonl
  cp runs/gen23/nli_si2.a.judged.jsonl benchmarks/data/nli_si_smollm2.judged.jsonl
  step e-si python3 benchmarks/training.py --base smollm2 --pairs 2560 --rows synth-nli-si --seeds 42 &
  step e-si-judged python3 benchmarks/training.py --base smollm2 --pairs 2560 --rows synth-nli-si-judged --seeds 42 &
  step e-si-10k python3 benchmarks/training.py --base smollm2 --pairs 10000 --rows synth-nli-si --seeds 42 &
  wait
}
pack_de() {  # lanes d and e: the training results (small JSON files) and the self-instruct data, gzipped
  tar czf "$OUT/.results-de.tgz" benchmarks/results/training benchmarks/results/training.md benchmarks/results/training.json \
    runs/gen23/nli_si2.* runs/logs 2>/dev/null; mv "$OUT/.results-de.tgz" "$OUT/results-de.tgz"
  return 0
}
pack() {  # results (no model folders, no checkpoints) + factors, each file under the 16 MiB return limit
  tar czf "$OUT/.results.tgz" --exclude='*.gen-r1' --exclude='gen-seeded' --exclude='gen-si' \
    --exclude='*.checkpoints' --exclude='*.shards' --exclude='*.pairs.jsonl' --exclude='*.prompteol' runs/retrieval runs/gen23 runs/logs 2>/dev/null &&
    mv "$OUT/.results.tgz" "$OUT/results.tgz"
  for f in runs/factors/*.safetensors; do [ -f "$f" ] && cp -u "$f" "$OUT/"; done
  for m in runs/retrieval/nfcorpus.gen-r1 runs/retrieval/arguana.gen-r1 runs/gen23/gen-seeded runs/gen23/gen-si; do
    [ -f "$m/tune_generator.json" ] && cp "$m/tune_generator.json" "runs/logs/$(basename $m).tune_generator.json"
  done
  return 0
}
LANES=${LANES:-a b c}   # lanes a-c: the batch of 2026-11-29; d, e: issue 23's head-to-head and self-instruct rows
# lanes d, e: up to seven processes share the GPU and 16 cores (eval's transfer probes run on the CPU)
case " $LANES " in *" d "*|*" e "*) pack() { pack_de; }; export OMP_NUM_THREADS=2 ;; esac
packer() { while true; do sleep 60; pack; done; }

mkdir -p runs/factors
nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null | tee runs/logs/gpu.txt
packer & PACKER=$!
PIDS=""
for lane in $LANES; do lane_$lane & PIDS="$PIDS $!"; done
wait $PIDS
kill $PACKER 2>/dev/null
pack
echo "$(date +%T) done in $((SECONDS - START)) s" | tee -a runs/logs/steps.log
