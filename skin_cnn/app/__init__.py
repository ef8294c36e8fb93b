"""Whole workflows composed from the stages below (the end-to-end demo).

The command line (:mod:`skin_cnn.cli`) and the web server (:mod:`skin_cnn.serve`) are thin
adapters over these functions and the stage packages.
"""
