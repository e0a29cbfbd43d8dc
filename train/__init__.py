"""mfrec.train: interaction data, the matrix factorisation model, its training and its artifact.

This package never imports Flask, boto3 or :mod:`mfrec.serve`.
"""
