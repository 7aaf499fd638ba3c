#!/bin/bash
# After setup.sh: quantlab's own dependencies into /root/site, the 8B-shaped dummy model,
# then three servers that outlive this call (setsid nohup), and wait for /health.
#   big  :8010  8B-shaped, random weights, CUDA graphs (vLLM's default), prefix caching off
#   bf16 :8000  SmolLM2-135M-Instruct BF16, eager          (teacher forcing, logprobs cost)
#   fp8  :8001  the same with --quantization fp8, eager
source "$(dirname "$0")/env.sh"
if [ ! -f $O/launched ]; then
  python3 -m pip install -q --no-index --no-deps --target /root/site /root/gpu/wheels/*.whl 2>&1 | grep -v WARN | tail -2
  python3 $S/dummy_model.py $M $BIG
  date +%s > $O/launched
  C="--host 127.0.0.1"
  setsid nohup vllm serve $BIG --load-format dummy --served-model-name big --port 8010 \
    --gpu-memory-utilization 0.55 --max-model-len 4096 --no-enable-prefix-caching $C \
    > $O/big.log 2>&1 < /dev/null &
  setsid nohup vllm serve $M --served-model-name bf16 --port 8000 --gpu-memory-utilization 0.12 \
    --max-model-len 8192 --enforce-eager $C > $O/bf16.log 2>&1 < /dev/null &
  setsid nohup vllm serve $M --served-model-name fp8 --port 8001 --gpu-memory-utilization 0.12 \
    --max-model-len 8192 --enforce-eager --quantization fp8 $C > $O/fp8.log 2>&1 < /dev/null &
fi
t0=$(date +%s); tl=$(cat $O/launched)
for p in 8000 8001 8010; do
  until python3 -c "import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=2)" http://127.0.0.1:$p/health 2>/dev/null; do
    if [ $(( $(date +%s) - t0 )) -gt ${HEALTH_TIMEOUT:-480} ]; then
      echo "port $p not healthy $(( $(date +%s) - tl )) s after launch"; tail -n 15 $O/*.log; exit 3
    fi
    sleep 2
  done
  echo "port $p healthy $(( $(date +%s) - tl )) s after launch"
done
nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version --format=csv | tee $O/nvidia-smi.txt
