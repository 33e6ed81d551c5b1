"""Benchmarks: the API and file transfers against bare-Django baselines in the same server.

Run with `python -m bench` (see bench/README.md). The views in bench/views.py are
served under /bench/ only when DXWEB_BENCH_VIEWS=1.
"""
