import re

import keras

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_STEP = re.compile(r"^\s*\d+\s*$")


def parse_tau(tau):
    """SpacTor's switch step, as a step or as a share of the run.

    A step is an int (`5000`, or the string `"5000"`); a share of the run
    is a percentage string (`"50%"`, `"12.5%"`). Nothing else is accepted:
    a float such as `1` vs `1.0` would silently mean step 1 or the whole
    run.

    Args:
        tau: int, str or `None` (hybrid throughout).

    Returns:
        `None`, an int step, or a float fraction in `[0, 1]` (from a
        percentage).

    Raises:
        ValueError: anything else, with the accepted forms.

    Example:
    ```python
    parse_tau(5000)   # 5000
    parse_tau("25%")  # 0.25
    ```
    """
    if tau is None:
        return None
    if isinstance(tau, int) and not isinstance(tau, bool):
        if tau < 0:
            raise ValueError(f"tau must be >= 0, got {tau}.")
        return tau
    if isinstance(tau, str):
        if _STEP.match(tau):
            return int(tau)
        percent = _PERCENT.match(tau)
        if percent:
            value = float(percent.group(1))
            if value > 100:
                raise ValueError(f"tau {tau!r} is more than the whole run.")
            return value / 100
    raise ValueError(
        f"tau must be a step (an int such as 5000) or a percentage of the "
        f"run (a string such as '50%'); got {tau!r}."
    )


def format_tau(tau):
    """The inverse of `parse_tau`: `0.25` gives `"25%"`, an int itself."""
    if isinstance(tau, float):
        return f"{tau * 100:g}%"
    return tau


class TauScheduler(keras.callbacks.Callback):
    """Sets SpacTor's stage switch: hybrid before step `tau`, SC from it.

    Stage 1 (hybrid) runs for optimizer steps `0 … tau-1` and stage 2
    (plain span corruption, generator and RTD head dropped) from step `tau`
    on. Steps are the optimizer's `iterations`, so the switch is exact across
    several `fit` calls and after restoring a checkpoint taken past `tau`.
    The switch itself happens inside the compiled train step (see
    `SpacTorT5`), also when `steps_per_execution > 1`.

    A percentage is resolved once, at the first `fit`, against
    `total_steps` or else that call's `epochs * steps_per_epoch` (`epochs`
    counts from epoch 0, so `initial_epoch` after a restore is the same
    run), and kept for later calls. When the run is a loop of `fit` calls,
    pass `total_steps`: a call that goes past the steps a percentage was
    resolved against raises instead of switching at the wrong step.

    Args:
        tau: the switch step: an int, or a percentage string of the run
            such as `"50%"` (see `parse_tau`). `0` gives the plain
            span-corruption baseline through the same code; `None` keeps
            the hybrid objective throughout.
        total_steps: int. Total optimizer steps of the run, for a
            percentage.

    Example:
    ```python
    model.fit(dataset, epochs=1, steps_per_epoch=1000,
              callbacks=[TauScheduler("50%")])  # switch at step 500
    schedule = TauScheduler("50%", total_steps=3000)
    for _ in range(3):  # the switch lands at step 1500
        model.fit(dataset, epochs=1, steps_per_epoch=1000,
                  callbacks=[schedule])
    ```
    """

    def __init__(self, tau, total_steps=None):
        super().__init__()
        self.tau = parse_tau(tau)
        self.total_steps = total_steps
        self.resolved_tau = None
        self._resolved_against = None

    def resolve(self, total_steps=None):
        """The switch step for a run of `total_steps` optimizer steps."""
        if self.tau is None or isinstance(self.tau, int):
            return self.tau
        total = self.total_steps or total_steps
        if not total:
            raise ValueError(
                f"tau={format_tau(self.tau)} is a share of the run: pass "
                "`total_steps` or call fit with `steps_per_epoch`."
            )
        return int(round(self.tau * total))

    def on_train_begin(self, logs=None):
        params = self.params or {}
        done = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        planned = None
        if params.get("steps") and params.get("epochs"):
            planned = params["steps"] * params["epochs"]
        if self.resolved_tau is None or self._resolved_against is None:
            self.resolved_tau = self.resolve(planned)
            if isinstance(self.tau, float) and not self.total_steps:
                self._resolved_against = planned
        elif planned and done + params["steps"] > self._resolved_against:
            raise ValueError(
                f"tau={format_tau(self.tau)} was resolved against the first "
                f"fit call's {self._resolved_against} steps (switch at step "
                f"{self.resolved_tau}); this fit goes past them. In a loop "
                "of fit calls, pass TauScheduler(..., total_steps=N)."
            )
        self.model.tau = self.resolved_tau
