"""Out to where people run models: the Hub (bundle, point, Space), llama.cpp GGUF and Ollama, serving rank limits.
"""
