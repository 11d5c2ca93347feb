"""Load benchmark: Latch against a bare Starlette endpoint, in one run, on one machine.

`python -m bench` (or `make bench`) writes bench/RESULTS.md; `python -m bench.micro` times the
token verifier in-process; `python -m bench.profile` samples Latch under load with py-spy.
"""
