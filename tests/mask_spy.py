"""A spy on the subject masks each transformer forward binds with (tests of the pipeline's binding feedback)."""

from contextlib import contextmanager


@contextmanager
def recording_subject_masks(pipe):
    """Within the block, the `subject_masks` of every forward of pipe.transformer (None when unbound) are appended
    to the yielded list, in call order."""
    seen = []
    orig = pipe.transformer.forward

    def spy(*args, **kw):
        seen.append(kw.get("subject_masks"))
        return orig(*args, **kw)

    pipe.transformer.forward = spy
    try:
        yield seen
    finally:
        del pipe.transformer.forward
