"""The GPU acceptance run: one offline device command that brings back evidence even when cut off.

`scripts/gpu_acceptance.sh` installs the wheelhouse and starts `python3 -m dstune.acceptance`, which runs
the stages (environment, op builds, HE probe, trials) under one deadline and leaves exactly two files
under --out after every stage: summary.json and evidence.tar.gz.
"""
