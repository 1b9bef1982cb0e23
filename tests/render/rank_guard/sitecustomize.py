"""Loaded by every Python process of test_torchrun.py's launches (this folder is first on PYTHONPATH).

In a worker of rank > 0: any file operation under STORYMEM_TEST_RUN_DIR ends the process with exit
code 97 (only rank 0 may touch the run folder). In rank 1, with STORYMEM_TEST_KILL_AT=K: the process
dies (exit code 43) when it is asked to generate its K-th shot, as a crashed GPU process would.
"""

import os
import sys

RANK = os.environ.get("RANK")
RUN_DIR = os.environ.get("STORYMEM_TEST_RUN_DIR")
KILL_AT = os.environ.get("STORYMEM_TEST_KILL_AT")
TOUCHING = {"open", "os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.listdir", "os.scandir",
            "shutil.rmtree", "shutil.copyfile", "os.chmod"}  # fmt: skip

if RANK not in (None, "0") and RUN_DIR:
    import functools

    guarded = os.path.realpath(RUN_DIR)
    # Thousands of files are opened by the imports alone: each folder is resolved once (a seconds-long
    # head start for rank 0 otherwise), and a path's last part only when it is a link.
    real_folder = functools.lru_cache(maxsize=None)(os.path.realpath)

    def resolve(path: str) -> str:
        if os.path.islink(path):
            return os.path.realpath(path)
        folder, name = os.path.split(os.path.abspath(path))
        return os.path.join(real_folder(folder), name)

    def guard(event: str, args: tuple) -> None:
        if event not in TOUCHING:
            return
        for arg in args:
            if isinstance(arg, (str, bytes, os.PathLike)):
                path = resolve(os.fsdecode(arg))
                if path == guarded or path.startswith(guarded + os.sep):
                    os.write(2, f"rank {RANK} touched the run folder: {event} {path}\n".encode())
                    os._exit(97)

    sys.addaudithook(guard)

if RANK == "1" and KILL_AT:
    from storymem_cli.models.story_model import StoryModel

    calls = [0]
    real_generate = StoryModel.generate

    def generate(self, request, progress=None, decode=True):
        calls[0] += 1
        if calls[0] == int(KILL_AT):
            os._exit(43)
        return real_generate(self, request, progress=progress, decode=decode)

    StoryModel.generate = generate
