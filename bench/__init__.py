"""Figures for barbican-lab, each measured beside a reference in one run.

Run ``python -m bench`` from the repository root (``--quick`` for tiny
counts).  Everything runs on 127.0.0.1, on free ports, in temporary state
folders, and every loop is bounded in count and time.
"""
