"""The shop's users service: accounts, password login, access tokens and their public keys (docs/shop.md)."""
