"""The generated sections of the docs: each research driver rewrites the part of a page between
its own BEGIN and END markers and leaves the prose around them alone."""

import os


def replace_block(path, script, body, heading, end=None):
    """Writes `body` between `<!-- BEGIN GENERATED: {script} -->` and its END marker (`end`, by
    default `<!-- END GENERATED: {script} -->`) in the page at `path`; where the page has no
    such section yet (or no page), appends one under `heading`."""
    begin = f"<!-- BEGIN GENERATED: {script} -->"
    end = end or f"<!-- END GENERATED: {script} -->"
    text = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    block = begin + "\n" + body + "\n" + end
    if begin in text:
        text = text[: text.index(begin)] + block + text[text.index(end, text.index(begin)) + len(end) :]
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + heading + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)
