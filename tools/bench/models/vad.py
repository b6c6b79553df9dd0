"""Silero VAD (shipped in the silero-vad wheel) on speech synthesized offline with espeak-ng.

Two entries, one recipe:

- ``silero_vad``: ``silero_vad_16k_op15.onnx``, the PyTorch export (STFT as a
  Conv, an encoder of Convs, an LSTM cell, the state an input and an output).
- ``silero_vad_if``: ``silero_vad.onnx``, the package's default export (spox),
  whose weights all sit inside the branches of a top-level ``If`` on the sample
  rate: a model with control flow.

The model is stateful: it reads 512 new samples at 16 kHz plus the 64 before
them (576 in all) and a (2, 1, 128) state, and returns a speech probability and
the next state. An utterance is 4 s: one or two espeak-ng sentences (words of
the standard-library docstrings, several voices and speeds) placed at random
in background noise (white or brown, SNR 5 to 30 dB). The truth per chunk is
whether the clean speech in it is louder than 1/10 of the utterance's loudest
chunk. Calibration samples are chunks with the state the float model carries
there, every 6th chunk of the calibration utterances; eval samples are whole
utterances, run chunk by chunk (metrics.stream_outputs).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from models.ocr import vocabulary

RATE = 16000
CHUNK = 512
CONTEXT = 64
SECONDS = 4
CHUNKS = SECONDS * RATE // CHUNK  # 125
VOICES = ("en", "en-us", "en+m3", "en+f2", "en+f4", "en-gb-x-rp")
CALIB_EVERY = 6


def package_dir() -> Path:
    import silero_vad

    return Path(silero_vad.__file__).parent / "data"


def espeak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng's rendering of text at 16 kHz, float32 in [-1, 1]."""
    exe = shutil.which("espeak-ng")
    if not exe:
        raise RuntimeError("espeak-ng is not installed (apt-get install -y espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
                       check=True, capture_output=True)
        with wave.open(str(path)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
    if rate != RATE:
        from scipy.signal import resample_poly

        g = np.gcd(rate, RATE)
        pcm = resample_poly(pcm, RATE // g, rate // g).astype(np.float32)
    return pcm


def utterance(rng: np.random.Generator, vocab: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """4 s of noisy audio with one or two sentences, and the per-chunk speech truth."""
    n = CHUNKS * CHUNK
    clean = np.zeros(n, np.float32)
    for _ in range(int(rng.integers(1, 3))):
        words = " ".join(vocab[int(rng.integers(len(vocab)))] for _ in range(int(rng.integers(2, 7))))
        speech = espeak(words, VOICES[int(rng.integers(len(VOICES)))], int(rng.integers(130, 190)),
                        int(rng.integers(30, 70)))
        speech = speech[: int(n * 0.6)] * float(rng.uniform(0.3, 0.9)) / max(float(np.abs(speech).max()), 1e-6)
        start = int(rng.integers(0, n - len(speech)))
        clean[start : start + len(speech)] += speech
    chunk_rms = np.sqrt((clean.reshape(CHUNKS, CHUNK) ** 2).mean(axis=1))
    truth = chunk_rms > 0.1 * chunk_rms.max()
    noise = rng.standard_normal(n).astype(np.float32)
    if rng.random() < 0.5:  # brown noise: integrated white noise, detrended
        noise = np.cumsum(noise)
        noise -= np.convolve(noise, np.ones(801) / 801, mode="same")
    speech_power = float((clean[np.repeat(truth, CHUNK)] ** 2).mean())
    snr_db = float(rng.uniform(5, 30))
    noise *= np.sqrt(speech_power / 10 ** (snr_db / 10) / max(float((noise ** 2).mean()), 1e-12))
    return np.clip(clean + noise, -1, 1).astype(np.float32), truth


def chunks_with_context(audio: np.ndarray) -> np.ndarray:
    """(CHUNKS, CONTEXT + CHUNK): each chunk after the 64 samples before it (zeros before the start)."""
    padded = np.concatenate([np.zeros(CONTEXT, np.float32), audio])
    return np.stack([padded[k * CHUNK : k * CHUNK + CONTEXT + CHUNK] for k in range(CHUNKS)])


def build(d: Path, model_file: str, seed: int, n_calib_utt: int, n_eval_utt: int,
          control_flow: bool = False) -> dict:
    import onnxruntime as ort

    src = package_dir() / model_file
    rng = np.random.default_rng(seed)
    vocab = vocabulary()
    sr = np.array(RATE, np.int64)
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    calib, evals, labels = [], [], []
    for u in range(n_calib_utt + n_eval_utt):
        audio, truth = utterance(rng, vocab)
        chunks = chunks_with_context(audio)
        state = np.zeros((2, 1, 128), np.float32)
        if u < n_calib_utt:
            for k in range(CHUNKS):
                feeds = {"input": chunks[k : k + 1], "state": state, "sr": sr}
                if k % CALIB_EVERY == u % CALIB_EVERY:
                    calib.append(feeds)
                state = sess.run(None, feeds)[1]
        else:
            evals.append({"input": chunks, "state": state, "sr": sr})
            labels.append(truth)
    control = (" Its graph is one top-level If on the sample rate; every weight is inside the branches."
               if control_flow else "")
    return {"_model": src, "_calib": calib, "_eval": evals, "_labels": np.asarray(labels, bool),
            "description": f"Silero VAD v6 ({model_file}, shipped in the silero-vad wheel): STFT as a Conv, Conv "
                           "encoder, LSTM cell, stateful (state in, state out), 16 kHz." + control,
            "preprocessing": f"{SECONDS} s utterances: espeak-ng speech (voices {', '.join(VOICES)}) in white or "
                             "brown noise at 5-30 dB SNR; chunks of 512 samples plus 64 of context, as "
                             "silero-vad's OnnxWrapper feeds them",
            "calib": {"count": len(calib), "description": f"every {CALIB_EVERY}th chunk of {n_calib_utt} "
                      "utterances, with the state the float model carries at that chunk"},
            "eval": {"count": len(evals), "description": f"{n_eval_utt} whole utterances of {CHUNKS} chunks, "
                     "run chunk by chunk with the model's own state"},
            "metric": {"name": "frame_accuracy", "kind": "vad_frames", "output_index": 0, "threshold": 0.5,
                       "stream": {"chunks": "input", "state_input": "state", "state_output": 1},
                       "description": "speech decision (probability > 0.5) per 32 ms chunk against the "
                                      "synthesis truth; evaluate_all also gives agreement_with_float and "
                                      "sqnr_db of the probabilities"}}

