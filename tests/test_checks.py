"""The shared setting checks: each accepts what it promises and names the setting, the rule
and the value it refuses."""

import math

import pytest

from mimlib import checks
from mimlib.errors import ConfigError


@pytest.mark.parametrize("check, good, bad, message", [
    (lambda v: checks.whole(v, "n"), [1, 7], [0, 1.0, True, "2"], "n must be a whole number >= 1"),
    (lambda v: checks.whole(v, "n", 0), [0, 3], [-1, False], "n must be a whole number >= 0"),
    (lambda v: checks.positive(v, "lr"), [1e-4, 2], [0, -1, math.inf, math.nan, True],
     "lr must be a finite number > 0"),
    (lambda v: checks.non_negative(v, "lam"), [0, 0.5], [-0.1, math.inf, None],
     "lam must be a finite number >= 0"),
    (lambda v: checks.interval(v, "hue", 0, 0.5), [0, 0.25, 0.5], [-0.1, 0.6, math.nan, True],
     "hue must be a finite number in [0, 0.5]"),
    (lambda v: checks.interval(v, "tpr", 0, 1, open_low=True), [0.5, 1], [0, math.inf],
     "tpr must be a finite number in (0, 1]"),
    (lambda v: checks.interval(v, "momentum", 0, 1, open_high=True), [0, 0.9], [1, math.nan],
     "momentum must be a finite number in [0, 1)"),
    (lambda v: checks.probability(v, "p"), [0, 0.5, 1], [1.5, -0.1, True, "0.5"],
     "p must be a probability in [0, 1]"),
    (lambda v: checks.flag(v, "shuffle"), [True, False], [1, "yes"], "shuffle must be true or false"),
    (lambda v: checks.choice(v, "mode", ("a", "b")), ["a", "b"], ["c", None],
     "mode must be one of ['a', 'b']"),
])
def test_each_check_accepts_its_values_and_says_what_it_refuses(check, good, bad, message):
    for value in good:
        assert check(value) == value
    for value in bad:
        with pytest.raises(ConfigError) as err:
            check(value)
        assert str(err.value) == f"{message}, got {value!r}"


def test_config_objects_use_the_shared_checks():
    from mimlib.companion.run.executors import ExecutorSettings
    from mimlib.train_config import MIMConfig

    with pytest.raises(ConfigError, match=r"^alpha must be a finite number > 0, got 0$"):
        MIMConfig(alpha=0)
    with pytest.raises(ConfigError, match=r"^executor workers must be a whole number >= 1"):
        ExecutorSettings(workers=0)
