"""Settings of the payments service (ShopSettings plus the simulated provider's behaviour)."""

from __future__ import annotations

from pydantic import Field

from services.shop.common.settings import ShopSettings
from services.shop.payments.provider import Simulation


class PaymentsSettings(ShopSettings):
    PORT: int = Field(default=8084, ge=1, le=65535)

    # The simulated provider (services.shop.payments.provider.SimulatedProvider).
    PROVIDER_LATENCY_MS: float = Field(default=50.0, ge=0, le=30_000, description="Mean latency; +-50% jitter.")
    PROVIDER_FAILURE_RATE: float = Field(default=0.0, ge=0, le=1, description="Share of calls failing transiently.")
    PROVIDER_DECLINE_RATE: float = Field(default=0.0, ge=0, le=1, description="Share of charges declined at random.")
    # A provider call slower than this is abandoned as a transient failure (the payment stays pending).
    PROVIDER_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=60)

    def simulation(self) -> Simulation:
        return Simulation(
            latency_ms=self.PROVIDER_LATENCY_MS,
            failure_rate=self.PROVIDER_FAILURE_RATE,
            decline_rate=self.PROVIDER_DECLINE_RATE,
        )
