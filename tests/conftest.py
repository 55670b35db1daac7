import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_configure(config: object) -> None:
    # Programs under mocks allocate millions of objects that outlive their test's plan and few cycles: the
    # runner's thresholds (runner/check.py) take a third off tests/components' CPU for ~7 % more peak memory.
    from runner.check import collect_garbage_less_often

    collect_garbage_less_often()
    # The IAM contract (tests/iam) records every AWS call the services and Lambdas make in the whole session.
    from tests.iam import recorder

    recorder.install()


def pytest_collection_modifyitems(session: object, config: object, items: list[object]) -> None:
    from tests.iam.ordering import run_contract_last

    run_contract_last(items)
