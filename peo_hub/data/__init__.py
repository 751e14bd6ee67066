"""Data in: dataset specs and formats, loading pairs and prompts, chat rendering, and the base model
(one resolver for embedded, GGUF, local and Hub bases).
"""
