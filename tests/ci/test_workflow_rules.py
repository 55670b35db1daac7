"""Every workflow rule rejects a workflow that breaks it (so the checks on .github/ can fail)."""

from __future__ import annotations

import textwrap

from tests.ci import workflow_rules as rules

SHA = "de0fac2e4500dabe0009e67214ff5f5447ce83dd"


def _parse(text: str) -> dict:
    return rules.parse(textwrap.dedent(text))


def test_checkout_of_pr_head_under_pull_request_target_is_rejected():
    workflow = _parse(f"""
        on: pull_request_target
        jobs:
          build:
            steps:
              - uses: actions/checkout@{SHA}
                with:
                  ref: ${{{{ github.event.pull_request.head.sha }}}}
              - run: gh pr checkout 1
        """)
    assert rules.check_no_pr_code_in_privileged_triggers(workflow) == [
        "build: checks out pull request code under a privileged trigger",
        "build: fetches pull request code under a privileged trigger",
    ]


def test_base_checkout_under_pull_request_target_is_allowed():
    workflow = _parse(f"""
        on: pull_request_target
        jobs:
          label:
            steps:
              - uses: actions/checkout@{SHA}
        """)
    assert rules.check_no_pr_code_in_privileged_triggers(workflow) == []


def test_unpinned_actions_workflows_and_images_are_rejected():
    workflow = _parse(f"""
        on: push
        jobs:
          reuse:
            uses: octo/repo/.github/workflows/x.yml@main
          build:
            container: node:22
            services:
              db:
                image: postgres:15
            steps:
              - uses: actions/checkout@v4
              - uses: actions/checkout@{SHA[:12]}
              - uses: docker://alpine:3
              - uses: ./.github/actions/setup
              - uses: actions/checkout@{SHA}
        """)
    assert rules.check_pinned(workflow) == [
        "reuse: octo/repo/.github/workflows/x.yml@main is not pinned to a full commit SHA",
        "build step 1: actions/checkout@v4 is not pinned to a full commit SHA",
        f"build step 2: actions/checkout@{SHA[:12]} is not pinned to a full commit SHA",
        "build step 3: image docker://alpine:3 is not pinned by digest",
        "build container: image node:22 is not pinned by digest",
        "build service db: image postgres:15 is not pinned by digest",
    ]


def test_composite_action_steps_are_checked_for_pins():
    action = _parse("""
        runs:
          using: composite
          steps:
            - uses: astral-sh/setup-uv@v7
        """)
    assert rules.check_pinned(action) == ["composite step 1: astral-sh/setup-uv@v7 is not pinned to a full commit SHA"]


def test_missing_or_broad_permissions_are_rejected():
    workflow = _parse("""
        on: push
        permissions: write-all
        jobs:
          a:
            steps: []
          b:
            permissions:
              contents: write
              id-token: write
        """)
    assert rules.check_permissions(workflow) == [
        "workflow: permissions 'write-all' is not a mapping of scopes",
        "a: no job-level permissions",
        "b: contents: write is not allowed here",
    ]
    assert rules.check_permissions(_parse("on: push\njobs: {}")) == ["workflow: no top-level permissions"]
    assert rules.check_permissions(_parse("on: push\npermissions:\n  id-token: write\njobs: {}")) == [
        "workflow: id-token: write is not allowed here"
    ]


def test_id_token_without_oidc_and_oidc_without_id_token_are_rejected():
    workflow = _parse(f"""
        on: push
        jobs:
          idle:
            permissions:
              id-token: write
            steps:
              - run: echo hi
          assume:
            permissions:
              contents: read
            steps:
              - uses: aws-actions/configure-aws-credentials@{SHA}
                with:
                  role-to-assume: arn:aws:iam::123456789012:role/x
        """)
    assert rules.check_id_token_only_for_oidc(workflow) == [
        "idle: id-token: write but no AWS role is assumed and no Pulumi token exchanged",
        "assume: assumes an AWS role without id-token: write",
    ]


def test_pulumi_oidc_exchange_needs_id_token_and_justifies_it():
    workflow = _parse(f"""
        on: push
        jobs:
          exchange:
            permissions:
              contents: read
            steps:
              - uses: pulumi/auth-actions@{SHA}
          preview:
            permissions:
              id-token: write
            steps:
              - uses: pulumi/auth-actions@{SHA}
        """)
    assert rules.check_id_token_only_for_oidc(workflow) == [
        "exchange: exchanges a Pulumi token without id-token: write"
    ]


def test_stored_pulumi_token_on_pull_request_is_rejected():
    workflow = _parse("""
        on: pull_request
        jobs:
          preview:
            steps:
              - uses: pulumi/actions@x
                env:
                  PULUMI_ACCESS_TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN }}
          indexed:
            steps:
              - run: echo "${{ secrets['PULUMI_ACCESS_TOKEN'] }}"
          exchanged:
            steps:
              - uses: pulumi/auth-actions@x
        """)
    assert rules.check_no_stored_pulumi_token_on_pull_request(workflow) == [
        "preview: reads secrets.PULUMI_ACCESS_TOKEN on pull_request",
        "indexed: reads secrets.PULUMI_ACCESS_TOKEN on pull_request",
    ]
    push = _parse("on: push\njobs:\n  up:\n    steps:\n      - run: echo ${{ secrets.PULUMI_ACCESS_TOKEN }}")
    assert rules.check_no_stored_pulumi_token_on_pull_request(push) == []


def test_pulumi_cli_without_an_exact_version_is_rejected():
    workflow = _parse(f"""
        on: push
        jobs:
          latest:
            steps:
              - uses: pulumi/actions@{SHA}
                with:
                  command: up
          ranged:
            steps:
              - uses: pulumi/actions@{SHA}
                with:
                  pulumi-version: ^3
          pinned:
            steps:
              - uses: pulumi/actions@{SHA}
                with:
                  pulumi-version: 3.272.0
        """)
    assert rules.check_pulumi_cli_pinned(workflow) == [
        "latest: pulumi/actions without an exact pulumi-version (got '')",
        "ranged: pulumi/actions without an exact pulumi-version (got '^3')",
    ]


def test_security_events_write_only_with_a_sarif_upload():
    workflow = _parse(f"""
        on: push
        jobs:
          idle:
            permissions:
              security-events: write
            steps:
              - run: echo hi
          upload:
            permissions:
              contents: read
            steps:
              - uses: github/codeql-action/upload-sarif@{SHA}
                with:
                  sarif_file: results.sarif
        """)
    assert rules.check_security_events_only_for_sarif_upload(workflow) == [
        "idle: security-events: write but no SARIF upload",
        "upload: uploads SARIF without security-events: write",
    ]


def test_static_aws_keys_are_rejected():
    text = textwrap.dedent(f"""
        on: push
        jobs:
          deploy:
            steps:
              - uses: aws-actions/configure-aws-credentials@{SHA}
                with:
                  aws-access-key-id: ${{{{ secrets.KEY }}}}
                  aws-secret-access-key: ${{{{ secrets.SECRET }}}}
        """)
    assert rules.check_oidc_credentials(rules.parse(text), text) == [
        "deploy: aws-actions/configure-aws-credentials without role-to-assume",
        "file: mentions aws-access-key-id",
        "file: mentions aws-secret-access-key",
    ]


def test_deploy_without_environment_or_with_cancelling_concurrency_is_rejected():
    workflow = _parse(f"""
        on: push
        jobs:
          deploy-prod:
            environment: staging
            concurrency:
              group: deploy
              cancel-in-progress: true
            env:
              STACK: prod
            steps:
              - uses: pulumi/actions@{SHA}
                with:
                  command: up
                  stack-name: acme/${{{{ env.STACK }}}}
          preview:
            steps:
              - uses: pulumi/actions@{SHA}
                with:
                  command: preview
                  stack-name: acme/prod
        """)
    assert rules.check_deploy_jobs(workflow) == [
        "deploy-prod: deploys prod outside GitHub environment 'prod'",
        "deploy-prod: no per-stack concurrency group for prod",
        "deploy-prod: concurrency must set cancel-in-progress: false",
    ]


def test_credentials_on_pull_request_without_fork_guard_are_rejected():
    workflow = _parse("""
        on: pull_request
        jobs:
          preview:
            permissions:
              id-token: write
            steps: []
          comment:
            steps:
              - run: echo ${{ secrets.TOKEN }}
          guarded:
            if: github.event.pull_request.head.repo.full_name == github.repository
            permissions:
              id-token: write
            steps: []
        """)
    assert rules.check_fork_prs_get_no_credentials(workflow) == [
        "preview: gets credentials on pull_request but is not skipped for forks",
        "comment: gets credentials on pull_request but is not skipped for forks",
    ]
