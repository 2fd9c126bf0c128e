"""One ``llama-server`` per worker: the model loads once, and each track's audio is encoded once.

The five questions about a track are sent as chat requests whose content is the audio followed by
the question, with the same system text. They share the prefix (template start + audio); its
``timings.cache_n`` says how many prompt tokens of a question came from the cache.

- One slot (``parallel = 1``): the questions go one after another; the slot's prompt cache answers
  questions two to five without re-encoding the audio.
- Parallel slots (``parallel = N``, ``-np N``, continuous batching): llama-server shares a cached
  prompt between slots only for several completions of one prompt, never for different prompts
  (a slot that starts empty encodes the audio again). So the prefix is made once and copied: a
  warm-up request (the first question, one token) encodes the audio in slot 0, the slot is saved
  (``/slots/0?action=save``, the audio chunk included) and restored into the other slots, and then
  all questions are sent at once, each to its own slot, where only its own tokens are evaluated;
  the server decodes them as one batch. Each slot holds a copy of the prefix: N times the KV memory.
- Several tracks at once (``ask_tracks``, ``tracks_per_call``): each track gets its own group of
  slots (five, or one when its questions go in series) and is asked as above in its own thread, so
  every track's audio is encoded once, in its group's first slot, and the server decodes the
  questions of all the tracks in flight as one batch.

Each clip reaches the server as a file in the server's own media folder (``--media-path``), named by
a ``file://`` URL in every request about it, not as base64 in the request: a request then carries a
few hundred bytes instead of the whole track (38 MB for 7.5 minutes of float WAV) that the server
would decode again for each of the six requests a track takes.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from backends.flamingo.llama_cli import Sampling, classify_failure, parse_log, sampler_json
from backends.protocol import BackendError, ErrorKind


@dataclass
class ServedAnswer:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    """Prompt tokens evaluated for this question (those not taken from the cache)."""
    cached_tokens: int
    """Prompt tokens reused from the server's prompt cache."""
    generated_tokens: int
    prompt_ms: float
    generate_ms: float
    audio_encodes: int
    """Audio slices the server encoded while answering (0 when the audio came from the cache)."""


def _one_token(sampling: Sampling) -> Sampling:
    import dataclasses

    return dataclasses.replace(sampling, max_tokens=1)


def _die_with_parent() -> None:
    """In the server child: SIGTERM it when the worker dies, so a killed worker leaves no server behind."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


PORT_TRIES = 3


class _PortTaken(Exception):
    """Another llama-server answered on the port picked for ours."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat_messages(audio_wav: bytes | str, prompt: str, system: str = "") -> list[dict]:
    """The chat request of one question: optional system turn, then the audio followed by the question.

    ``audio_wav``: the WAV bytes (sent as base64), or the ``file://`` URL of a clip in the server's
    media folder (``LlamaServer.clip_file``).

    No system turn when ``system`` is empty, so the model's own chat template supplies its default
    one (the real checkpoints' template adds the Music Flamingo system prompt), as transformers does.
    """
    messages = []
    if system:
        messages.append({"role": "system", "content": system})
    # Audio before the question: the cached prefix then covers the audio for every question.
    audio = ({"url": audio_wav} if isinstance(audio_wav, str)
             else {"data": base64.b64encode(audio_wav).decode("ascii")})
    messages.append({"role": "user", "content": [
        {"type": "input_audio", "input_audio": {**audio, "format": "wav"}},
        {"type": "text", "text": prompt}]})
    return messages


class LlamaServer:
    """A running ``llama-server`` for one (model, projector, context size, GPU layers)."""

    def __init__(self, tool: Path, *, model: Path, mmproj: Path, ctx_size: int, gpu_layers: int,
                 threads: int | None = None, startup_timeout_s: float = 600.0, parallel: int = 1,
                 flash_attn: str | None = None):
        """``ctx_size``: tokens of context per slot; the server gets ``parallel`` times as many.
        ``flash_attn``: ``on``, ``off`` or ``auto`` (llama.cpp's default when None)."""
        self.model, self.mmproj, self.ctx_size, self.gpu_layers = model, mmproj, ctx_size, gpu_layers
        self.parallel = max(1, int(parallel))
        self.flash_attn = flash_attn
        self.port = _free_port()
        self._logdir = tempfile.TemporaryDirectory(prefix="mirdeck-llama-server-")
        self.log_path = Path(self._logdir.name) / "server.log"
        self._log = open(self.log_path, "w+b")
        self._log_offset = 0
        self.media_dir = Path(self._logdir.name) / "media"
        self.media_dir.mkdir()
        cmd = [str(tool), "-m", str(model), "--mmproj", str(mmproj), "-c", str(ctx_size * self.parallel),
               "--gpu-layers", str(gpu_layers), "--host", "127.0.0.1", "--port", str(self.port),
               "-np", str(self.parallel), "--no-webui", "--log-prefix", "--no-log-timestamps", "--perf",
               "--no-warmup", "--media-path", str(self.media_dir)]
        if self.parallel > 1:
            # Each slot its own part of the context (what one question needs); the prefix is copied
            # between slots through saved slot files, and no idle slot is copied to host memory.
            self.slot_dir = Path(self._logdir.name) / "slots"
            self.slot_dir.mkdir()
            cmd += ["--no-kv-unified", "--slot-save-path", str(self.slot_dir), "--cache-ram", "0"]
        if threads:
            cmd += ["-t", str(threads)]
        if flash_attn:
            cmd += ["-fa", flash_attn]
        # A name only this server answers to: a free port picked here can be taken by another
        # process's server before ours binds it, and then that server would answer our requests.
        self.alias = f"mirdeck-{os.getpid()}-{secrets.token_hex(6)}"
        cmd += ["--alias", self.alias]
        started = time.monotonic()
        for _ in range(PORT_TRIES):
            self.command = cmd
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_parent)
            try:
                self._wait_ready(startup_timeout_s)
                break
            except _PortTaken:
                self.proc.kill()
                self.proc.wait()
                self.port = _free_port()
                cmd[cmd.index("--port") + 1] = str(self.port)
        else:
            self.close()
            raise BackendError(f"llama-server found another server on each of {PORT_TRIES} free ports it tried",
                               kind=ErrorKind.INTERNAL)
        self.load_seconds = time.monotonic() - started

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.new_log()
                self.close()
                raise classify_failure(parse_log(log).errors or log.strip().splitlines()[-5:],
                                       audio_label="(server start)", model=str(self.model),
                                       mmproj=str(self.mmproj), returncode=self.proc.returncode)
            try:
                with urllib.request.urlopen(self._url("/health"), timeout=2) as resp:
                    healthy = resp.status == 200
                if healthy:
                    if self._answers_as_ours():
                        return
                    raise _PortTaken()
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.close()
        raise BackendError(f"llama-server did not become ready within {timeout_s:.0f} s", kind=ErrorKind.TIMEOUT)

    def _answers_as_ours(self) -> bool:
        with urllib.request.urlopen(self._url("/v1/models"), timeout=5) as resp:
            try:
                models = json.loads(resp.read())
            except ValueError:
                return False
        return any(isinstance(m, dict) and m.get("id") == self.alias for m in models.get("data", []))

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def new_log(self) -> str:
        """Server log written since the last call."""
        self._log.flush()
        with open(self.log_path, "rb") as fh:
            fh.seek(self._log_offset)
            data = fh.read()
        self._log_offset += len(data)
        return data.decode("utf-8", errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def post(self, path: str, body: dict, timeout_s: float | None = 60) -> dict:
        """One JSON request to the server (``/apply-template``, ``/tokenize``, ...), its JSON answer."""
        request = urllib.request.Request(self._url(path), data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise BackendError(f"llama-server {path}: HTTP {exc.code}: "
                               f"{exc.read().decode('utf-8', errors='replace')[:1000]}") from None

    @contextlib.contextmanager
    def clip_file(self, audio_wav: bytes | str | Path) -> Iterator[str]:
        """The clip (WAV bytes, or a WAV file: linked where it can be) in the server's media folder
        while the block runs, as the URL requests name it; removed afterwards. A URL is passed through."""
        if isinstance(audio_wav, str):
            yield audio_wav
            return
        name = f"clip-{secrets.token_hex(8)}.wav"
        path = self.media_dir / name
        if isinstance(audio_wav, Path):
            try:
                os.link(audio_wav, path)
            except OSError:  # another file system, or no hard links there
                shutil.copyfile(audio_wav, path)
        else:
            path.write_bytes(audio_wav)
        try:
            yield f"file://{name}"
        finally:
            path.unlink(missing_ok=True)

    def ask_all(self, questions: list[tuple[str, Sampling]], *, audio_wav: bytes | str | Path, system: str = "",
                audio_label: str, timeout_s: float | None = None,
                ignore_eos: bool = False, first_slot: int = 0, slots: int | None = None,
                count_log: bool = True) -> tuple[list[ServedAnswer], dict]:
        """Every question about one clip: in series on one slot, or at once on parallel slots.

        ``first_slot``, ``slots``: the group of slots this clip may use (default: all of them);
        ``count_log``: read the server log for this clip's errors (not while other clips are asked).
        ``audio_wav``: WAV bytes or file, put in the media folder once for all the questions.
        Returns the answers in the order asked and what the batching cost (parallel slots only):
        ``warmup`` (the request that encoded the audio for the slots: its prompt and cached tokens),
        ``slot_copy_ms`` (saving the group's first slot and restoring it into the others), ``slot_file_bytes``.
        """
        with self.clip_file(audio_wav) as url:
            return self._ask_all(questions, url, system=system, audio_label=audio_label, timeout_s=timeout_s,
                                 ignore_eos=ignore_eos, first_slot=first_slot, slots=slots, count_log=count_log)

    def _ask_all(self, questions: list[tuple[str, Sampling]], audio_wav: str, *, system: str, audio_label: str,
                 timeout_s: float | None, ignore_eos: bool, first_slot: int, slots: int | None,
                 count_log: bool) -> tuple[list[ServedAnswer], dict]:
        slots = self.parallel - first_slot if slots is None else slots
        if slots == 1 or len(questions) == 1:
            # Pinned to the group's slot when the server has others: its prompt cache holds the audio.
            pin = first_slot if self.parallel > 1 else None
            return [self.ask(audio_wav=audio_wav, prompt=q, sampling=s, system=system, audio_label=audio_label,
                             timeout_s=timeout_s, ignore_eos=ignore_eos, slot=pin, count_log=count_log)
                    for q, s in questions], {}
        from concurrent.futures import ThreadPoolExecutor

        if len(questions) > slots or first_slot + len(questions) > self.parallel:
            raise BackendError(f"{len(questions)} questions for {slots} llama-server slots")
        first, first_sampling = questions[0]
        # One token of the first question in the group's first slot: its prompt is the prefix every slot needs.
        warm = self.ask(audio_wav=audio_wav, prompt=first, sampling=_one_token(first_sampling), system=system,
                        audio_label=audio_label, timeout_s=timeout_s, slot=first_slot, count_log=False)
        began = time.perf_counter()
        prefix_file = f"prefix-{first_slot}.bin"
        saved = self.post(f"/slots/{first_slot}?action=save", {"filename": prefix_file}, timeout_s=timeout_s)
        for slot in range(first_slot + 1, first_slot + len(questions)):
            self.post(f"/slots/{slot}?action=restore", {"filename": prefix_file}, timeout_s=timeout_s)
        copy_ms = (time.perf_counter() - began) * 1000
        with ThreadPoolExecutor(max_workers=len(questions)) as pool:
            futures = [pool.submit(self.ask, audio_wav=audio_wav, prompt=q, sampling=s, system=system,
                                   audio_label=audio_label, timeout_s=timeout_s, slot=first_slot + i,
                                   count_log=False, ignore_eos=ignore_eos)
                       for i, (q, s) in enumerate(questions)]
            answers = [f.result() for f in futures]
        return answers, {"slot_copy_ms": round(copy_ms, 2), "slot_file_bytes": int(saved.get("n_written", 0) or 0),
                         "warmup": {"prompt_tokens": warm.prompt_tokens, "cached_tokens": warm.cached_tokens,
                                    "prompt_eval_ms": round(warm.prompt_ms, 2)}}

    def ask_tracks(self, clips: list[tuple[list[tuple[str, Sampling]], bytes | Path, str]], *, slots_per_track: int,
                   system: str = "", timeout_s: float | None = None,
                   ignore_eos: bool = False) -> list[tuple[list[ServedAnswer], dict] | BaseException]:
        """Several clips at once, each ``(questions, audio WAV, label)`` asked as ``ask_all`` does
        in its own group of ``slots_per_track`` slots; the server batches them all. One answer per
        clip, in order: its ``ask_all`` result, or the exception that clip failed with (the others
        go on). The audio: WAV bytes or a WAV file."""
        from concurrent.futures import ThreadPoolExecutor

        if len(clips) * slots_per_track > self.parallel:
            raise BackendError(f"{len(clips)} tracks of {slots_per_track} slots for {self.parallel} "
                               "llama-server slots")
        if len(clips) == 1:
            questions, wav, label = clips[0]
            try:
                return [self.ask_all(questions, audio_wav=wav, system=system, audio_label=label,
                                     timeout_s=timeout_s, ignore_eos=ignore_eos, slots=slots_per_track)]
            except Exception as exc:
                return [exc]

        def one(group: int) -> tuple[list[ServedAnswer], dict] | BaseException:
            questions, wav, label = clips[group]
            try:
                return self.ask_all(questions, audio_wav=wav, system=system, audio_label=label,
                                    timeout_s=timeout_s, ignore_eos=ignore_eos, first_slot=group * slots_per_track,
                                    slots=slots_per_track, count_log=False)
            except Exception as exc:  # this clip's own failure; the other clips go on
                return exc

        with ThreadPoolExecutor(max_workers=len(clips)) as pool:
            return list(pool.map(one, range(len(clips))))

    def ask(self, *, audio_wav: bytes | str | Path, prompt: str, sampling: Sampling, system: str = "",
            audio_label: str, timeout_s: float | None = None, slot: int | None = None,
            count_log: bool = True, ignore_eos: bool = False) -> ServedAnswer:
        """One question about one audio clip (WAV bytes); ``slot`` pins it to one of the parallel slots.
        ``ignore_eos``: write ``max_tokens`` whatever the model says (benchmarks with fixed token counts).
        ``audio_wav``: WAV bytes or file, or the URL of a clip already in the media folder (``clip_file``)."""
        with self.clip_file(audio_wav) as url:
            return self._ask(url, prompt=prompt, sampling=sampling, system=system, audio_label=audio_label,
                             timeout_s=timeout_s, slot=slot, count_log=count_log, ignore_eos=ignore_eos)

    def _ask(self, audio_url: str, *, prompt: str, sampling: Sampling, system: str, audio_label: str,
             timeout_s: float | None, slot: int | None, count_log: bool, ignore_eos: bool) -> ServedAnswer:
        messages = chat_messages(audio_url, prompt, system)
        body = {"messages": messages, "max_tokens": sampling.max_tokens, **sampler_json(sampling),
                "cache_prompt": True, "stream": False}
        if slot is not None:
            body["id_slot"] = slot
        if ignore_eos:
            body["ignore_eos"] = True
        request = urllib.request.Request(self._url("/v1/chat/completions"), data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        if count_log:
            self.new_log()  # skip what came before, so the slices counted below are this question's
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as resp:
                reply = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", errors="replace")[:1000]
            errors = (parse_log(self.new_log()).errors if count_log else []) or [detail]
            raise classify_failure(errors, audio_label=audio_label, model=str(self.model),
                                   mmproj=str(self.mmproj), returncode=exc.code) from None
        except (TimeoutError, socket.timeout):
            raise BackendError(f"llama-server did not answer within {timeout_s:.0f} s on {audio_label}",
                               kind=ErrorKind.TIMEOUT) from None
        except (urllib.error.URLError, ConnectionError) as exc:
            raise BackendError(f"llama-server stopped answering on {audio_label}: {exc}; log: {self.log_path}",
                               kind=ErrorKind.CRASH if not self.alive() else ErrorKind.INTERNAL) from None
        log = parse_log(self.new_log()) if count_log else None
        timings = reply.get("timings", {})
        choice = reply["choices"][0]
        return ServedAnswer(text=choice["message"].get("content") or "", finish_reason=choice.get("finish_reason"),
                            prompt_tokens=int(timings.get("prompt_n", 0)), cached_tokens=int(timings.get("cache_n", 0)),
                            generated_tokens=int(timings.get("predicted_n", 0)),
                            prompt_ms=float(timings.get("prompt_ms", 0.0)),
                            generate_ms=float(timings.get("predicted_ms", 0.0)),
                            audio_encodes=log.audio_slices if log is not None else 0)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if not os.environ.get("MIRDECK_KEEP_SERVER_LOG"):
            self._logdir.cleanup()
