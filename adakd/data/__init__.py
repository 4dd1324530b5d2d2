"""Instruction data and its tokenisation.

instructions.py      the embedded chatterbot corpus and the Dolly / Alpaca file formats
tokenize.py          prompts, encoded examples (labels -100 on the prompt), collate
"""
