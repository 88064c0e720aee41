"""The two ways a run ends on purpose: bad input (exit 2) and a diverged trial (exit 1).

Library code raises these; only the entry scripts turn them into the one-line
``<script>: error: ...`` message and the exit code (see ``utils.entry.run_script``).
"""


class InputError(Exception):
    """Bad user input: a missing path or file, a wrong shape, dtype or label, unavailable weights.

    The message names what is wrong and what was expected, in one line.
    """

    exit_code = 2


class NonFiniteLossError(Exception):
    """A loss became NaN or infinite during training."""

    exit_code = 1
