"""The offline runner beside the pack: plans a Pulumi program under mocks (`plan`), reads exports (`exports`),
drives the pack in `policy/` over the analyzer protocol (`engine`), prices the plan, and reports (`check`,
`reports`, `diff`). `policy/` is exactly the published pack; this package is what runs it without the CLI."""
