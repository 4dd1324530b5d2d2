"""Integrations with the ecosystem's trainers; each module imports its library only when imported.

trl_distillation.py   AdaKDDistillationTrainer: AdaKD inside TRL's DistillationTrainer
"""
