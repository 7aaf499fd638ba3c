"""A realistic vLLM ``/metrics`` page, built the way vLLM builds it: prometheus_client's own
registry and text exposition (``generate_latest``), with vLLM's metric families, labels and
histogram buckets (from ``vllm/v1/metrics/loggers.py``; V0 names for the old engine), the
process/Python collectors every vLLM process exports, and the HTTP metrics of
prometheus-fastapi-instrumentator that vLLM's API server adds. Used by the server-stats
tests (old and new names) and by ``benchmarks/metrics_parse_cost.py`` (parse cost per scrape).

Versions: ``"v0.6"`` (V0 engine: ``gpu_cache_usage_perc``, ``num_requests_swapped``,
``time_per_output_token_seconds``), ``"v0.10"`` (V1 engine: ``kv_cache_usage_perc`` next to the
deprecated ``gpu_cache_usage_perc``), ``"v0.12"`` (deprecated names gone;
``inter_token_latency_seconds``).
"""

from __future__ import annotations

import random

import prometheus_client as pc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]  # fmt: skip
TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0]  # fmt: skip
LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                   60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0]  # fmt: skip
ITER_BUCKETS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
HTTP_HIGHR = [0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5,
              4.0, 4.5, 5.0, 7.5, 10.0, 30.0, 60.0]  # fmt: skip


def _1_2_5(limit: int) -> list[float]:
    """vLLM's ``build_1_2_5_buckets``: 1, 2, 5, 10, 20, 50 … up to ``limit``."""
    out, exp = [], 0
    while True:
        for m in (1, 2, 5):
            v = m * 10**exp
            if v > limit:
                return out
            out.append(float(v))
        exp += 1


def vllm_metrics_page(
    version: str = "v0.12",
    *,
    model: str = "Qwen/Qwen2.5-7B-Instruct-AWQ",
    running: int = 3,
    waiting: int = 1,
    kv_usage: float = 0.25,
    prompt_tokens: int = 12_000,
    generation_tokens: int = 48_000,
    preemptions: int = 2,
    requests: int = 200,
    max_model_len: int = 32_768,
    seed: int = 0,
) -> str:
    """The text of one scrape of a vLLM server that has served ``requests`` requests."""
    rnd = random.Random(seed)
    r = CollectorRegistry()
    pc.ProcessCollector(registry=r)
    pc.PlatformCollector(registry=r)
    pc.GCCollector(registry=r)
    v0 = version == "v0.6"
    labels = ["model_name"] if v0 else ["model_name", "engine"]
    lv = (model,) if v0 else (model, "0")

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(name, doc, labels, registry=r).labels(*lv).set(value)

    def counter(name: str, doc: str, value: float) -> None:
        Counter(name, doc, labels, registry=r).labels(*lv).inc(value)

    def hist(name: str, doc: str, buckets: list[float], draw: object) -> None:
        h = Histogram(name, doc, labels, buckets=buckets, registry=r).labels(*lv)
        for _ in range(requests):
            h.observe(draw())  # type: ignore[operator]

    gauge("vllm:num_requests_running", "Number of requests in model execution batches.", running)
    gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", waiting)
    if v0:
        gauge("vllm:num_requests_swapped", "Number of requests swapped to CPU.", 0)
        gauge("vllm:cpu_cache_usage_perc", "CPU KV-cache usage.", 0.0)
        gauge("vllm:avg_prompt_throughput_toks_per_s", "Average prefill throughput.", 812.5)
        gauge("vllm:avg_generation_throughput_toks_per_s", "Average generation throughput.", 96.2)
    if version in ("v0.6", "v0.10"):
        gauge(
            "vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", kv_usage
        )
    if not v0:
        gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", kv_usage)
        counter("vllm:prefix_cache_queries", "Prefix cache queries.", prompt_tokens)
        counter("vllm:prefix_cache_hits", "Prefix cache hits.", prompt_tokens // 3)
    if version == "v0.10":
        counter("vllm:gpu_prefix_cache_queries", "DEPRECATED.", prompt_tokens)
        counter("vllm:gpu_prefix_cache_hits", "DEPRECATED.", prompt_tokens // 3)
    counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", preemptions)
    counter("vllm:prompt_tokens", "Number of prefill tokens processed.", prompt_tokens)
    counter("vllm:generation_tokens", "Number of generation tokens processed.", generation_tokens)
    success = Counter(
        "vllm:request_success",
        "Count of successfully processed requests.",
        [*labels, "finished_reason"],
        registry=r,
    )
    for reason, share in (("stop", 0.8), ("length", 0.2), ("abort", 0.0)):
        success.labels(*lv, reason).inc(int(requests * share))
    lens = _1_2_5(max_model_len)
    hist("vllm:request_prompt_tokens", "Prefill tokens.", lens, lambda: rnd.randint(20, 4000))
    hist("vllm:request_generation_tokens", "Gen tokens.", lens, lambda: rnd.randint(1, 800))
    hist(
        "vllm:iteration_tokens_total", "Tokens per step.", ITER_BUCKETS, lambda: rnd.randint(1, 900)
    )
    hist("vllm:request_max_num_generation_tokens", "Max gen.", lens, lambda: 1024)
    hist("vllm:request_params_n", "n.", [1, 2, 5, 10, 20], lambda: 1)
    hist("vllm:request_params_max_tokens", "max_tokens.", lens, lambda: 1024)
    hist("vllm:time_to_first_token_seconds", "TTFT.", TTFT_BUCKETS, lambda: rnd.uniform(0.02, 0.9))
    if version == "v0.12":
        hist(
            "vllm:inter_token_latency_seconds",
            "ITL.",
            TPOT_BUCKETS,
            lambda: rnd.uniform(0.008, 0.03),
        )
        hist(
            "vllm:request_time_per_output_token_seconds",
            "TPOT per request.",
            TPOT_BUCKETS,
            lambda: rnd.uniform(0.008, 0.03),
        )
    else:
        hist(
            "vllm:time_per_output_token_seconds",
            "TPOT.",
            TPOT_BUCKETS,
            lambda: rnd.uniform(0.008, 0.03),
        )
    for name in ("e2e_request_latency", "request_queue_time", "request_inference_time",
                 "request_prefill_time", "request_decode_time"):  # fmt: skip
        hist(f"vllm:{name}_seconds", name, LATENCY_BUCKETS, lambda: rnd.uniform(0.0, 30.0))
    info = Gauge(
        "vllm:cache_config_info",
        "Information of the LLMEngine CacheConfig",
        ["block_size", "cache_dtype", "gpu_memory_utilization", "num_gpu_blocks", "engine"],
        registry=r,
    )
    info.labels("16", "auto", "0.45", "2731", "0").set(1)

    # prometheus-fastapi-instrumentator, as vLLM's API server sets it up
    handlers = ("/v1/chat/completions", "/v1/models", "/health", "/metrics", "/v1/completions")
    reqs = Counter("http_requests_total", "Total number of requests by method, status and handler.",
                   ["method", "status", "handler"], registry=r)  # fmt: skip
    resp = pc.Summary("http_response_size_bytes", "Content length of outgoing responses.",
                      ["handler"], registry=r)  # fmt: skip
    req_size = pc.Summary("http_request_size_bytes", "Content length of incoming requests.",
                          ["handler"], registry=r)  # fmt: skip
    highr = Histogram("http_request_duration_highr_seconds", "Latency with many buckets.",
                      buckets=HTTP_HIGHR, registry=r)  # fmt: skip
    dur = Histogram("http_request_duration_seconds", "Latency with only few buckets by handler.",
                    ["handler", "method"], buckets=[0.1, 0.5, 1.0], registry=r)  # fmt: skip
    for handler in handlers:
        reqs.labels("POST" if "completions" in handler else "GET", "2xx", handler).inc(requests)
        resp.labels(handler).observe(rnd.randint(200, 9000))
        req_size.labels(handler).observe(rnd.randint(0, 4000))
        dur.labels(handler, "POST").observe(rnd.uniform(0.0, 3.0))
    for _ in range(requests):
        highr.observe(rnd.uniform(0.0, 12.0))
    return generate_latest(r).decode()
