"""Two training stages in one `fit`: the switch at optimizer step tau."""

from keras import ops

from keras_spactor._keras_compat import FirstReplicaSymbolicBuild
from keras_spactor.models import train_steps


class TwoStageTrainer(FirstReplicaSymbolicBuild):
    """A `keras.Model` mixin: stage 1 before optimizer step `tau`, stage 2
    from it on, switched on exactly step `tau`.

    It owns `tau`, the compiled train function of each stage and the choice
    between them. Stage 1 ("hybrid") updates `stage_variables(True)`,
    stage 2 only `stage_variables(False)`: the others leave the optimizer's
    update entirely (no weight decay either), so they stay bit-identical.
    The step count is the optimizer's `iterations`, so the switch holds
    across several `fit` calls and after restoring a checkpoint. An
    execution of `steps_per_execution > 1` steps that spans `tau` decides
    the stage per step inside the compiled function ("mixed"); the others
    run a function compiled for one stage, chosen on the host.

    The model provides, publicly:

    - `compute_losses(x, y, sample_weight, hybrid, training)`: `(loss,
      outputs)` for one batch; `hybrid` is a Python bool.
    - `stage_variables(hybrid)`: the trainable variables a stage updates.
    - `update_metrics(outputs, training)`: updates the metrics from
      `compute_losses`' outputs and returns the logs.
    - `check_batch(x, y)` (at trace time) and `check_first_batch(x, y)`
      (at the start of `fit`): clear errors for malformed data.

    Args:
        tau: int or None. First stage-2 optimizer step; `0` is stage 2
            throughout, `None` stage 1 throughout.

    Example:
    ```python
    class TwoLosses(TwoStageTrainer, keras.Model):
        ...  # the four methods above

    model = TwoLosses(tau=1000)
    model.compile(optimizer="adamw")
    model.fit(dataset, steps_per_epoch=2000)  # logs["stage"]: 1, then 2
    ```
    """

    def __init__(self, *args, tau=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._stage_functions = {}
        self._forget_host_step()
        self.tau = tau

    @property
    def tau(self):
        """First stage-2 optimizer step (`None`: stage 1 throughout)."""
        return self._tau

    @tau.setter
    def tau(self, value):
        if value is not None:
            if isinstance(value, bool) or int(value) != value:
                raise ValueError(f"tau must be an int step, got {value!r}.")
            if value < 0:
                raise ValueError(f"tau must be >= 0, got {value}.")
            value = int(value)
        self._tau = value
        # The mixed function bakes `tau` in: re-trace it, re-read the step.
        self._stage_functions.pop("mixed", None)
        self._forget_host_step()

    def current_stage(self):
        """1 or 2: the stage of the next optimizer step (reads the step)."""
        if self.tau is None:
            return 1
        step = int(ops.convert_to_numpy(self.optimizer.iterations))
        return 1 if step < self.tau else 2

    # ------------------------------------------------------------------
    # The contract: what the model provides.

    def compute_losses(
        self, x, y, sample_weight=None, hybrid=True, training=True
    ):
        raise NotImplementedError

    def stage_variables(self, hybrid):
        raise NotImplementedError

    def update_metrics(self, outputs, training=True):
        raise NotImplementedError

    def check_batch(self, x, y=None):
        pass

    def check_first_batch(self, x, y=None):
        pass

    # ------------------------------------------------------------------
    # Keras' training loop.

    def fit(self, x=None, y=None, *args, **kwargs):
        self.check_first_batch(x, y)
        return super().fit(x, y, *args, **kwargs)

    def train_step(self, *args):
        return train_steps.train_step(self, *args, mode="hybrid")

    def test_step(self, *args):
        return train_steps.test_step(self, *args)

    def make_train_function(self, force=False):
        if self.train_function is not None and not force:
            return self.train_function
        self._stage_functions = {}
        self._forget_host_step()
        self.train_function = self._run_stage_function
        return self.train_function

    def _run_stage_function(self, *args):
        mode = self._next_mode(args)
        outputs = self._stage_function(mode, args)(*args)
        if self._host_step is not None:
            self._host_step += self.steps_per_execution
        return outputs

    def _next_mode(self, args):
        """ "hybrid", "sc" or "mixed" for the next execution."""
        tau = self.tau
        if tau is None:
            return "hybrid"
        if self._stage2_confirmed:
            return "sc"
        per_call = self.steps_per_execution
        # The host count can only run ahead of the real step (a short last
        # execution), so "hybrid" is safe without a device read; near tau,
        # read the real step once per call.
        if self._host_step is None or self._host_step + per_call > tau:
            self._host_step = train_steps.read_iterations(self, args)
        if self._host_step >= tau:
            self._stage2_confirmed = True
            return "sc"
        if self._host_step + per_call <= tau:
            return "hybrid"
        return "mixed"

    def _stage_function(self, mode, args=()):
        """The compiled train function of `mode`, built on first use."""
        if mode not in self._stage_functions:
            with train_steps.state_attached(self, args):
                self._build_stage_function(mode)
        return self._stage_functions[mode]

    def _build_stage_function(self, mode):
        # Keras compiles `self.train_step`; jit caches traces by function,
        # so each stage gets a distinct one, set only while Keras builds.
        def step(*args):
            return train_steps.train_step(self, *args, mode=mode)

        self.train_step = step
        try:
            super().make_train_function(force=True)
        finally:
            del self.train_step
        self._stage_functions[mode] = self.train_function
        self.train_function = self._run_stage_function

    def _forget_host_step(self):
        self._host_step = None
        self._stage2_confirmed = False
