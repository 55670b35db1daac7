"""The shop's payments service: charges and refunds for orders through a payment provider (docs/shop.md)."""
