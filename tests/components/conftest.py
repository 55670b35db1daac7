"""Component tests build components under recording mocks: see tests/support.py (`build`, `Recorded`)."""
