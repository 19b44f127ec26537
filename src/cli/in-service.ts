import { withActor } from "../audit/actor.ts";
import type { CommandResult, CommandRunner } from "../control/control-socket.ts";
import type { CommandEnv } from "./command-env.ts";
import { runCommand } from "./run-command.ts";

/** What the running service lends a command: its own database, HSM, audit log and metrics. */
export type ServiceResources = Omit<CommandEnv, "out" | "err">;

/**
 * Runs the commands sent over the running service's control socket (PGlite
 * is single-process: the CLI cannot open it beside the service) inside the
 * service, with its resources; the output goes back to the CLI that sent them.
 * Handed to startService by the entry point (src/serve.ts), so the service
 * itself knows no CLI.
 */
export function commandsInService(resources: ServiceResources): CommandRunner {
  return async (argv: string[]): Promise<CommandResult> => {
    const out: string[] = [];
    const err: string[] = [];
    const env: CommandEnv = { ...resources, out: (t) => out.push(t), err: (t) => err.push(t) };
    const code = await withActor("cli", () => runCommand(argv, env));
    return { code, stdout: lines(out), stderr: lines(err) };
  };
}

function lines(parts: string[]): string {
  return parts.length ? parts.join("\n") + "\n" : "";
}
