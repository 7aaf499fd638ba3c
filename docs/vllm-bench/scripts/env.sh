# Sourced by every step on the GPU machine (second lease, 2026-12-02): paths and the Python path.
export Q=/root/ql O=/root/out M=/root/models/smollm2-135m-instruct-bf16 BIG=/root/models/llama-8b-shape
export S=$Q/docs/vllm-bench/scripts
export PYTHONPATH=$Q:/root/vsite:/root/site PATH=/root/vsite/bin:$PATH
export VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p $O
