"""The text test bed: corpus loading and checks, windows, the transformer, training by steps."""

import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest
import torch

from course_lib import config, engine, optim
from course_lib.engine import models, text
from course_lib.engine.text import DataError, TextData, load_corpus, load_shakespeare, text_on_device

VERSE = ("Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n"
         "Rough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date.\n")  # fmt: skip


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "sonnet.txt"
    path.write_text(VERSE * 40, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# corpus
# --------------------------------------------------------------------------------------------


def test_corpus_encodes_characters_in_sorted_order_and_round_trips(corpus_file):
    corpus = load_corpus(corpus_file)
    assert corpus.vocabulary == "".join(sorted(set(VERSE)))
    assert len(corpus) == len(VERSE) * 40 and corpus.tokens.dtype == np.uint8
    assert corpus.decode(corpus.tokens[: len(VERSE)]) == VERSE
    assert np.array_equal(corpus.encode("thee"), corpus.tokens[VERSE.index("thee") :][:4])
    with pytest.raises(ValueError, match="not in the corpus's vocabulary"):
        corpus.encode("Z")


def test_token_cache_is_tied_to_the_text_it_was_made_from(corpus_file, monkeypatch):
    first = load_corpus(corpus_file)
    cache = corpus_file.parent / "sonnet.tokens.npz"
    assert cache.is_file()
    # a second load reads the cache, not the encoder
    monkeypatch.setattr(text, "_encode", lambda *a: pytest.fail("the cache was not used"))
    assert np.array_equal(load_corpus(corpus_file).tokens, first.tokens)
    monkeypatch.undo()
    # the same name, other text: the cache is rebuilt, never returned
    corpus_file.write_text("to be or not to be\n" * 30, encoding="utf-8")
    second = load_corpus(corpus_file)
    assert second.vocabulary == "".join(sorted(set("to be or not to be\n")))
    assert second.decode(second.tokens[:18]) == "to be or not to be"


def test_a_foreign_or_damaged_cache_is_rebuilt(corpus_file):
    cache = corpus_file.parent / "sonnet.tokens.npz"
    np.savez(cache, tokens=np.zeros(3, np.uint8), vocabulary=np.array("abc"), source=np.array("elsewhere"),
             source_sha256=np.array("0" * 64))  # fmt: skip
    corpus = load_corpus(corpus_file)
    assert len(corpus) == len(VERSE) * 40
    cache.write_bytes(b"not an npz file")
    assert len(load_corpus(corpus_file)) == len(VERSE) * 40


def test_bad_files_raise_one_clear_data_error(tmp_path, corpus_file):
    digest = hashlib.sha256(corpus_file.read_bytes()).hexdigest()
    size = corpus_file.stat().st_size
    assert len(load_corpus(corpus_file, sha256=digest, size=size)) == size
    with pytest.raises(DataError, match=r"sonnet.txt: SHA-256 .* expected f{64}"):
        load_corpus(corpus_file, sha256="f" * 64)
    with pytest.raises(DataError, match=r"sonnet.txt: .* bytes, expected .*\(truncated\)"):
        load_corpus(corpus_file, size=size + 10)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9 au lait\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin1.txt: not UTF-8"):
        load_corpus(latin1)
    with pytest.raises(DataError, match="no such file"):
        load_corpus(tmp_path / "missing.txt")
    assert not list(tmp_path.glob("latin1*.npz")), "nothing is written for a bad file"


def test_tiny_shakespeare_copies_are_checked_against_size_and_checksum(tmp_path):
    (tmp_path / "tinyshakespeare.txt").write_text("First Citizen:\n" * 10)
    with pytest.raises(DataError, match=r"tinyshakespeare.txt: 150 bytes, expected 1,115,394 \(truncated\)"):
        load_shakespeare(tmp_path, download=False)
    (tmp_path / "tinyshakespeare.txt").write_bytes(b"x" * text.SIZE)
    with pytest.raises(DataError, match=f"expected {text.SHA256}"):
        load_shakespeare(tmp_path, download=False)
    (tmp_path / "tinyshakespeare.txt").unlink()
    with pytest.raises(DataError, match="tiny Shakespeare not found.*COURSE_DATA_DIR"):
        load_shakespeare(tmp_path, download=False)


def test_download_goes_through_pooch_and_verifies_the_checksum(tmp_path, monkeypatch):
    """A real pooch download from a local web server, with the URL and checksum of a small file."""
    served = tmp_path / "served"
    served.mkdir()
    body = (VERSE * 3).encode()
    (served / "input.txt").write_bytes(body)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setattr(text, "URL", f"http://127.0.0.1:{server.server_port}/input.txt")
        monkeypatch.setattr(text, "SIZE", len(body))
        monkeypatch.setattr(text, "SHA256", hashlib.sha256(body).hexdigest())
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        corpus = load_shakespeare(data_dir, progress=False)
        assert (data_dir / "tinyshakespeare.txt").read_bytes() == body and corpus.decode(corpus.tokens) == VERSE * 3
        # a server that serves other bytes: pooch's hash check fails, reported as a DataError
        (data_dir / "tinyshakespeare.txt").unlink()
        monkeypatch.setattr(text, "SHA256", "0" * 64)
        with pytest.raises(DataError, match="could not download .* does not match the known hash"):
            load_shakespeare(data_dir, progress=False)
        assert not (data_dir / "tinyshakespeare.txt").exists()
    finally:
        server.shutdown()


def test_the_shared_copy_is_tiny_shakespeare():
    if text.locate_shakespeare() is None:
        pytest.skip("tiny Shakespeare is not in the data directory (COURSE_DATA_DIR)")
    corpus = load_shakespeare(download=False)
    assert len(corpus) == 1_115_394 and corpus.vocab_size == 65
    assert corpus.decode(corpus.tokens[:14]) == "First Citizen:"


# --------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------


def test_windows_predict_the_next_character(corpus_file):
    corpus = load_corpus(corpus_file)
    data = TextData.from_tokens(corpus.tokens, context=8, device="cpu")
    assert len(data) == len(corpus) - 8
    x, y = data.batch(torch.tensor([0, 5]))
    assert x.shape == y.shape == (2, 8) and x.dtype == torch.int64
    assert corpus.decode(x[0]) == VERSE[:8] and corpus.decode(y[0]) == VERSE[1:9]
    assert corpus.decode(x[1]) == VERSE[5:13]
    with pytest.raises(DataError, match="the tiny split has 5 characters, fewer than one window of context"):
        TextData.from_tokens(corpus.tokens[:5], context=8, device="cpu", name="tiny")


def test_splits_are_contiguous_and_evaluation_windows_do_not_overlap(corpus_file):
    corpus = load_corpus(corpus_file)
    n = len(corpus)
    parts = corpus.split(0.1, 0.1)
    assert [len(p) for p in parts] == [n - 2 * round(0.1 * n), round(0.1 * n), round(0.1 * n)]
    assert np.array_equal(np.concatenate(parts), corpus.tokens)
    data = text_on_device(corpus, 16, with_test=True, val_windows=5, device="cpu")
    assert set(data) == {"train", "val", "test"} and len(data["val"]) == 5
    starts = data["val"].starts
    assert torch.all(torch.diff(starts) >= 16)
    full = text_on_device(corpus, 16, device="cpu")["val"]
    assert torch.equal(full.starts, torch.arange(0, len(parts[1]) - 16, 16))  # the last 10%
    with pytest.raises(ValueError, match="fractions"):
        corpus.split(0.6, 0.5)


# --------------------------------------------------------------------------------------------
# the transformer
# --------------------------------------------------------------------------------------------


def test_transformer_is_causal_and_sized_by_name():
    with config.seeded(0):
        model = models.transformer(30, None, layers=2, width=32, heads=4, context=16).eval()
    tokens = torch.randint(0, 30, (2, 16))
    changed = tokens.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 30
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert a.shape == (2, 16, 30)
    assert torch.equal(a[:, :10], b[:, :10]), "a prediction must not see later characters"
    assert not torch.allclose(a[:, 10:], b[:, 10:])
    with pytest.raises(ValueError, match="longer than the model's context of 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="multiple of heads"):
        models.transformer(30, None, layers=1, width=30, heads=4, context=8)
    with pytest.raises(ValueError, match="size must be one of"):
        models.transformer(30, "huge")
    fast, full = models.transformer(65, "fast"), models.transformer(65, "full")
    assert 0.05e6 < models.count_parameters(fast) < 0.2e6 and 10e6 < models.count_parameters(full) < 12e6
    tied = models.transformer(65, "fast", tie_weights=True)
    assert tied.head.weight is tied.token_embedding.weight
    assert models.count_parameters(tied) == models.count_parameters(fast) - 65 * 64


# --------------------------------------------------------------------------------------------
# training on text, by steps
# --------------------------------------------------------------------------------------------


def _text_setup(corpus_file, context=16):
    corpus = load_corpus(corpus_file)
    data = text_on_device(corpus, context, val_windows=16, device="cpu")

    def model_fn():
        return models.transformer(corpus.vocab_size, None, layers=1, width=32, heads=2, context=context)

    return corpus, data, model_fn


def test_training_by_steps_records_rows_at_the_evaluation_steps(corpus_file):
    corpus, data, model_fn = _text_setup(corpus_file)
    with config.seeded(0):
        model = model_fn()
    history = engine.train(model, optim.Adam(model.parameters(), lr=3e-3), data["train"], steps=60, batch_size=16,
                           val_data=data["val"], eval_every=25, progress=False)  # fmt: skip
    assert [e.step for e in history.epochs] == [25, 50, 60] and len(history.step_loss) == 60
    assert history.epochs[0].epoch == pytest.approx(25 / len(data["train"]) * 16, rel=0.1)
    assert history.step_loss[0] == pytest.approx(np.log(corpus.vocab_size), abs=0.3)  # uniform guess at the start
    assert history.epochs[-1].val_loss < 0.7 * history.step_loss[0], "a repetitive text is learnt quickly"
    assert history.epochs[-1].val_acc > 2 / corpus.vocab_size
    assert history.steps_to("val_loss", history.epochs[0].val_loss, lower_is_better=True) == 25
    assert text.bits_per_character(np.log(2.0)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="either epochs or steps"):
        engine.train(model, optim.SGD(model.parameters(), lr=0.1), data["train"], steps=5, epochs=1, batch_size=4)
    with pytest.raises(ValueError, match="test-time augmentation is for batches of images"):
        engine.evaluate(model, data["val"], tta=1)
    per_window = engine.example_accuracies(model, data["val"])  # a window's fraction of characters right
    assert per_window.shape == (len(data["val"]),) and per_window.mean() == pytest.approx(history.epochs[-1].val_acc)
    assert len(np.unique(per_window)) > 2  # fractions, not 0/1 trials


def test_text_variants_start_equal_and_see_the_same_windows(corpus_file):
    _, data, model_fn = _text_setup(corpus_file)
    seen = []

    class Recording:
        def __init__(self, inner):
            self.inner = inner

        def __len__(self):
            return len(self.inner)

        @property
        def device(self):
            return self.inner.device

        def batch(self, index, augment=None, generator=None):
            seen.append(index.clone())
            return self.inner.batch(index)

    variants = {"SGD": engine.Variant(optim.SGD, {"lr": 0.1}), "Adam": engine.Variant(optim.Adam, {"lr": 1e-3})}
    runs = engine.compare_variants(model_fn, variants, Recording(data["train"]), steps=6, eval_every=3, batch_size=8,
                                   seed=4, progress=False)  # fmt: skip
    assert runs["SGD"].history.step_loss[0] == runs["Adam"].history.step_loss[0]
    assert all(torch.equal(a, b) for a, b in zip(seen[:6], seen[6:])) and len(seen) == 12


def test_gradient_clipping_bounds_the_global_norm(corpus_file):
    _, data, model_fn = _text_setup(corpus_file)
    norms = []

    class RecordingSGD(optim.SGD):
        def step(self, closure=None):
            grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
            norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())
            return super().step(closure)

    for clip in (None, 0.05):
        with config.seeded(0):
            model = model_fn()
        engine.train(model, RecordingSGD(model.parameters(), lr=0.5), data["train"], steps=5, batch_size=8,
                     clip_grad_norm=clip, progress=False)  # fmt: skip
    unclipped, clipped = norms[:5], norms[5:]
    assert min(unclipped) > 0.05, "the test needs gradients larger than the clipping threshold"
    assert max(clipped) <= 0.05 * (1 + 1e-5)
    with pytest.raises(ValueError, match="clip_grad_norm must be positive"):
        engine.train(model, optim.SGD(model.parameters(), lr=0.1), data["train"], steps=1, batch_size=4,
                     clip_grad_norm=0.0)  # fmt: skip


def test_a_killed_cache_writer_leaves_nothing_behind_after_the_next_load(corpus_file):
    """SIGKILL during the token-cache write: the next load removes the temporary and writes the cache."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from course_lib.engine import text
        def savez_then_die(f, **arrays):
            f.write(b"partial")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        text.np.savez = savez_then_die
        text.load_corpus({str(corpus_file)!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -signal.SIGKILL
    leftovers = list(corpus_file.parent.glob(".sonnet.tokens.npz.*.tmp"))
    assert leftovers and not (corpus_file.parent / "sonnet.tokens.npz").exists()
    corpus = load_corpus(corpus_file)
    assert len(corpus) == len(VERSE) * 40
    assert not list(corpus_file.parent.glob(".sonnet.tokens.npz.*.tmp"))
    assert (corpus_file.parent / "sonnet.tokens.npz").is_file()
    assert os.path.getsize(corpus_file.parent / "sonnet.tokens.npz") > 100


def test_a_read_only_corpus_directory_caches_in_the_repository_data(tmp_path, monkeypatch):
    """A directory with no write bit is read-only even for root: the token cache goes elsewhere."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "sonnet.txt").write_text(VERSE * 5, encoding="utf-8")
    shared.chmod(0o555)
    repo = tmp_path / "repo"
    monkeypatch.setattr(text.config, "repo_root", lambda: repo)
    try:
        corpus = load_corpus(shared / "sonnet.txt")
        assert len(corpus) == len(VERSE) * 5
        assert (repo / "data" / "sonnet.tokens.npz").is_file()
        assert not list(shared.glob("*.npz"))
    finally:
        shared.chmod(0o755)
