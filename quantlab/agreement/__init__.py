"""Token-level agreement of candidate lanes with the reference lane.

KL(reference ‖ candidate) per token from top-k log-probabilities (kl.py, with the
approximation stated there), same-top-token rate and the rank of the reference's token
in the candidate's list (compare.py), on the shared prefix of two streamed answers or,
with vLLM, teacher-forced over the reference's whole answer (teacher.py). The parsers for
every wire format are in logprobs.py; report aggregates with bootstrap intervals over
cases in summary.py. Nothing here imports the TUI.
"""

# Nothing is re-exported: importing a submodule (the client imports logprobs.py on every
# start) must not pull in numpy through kl.py; import what you need from its module.
