import type { ApprovalDeps } from "../approvals/context.ts";
import { authenticate, type Principal, type Role } from "../auth/api-tokens.ts";
import { loadActiveIssuer } from "../issuance/issuer.ts";
import { loadProfiles } from "../policy/profiles.ts";
import { CliError, type CommandEnv } from "./command-env.ts";

/**
 * The principal a CLI command acts as: the API token the CLI read from
 * HSM_CA_TOKEN or --token-file (src/cli/local-inputs.ts), checked like a
 * bearer token. The token itself is never printed; its id is.
 */
export async function principalOf(env: CommandEnv, tokenValue: string | undefined, roles: readonly Role[]): Promise<Principal> {
  if (!tokenValue) throw new CliError("this command acts as an API token's holder: set HSM_CA_TOKEN or pass --token-file FILE");
  const principal = await authenticate((await env.store()).db, tokenValue);
  if (!principal) throw new CliError("the API token (HSM_CA_TOKEN or --token-file) is not valid");
  if (!roles.includes(principal.role)) throw new CliError(`an ${principal.role} token may not do this; it takes ${roles.join(" or ")}`, 1);
  return principal;
}

/** The approval workflow on the CLI's database and HSM (or, over the control socket, the service's). */
export async function approvalDepsOfEnv(env: CommandEnv): Promise<ApprovalDeps> {
  const store = await env.store();
  return {
    db: store.db,
    profiles: loadProfiles(env.config.profilesDir),
    // The HSM is opened only when a request is issued: listing and reading need none.
    issuer: () => loadActiveIssuer(store.db, env.hsm()),
    revocation: { urls: env.revocationUrls(), partitions: env.config.revocation.crlPartitions },
    now: () => new Date(),
    hierarchyChanged: () => env.hierarchyChanged(),
    // AUDIT: requests, decisions, expiries and executions go to the command's audit log.
    audit: env.audit,
    metrics: env.metrics,
  };
}
