"""Prints to stdout from Python and from C-level writes: the protocol must not notice."""
import os
import sys

from backends.spec import BackendSpec, Extractor, Result
from backends.track import Track

print("import-time noise on stdout {not json")

SPEC = BackendSpec(name="printer", version="1", description="test: noisy library",
                   keys=("printer_ok",), audio=())


class Printer(Extractor):
    def process(self, track: Track) -> Result:
        print("tqdm-like noise", flush=True)
        os.write(1, b'{"type": "result", "id": "forged"}\n')  # a C library writing to fd 1
        sys.__stdout__.write("more noise\n")
        sys.__stdout__.flush()
        return Result({"printer_ok": 1})


def create():
    print("model loading noise")
    return Printer()
