"""The Gradio Space: sliders, chat, and many users' preferences batched into one forward pass.
"""
