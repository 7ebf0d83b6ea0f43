#!/usr/bin/env bash
# Stage what a GPU batch needs on a bare device machine (no network there, 64 MiB per call with the
# working tree, ~15 MB of it tracked files), in three carry folders ignored by git (.git/info/exclude):
#
#   .dev/a   the first part of the bundled SmolLM2 GGUF           (call 1: carried, copied to /tmp/stage)
#   .dev/b   its second part + the benchmark data (sts, transfer, nli, unlabeled; gzipped tar)   (call 2)
#   .dev/c + .whl   generator factors and the wheels the image lacks or has in other versions    (call 3: setup + batch)
#
# Then, on the device (see benchmarks/results/gpu_batch_notes.md for the exact run calls):
#   call 1: mkdir -p /tmp/stage && cp .dev/a/* /tmp/stage/
#   call 2: cp .dev/b/* /tmp/stage/
#   call 3: source benchmarks/gpu_setup.sh && LANES="d e" bash benchmarks/gpu_batch.sh 480
# The machine stays warm ~30 s after a call: make the three calls back to back.
#
#   bash benchmarks/gpu_prepare.sh            # needs the internet (PyPI) for the wheels, and ../shared/data
set -eu
cd "$(dirname "$0")/.."
for d in /.dev/ /.whl/; do grep -qxF "$d" .git/info/exclude || echo "$d" >> .git/info/exclude; done
D=${LLMCSE_DATA:-../shared/data}
mkdir -p .dev/a .dev/b .dev/c .whl

# the GGUF in two parts (93 MB: more than one call carries beside the tree)
GGUF=$(python -c "from llmcse.utils.modelspec import _bundled_smollm2; print(_bundled_smollm2())")
[ -f .dev/a/smollm2.gguf.part-aa ] || split -b 48M "$GGUF" .dev/tmp.gguf.part-
[ -f .dev/tmp.gguf.part-aa ] && mv .dev/tmp.gguf.part-aa .dev/a/smollm2.gguf.part-aa && mv .dev/tmp.gguf.part-ab .dev/b/smollm2.gguf.part-ab
tar czf .dev/b/data.tgz -C "$D" sts transfer nli unlabeled

# the self-instruct generator as rank-16 factors over the seeded one (gen-seeded's own factors are in runs/factors)
[ -f runs/factors/gen-si2.safetensors ] ||
  OMP_NUM_THREADS=1 nice python benchmarks/lowrank.py save runs/gen23/gen-seeded runs/gen23/gen-si2 runs/factors/gen-si2.safetensors
cp -u runs/factors/gen-seeded.safetensors runs/factors/gen-si2.safetensors .dev/c/

# wheels for the device's Python 3.12: this project's pins where the image differs (transformers 5.17 and
# sentence-transformers 6.0 there), and what it lacks (datasets and its own needs, gguf, pytrec_eval, bm25s).
# Not huggingface_hub: a carried one needed a package the image lacks (gpu_batch_notes.md); the image's 1.33 fits.
pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  transformers==5.23.0 sentence-transformers==6.2.0 peft==0.21.2 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
  gguf==0.19.0 pytrec_eval-terrier bm25s==0.3.16 tokenizers==0.23.3
du -sh .dev/a .dev/b .dev/c .whl
