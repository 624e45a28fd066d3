"""Benchmarks: composed conversations with exact truth (`synth`), scoring (`evaluation`) and the
per-stage harnesses (`faces_bench`, `talk_bench`, `separation_bench`). Not used by a pipeline run."""
