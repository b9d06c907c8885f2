"""Spies on what each transformer forward of a pipeline is given (tests of the pipeline's binding and guidance)."""

from contextlib import contextmanager


@contextmanager
def recording_forward_kwarg(pipe, name: str):
    """Within the block, the keyword argument `name` of every forward of pipe.transformer (None when not given) is
    appended to the yielded list, in call order."""
    seen = []
    orig = pipe.transformer.forward

    def spy(*args, **kw):
        seen.append(kw.get(name))
        return orig(*args, **kw)

    pipe.transformer.forward = spy
    try:
        yield seen
    finally:
        del pipe.transformer.forward


def recording_subject_masks(pipe):
    """The `subject_masks` each forward binds with (None when unbound), in call order."""
    return recording_forward_kwarg(pipe, "subject_masks")
