"""The whole recipe, and only here: its schema, loading, pre-flight, the run folder, the pipeline, the progress view.
"""
