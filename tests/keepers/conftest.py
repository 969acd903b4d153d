"""A failed keeper test shows the logs of the keeper processes it started, which its temporary
folder would otherwise take with it."""

import pytest

LOG_TAIL = 20_000  # characters of each keeper's logs


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        for keeper in getattr(item, "keepers", []):
            report.sections.append((f"{keeper.name}'s logs (last {LOG_TAIL:,} characters)", keeper.logs()[-LOG_TAIL:]))
    return report
