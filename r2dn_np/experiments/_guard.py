"""Guards of the files an experiment writes: never over a file it reads.

Messages name the files by the caller's names for them (``flag``: a command line's ``--out``, a
library call's ``out``), so one implementation serves both."""

from __future__ import annotations

import os

__all__ = ["same_file", "refuse_overwrite", "as_flag"]


def as_flag(name):
    """A settings field's command-line flag: ``data_dir`` -> ``--data-dir``; other text unchanged."""
    return "--" + name.replace("_", "-") if name.isidentifier() else name


def same_file(a, b):
    """Whether paths ``a`` and ``b`` name one file: the same path once links are resolved, or the
    same inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def refuse_overwrite(writes, reads, flag=str):
    """Refuse, before any work, when a file to be written is a file that is read.

    ``writes`` and ``reads`` are ``(name, path)`` pairs; ``flag(name)`` is how the message names
    them. Raises ValueError naming both.
    """
    for wname, wpath in writes:
        for rname, rpath in reads:
            if same_file(wpath, rpath):
                w, r = flag(wname), flag(rname)
                raise ValueError(f"{w} {wpath} is the same file as {r} {rpath}: refusing to overwrite a file this "
                                 f"command reads; choose another {w}")
