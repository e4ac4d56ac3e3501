"""A lone client's batches: on every thread or on the worker's share, whichever measured cheaper
(pure), and the torch encoder that acts on it (a real model, threads as OpenMP counts them)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from sentence_transformers import SentenceTransformer

from sage_engine.backends.base import EmbeddingBatch, EmbeddingItem
from sage_engine.backends.embedding_batches import TokenMatrix
from sage_engine.backends.lone_threads import LoneThreads
from sage_engine.backends.sentence_transformers_backend import SentenceTransformersBackend, TorchEncoder, load_model


def _run(lone: LoneThreads, seconds: dict[bool, float], batches: int) -> list[bool]:
    """`batches` lone batches, each taking the time of the arm chosen for it."""
    chosen = []
    for _ in range(batches):
        arm = lone.choose()
        lone.record(arm, seconds[arm])
        chosen.append(arm)
    return chosen


def test_each_arm_is_measured_past_its_first_batch_before_the_cheaper_is_taken() -> None:
    lone = LoneThreads(explore_every=10)
    lone.record(lone.choose(), 0.050)  # every thread's first: OpenMP starting its threads
    assert lone.medians() == {}
    chosen = _run(lone, {True: 0.010, False: 0.013}, 3)
    assert chosen == [True, False, False]  # the share's first is not kept either
    assert lone.medians() == {True: 0.010, False: 0.013}
    assert _run(lone, {True: 0.010, False: 0.013}, 1) == [True]


def test_the_cheaper_arm_runs_and_the_other_is_tried_every_so_often() -> None:
    lone = LoneThreads(explore_every=10)
    chosen = _run(lone, {True: 0.010, False: 0.013}, 4 + 40)[4:]
    assert [index for index, arm in enumerate(chosen) if not arm] == [9, 19, 29, 39]  # one in ten


def test_one_slow_batch_does_not_move_the_choice() -> None:
    lone = LoneThreads(explore_every=1000)
    _run(lone, {True: 0.010, False: 0.013}, 12)
    lone.record(True, 0.200)  # a long text, or a preemption
    assert _run(lone, {True: 0.010, False: 0.013}, 5) == [True] * 5


def test_a_machine_that_turns_busy_moves_lone_batches_to_the_share_and_back() -> None:
    lone = LoneThreads(explore_every=5)
    _run(lone, {True: 0.010, False: 0.013}, 30)  # quiet: every thread is faster
    busy = _run(lone, {True: 0.040, False: 0.012}, 40)  # a hog: two threads wait for each other
    assert busy[-20:].count(True) == 4  # the explorations only
    quiet = _run(lone, {True: 0.010, False: 0.013}, 40)
    assert quiet[-20:].count(False) == 4
    assert lone.medians() == {True: 0.010, False: 0.013}


class CountingEncoder(TorchEncoder):
    """Notes the torch threads each chunk ran on."""

    def __init__(self, model: SentenceTransformer, share: int, every_thread: int) -> None:
        super().__init__(model, share, every_thread)
        self.threads: list[int] = []

    def _run(self, input_ids: TokenMatrix, attention_mask: TokenMatrix) -> npt.NDArray[np.float32]:
        self.threads.append(torch.get_num_threads())
        return super()._run(input_ids, attention_mask)


@pytest.mark.slow
def test_a_lone_torch_batch_takes_every_thread_and_gives_them_back(minilm_path: Path) -> None:
    model = load_model(str(minilm_path), 1)
    encoder = CountingEncoder(model, share=1, every_thread=2)
    backend = SentenceTransformersBackend(model, encoder)
    sentences: list[EmbeddingItem] = ["A man is playing a guitar on stage.", "hi"]
    batches: dict[str, EmbeddingBatch] = {}
    threads_after: list[int] = []

    def worker() -> None:  # a batch worker: a thread of its own, on its share
        torch.set_num_threads(1)
        batches["shared"] = backend.embed(sentences)
        for lone in range(4):  # each arm twice: every thread first, then the share
            batches[f"lone {lone}"] = backend.embed(sentences, alone=True)
        threads_after.append(torch.get_num_threads())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert encoder.threads == [1, 2, 2, 1, 1]
    assert threads_after == [1]
    assert set(encoder.lone.medians()) == {True, False}
    for name in [name for name in batches if name.startswith("lone")]:
        assert np.abs(batches[name].vectors - batches["shared"].vectors).max() < 1e-5


@pytest.mark.slow
def test_a_worker_thread_runs_on_its_share_whatever_count_was_set_last(minilm_path: Path) -> None:
    model = load_model(str(minilm_path), 1)
    encoder = CountingEncoder(model, share=1, every_thread=2)
    backend = SentenceTransformersBackend(model, encoder)
    torch.set_num_threads(2)  # as a lone batch on another worker leaves it for threads yet to start
    try:
        thread = threading.Thread(target=backend.embed, args=(["a new worker's first batch"],))
        thread.start()
        thread.join()
    finally:
        torch.set_num_threads(1)
    assert encoder.threads == [1]
