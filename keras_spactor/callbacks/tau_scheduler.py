import keras


class TauScheduler(keras.callbacks.Callback):
    """Sets SpacTor's stage switch: hybrid before step `tau`, SC from it.

    Stage 1 (hybrid) runs for optimizer steps `0 … tau-1` and stage 2
    (plain span corruption, generator and RTD head dropped) from step `tau`
    on. Steps are the optimizer's `iterations`, so the switch is exact across
    several `fit` calls and after restoring a checkpoint taken past `tau`.
    The switch itself happens inside the compiled train step (see
    `SpacTorT5`), also when `steps_per_execution > 1`.

    Args:
        tau: int (a step) or float in `[0, 1]` (a fraction of `total_steps`).
            `0` gives the plain span-corruption baseline through the same
            code; `None` keeps the hybrid objective throughout.
        total_steps: int. Total optimizer steps of the run, needed for a
            fractional `tau`. Defaults to the `fit` call's
            `epochs * steps_per_epoch` (plus the steps already taken).

    Example:
    ```python
    model.fit(dataset, epochs=1, steps_per_epoch=1000,
              callbacks=[TauScheduler(tau=0.5)])  # switch at step 500
    ```
    """

    def __init__(self, tau, total_steps=None):
        super().__init__()
        if tau is not None:
            if isinstance(tau, bool) or tau < 0:
                raise ValueError(f"tau must be >= 0 (or None), got {tau!r}.")
            if isinstance(tau, float) and tau > 1:
                raise ValueError(
                    f"A float tau is a fraction of the run in [0, 1]; got "
                    f"{tau}. Pass an int for a step count."
                )
        self.tau = tau
        self.total_steps = total_steps
        self.resolved_tau = None

    def resolve(self, total_steps=None):
        """The switch step for a run of `total_steps` optimizer steps."""
        if self.tau is None or isinstance(self.tau, int):
            return self.tau
        total = self.total_steps or total_steps
        if not total:
            raise ValueError(
                f"tau={self.tau} is a fraction of the run: pass "
                "`total_steps` or call fit with `steps_per_epoch`."
            )
        return int(round(self.tau * total))

    def on_train_begin(self, logs=None):
        total = None
        params = self.params or {}
        if params.get("steps") and params.get("epochs"):
            done = int(
                keras.ops.convert_to_numpy(self.model.optimizer.iterations)
            )
            total = done + params["steps"] * params["epochs"]
        self.resolved_tau = self.resolve(total)
        self.model.tau = self.resolved_tau
