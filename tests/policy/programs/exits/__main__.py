"""A program that stops itself early: the runner must say so (exit 2), never pass or fail without a report."""

import os
import sys

import pulumi_aws as aws

aws.sqs.Queue("jobs")  # unencrypted: the runner must not judge a half-run program either way
sys.exit(int(os.environ.get("EXIT_CODE", "0")))
