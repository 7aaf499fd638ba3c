# Sourced by every step on the GPU machine: where things are, and the Python path.
# (Each can be overridden for a dry run elsewhere: Q G O M P.)
export Q=${Q:-/root/ql} G=${G:-/root/gpu} O=${O:-/root/out} M=${M:-/root/models/smollm2-135m-instruct-bf16}
P=${P:-8000}
export PYTHONPATH=$Q:/root/vsite:/root/site${PYTHONPATH:+:$PYTHONPATH} PATH=/root/vsite/bin:$PATH
export VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export LANES="bf16=http://127.0.0.1:$P fp8=http://127.0.0.1:$((P+1)) fp8kv=http://127.0.0.1:$((P+2))"
export EPS="--endpoint bf16=http://127.0.0.1:$P --endpoint fp8=http://127.0.0.1:$((P+1)) --endpoint fp8kv=http://127.0.0.1:$((P+2))"
mkdir -p $O
