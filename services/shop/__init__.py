"""The shop (docs/shop.md): the seed's Lab 6.1 as five small FastAPI services sharing `services.shop.common`."""
