"""Token-level agreement of candidate lanes with the reference lane.

KL(reference ‖ candidate) per token from top-k log-probabilities (kl.py, with the
approximation stated there), same-top-token rate and the rank of the reference's token
in the candidate's list (compare.py), on the shared prefix of two streamed answers or,
with vLLM, teacher-forced over the reference's whole answer (teacher.py). The parsers for
every wire format are in logprobs.py; report aggregates with bootstrap intervals over
cases in summary.py. Nothing here imports the TUI.
"""

from quantlab.agreement.compare import SHARED_PREFIX, TEACHER_FORCED, Agreement
from quantlab.agreement.kl import APPROXIMATION, kl_full, kl_lower_bound, kl_topk

__all__ = [
    "APPROXIMATION",
    "SHARED_PREFIX",
    "TEACHER_FORCED",
    "Agreement",
    "kl_full",
    "kl_lower_bound",
    "kl_topk",
]
