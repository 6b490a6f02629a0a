import pytest

from tts_graph.budget import Budget, Usage, add_usage, estimate_flops
from tts_graph.errors import ConfigError


def test_usage_adds_counts_and_unions_the_time_window():
    a = Usage(
        prompt_tokens=10, completion_tokens=5, calls=1, flops=3.0, started_at=100.0, ended_at=105.0
    )
    b = Usage(
        prompt_tokens=7, completion_tokens=2, calls=2, flops=1.0, started_at=102.0, ended_at=110.0
    )
    total = a + b
    assert (total.prompt_tokens, total.completion_tokens, total.calls, total.flops) == (
        17,
        7,
        3,
        4.0,
    )
    # Overlapping parallel requests: the window is 100..110, not 5 + 8 seconds.
    assert total.wall_s == pytest.approx(10.0)
    assert total.total_tokens == 24
    assert a + b == b + a


def test_add_usage_reducer_accepts_missing_sides():
    u = Usage(calls=1)
    assert add_usage(None, u) == u
    assert add_usage(u, None) == u
    assert add_usage(None, None) == Usage()


def test_usage_without_requests_has_zero_wall_time():
    assert Usage().wall_s == 0.0
    assert Usage(started_at=5.0).wall_s == 0.0


def test_flops_estimate_is_two_params_per_token():
    assert estimate_flops(1_000, 10) == 20_000
    assert estimate_flops(None, 10) == 0.0


@pytest.mark.parametrize(
    ("limits", "bad"),
    [
        ({"max_calls": -1}, "max_calls"),
        ({"max_total_tokens": 0}, "max_total_tokens"),
        ({"max_wall_s": -0.5}, "max_wall_s"),
        ({"max_callz": 3}, "max_callz"),
    ],
)
def test_invalid_budget_is_a_config_error_naming_the_field(limits, bad):
    with pytest.raises(ConfigError, match=bad) as info:
        Budget(**limits)
    assert "positive" in str(info.value)


def test_unlimited_budget_affords_anything():
    budget = Budget()
    assert budget.unlimited
    assert budget.can_afford(Usage(calls=10**6), calls=5, completion_tokens=10**9)


def test_can_afford_checks_each_limit():
    budget = Budget(max_total_tokens=100, max_completion_tokens=50, max_calls=3)
    spent = Usage(prompt_tokens=30, completion_tokens=20, calls=2)
    assert budget.can_afford(spent, calls=1, prompt_tokens=10, completion_tokens=30)
    assert not budget.can_afford(
        spent, calls=1, prompt_tokens=10, completion_tokens=31
    )  # completion
    assert not budget.can_afford(spent, calls=1, prompt_tokens=21, completion_tokens=30)  # total
    assert not budget.can_afford(spent, calls=2)  # calls


def test_flops_and_wall_limits():
    budget = Budget(max_flops=1000.0, max_wall_s=10.0)
    assert budget.can_afford(Usage(flops=400.0), flops=600.0)
    assert not budget.can_afford(Usage(flops=400.0), flops=601.0)
    started = Usage(started_at=1000.0, ended_at=1001.0)
    assert budget.can_afford(started, now=1009.0)
    assert not budget.can_afford(started, now=1010.5)
    assert budget.remaining(started, now=1004.0).wall_s == pytest.approx(6.0)


def test_require_one_call_explains_what_to_change():
    with pytest.raises(ConfigError, match=r"too small for a single call: 30 prompt tokens"):
        Budget(max_total_tokens=40).require_one_call(prompt_tokens=30, max_tokens=20)
    # Not the whole answer, but a useful part of it (min_sample_tokens) fits.
    Budget(max_total_tokens=40, min_sample_tokens=10).require_one_call(
        prompt_tokens=30, max_tokens=20
    )
    with pytest.raises(ConfigError):
        Budget(max_total_tokens=40, min_sample_tokens=10, strict=True).require_one_call(
            prompt_tokens=30, max_tokens=20
        )
