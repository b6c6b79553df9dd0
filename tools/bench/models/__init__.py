"""Helpers of the benchmark corpus builder (tools/bench/corpus.py).

cnn.py and imagenets.py need torch (bench venv only); filetypes.py and
sentences.py need only the standard library and numpy.
"""
