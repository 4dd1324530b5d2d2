"""The training loop and what runs around it.

trainer.py           train() / resume(): set-up, the straight loop, one optimiser step, checkpoints
callbacks.py         RunView and the callbacks both trainers share (status, metrics, probes, evaluation)
validation_loss.py   DistiLLM's validation loss, a callback of the loop
probes.py            the per-token and per-group measurements behind the paper's figures
runsetup.py          models, data, optimiser, schedule and config.json for a run
regimes.py           student-generated data (gkd, distillm); replay.py, student_samples.py
checkpoint.py        checkpoints (safetensors + trainer state); signals.py: stop on SIGINT/SIGTERM
device.py            the device and dtype of a run, and torchrun's process group
sweep.py             grids of runs; rebuild.py: a run's trained student again from config.json
"""
