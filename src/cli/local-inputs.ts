import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { CliError } from "./command-env.ts";

/**
 * Inputs that belong to the CLI process, not to wherever the command runs.
 * On the embedded database the command runs inside the service (control
 * socket), which has its own environment and working directory: so the CLI
 * resolves them here, before running or forwarding the command.
 *
 * - The API token (commands that act as a principal): from --token-file
 *   FILE or HSM_CA_TOKEN, passed on as `--token-value=<secret>`. That
 *   argument exists only in the argv handed to runCommand or sent over the
 *   0600 control socket (whose log line names the command only); it never
 *   appears in this process's own argv, so users may not pass it themselves.
 * - `issue --csr FILE`: read relative to this process's directory and
 *   passed on as `--csr-pem=<PEM>`.
 * - `issue --out FILE`: taken out; main.ts writes the command's stdout
 *   there when it succeeds (exit 0: a certificate), here in the CLI process.
 * - Certificates handed to ceremonies (`init --external-root FILE`,
 *   `ceremony import-intermediate --cert FILE --chain FILE`): read here and
 *   passed on as `--external-root-pem=`, `--cert-pem=`, `--chain-pem=`.
 * - `init --csr-out FILE`: taken out; the CSR the command prints goes to
 *   that file instead of the terminal.
 */
export interface LocalizedArgs {
  argv: string[];
  outFile?: string;
  /** Where the CSR block of the command's output goes. */
  csrOutFile?: string;
}

/** Commands that act as an API token's principal, and which of their options the CLI resolves. */
const LOCAL_OPTIONS: Record<string, Array<"token-file" | "csr" | "out" | "csr-out" | keyof typeof PEM_FILES>> = {
  init: ["external-root", "csr-out"],
  ceremony: ["cert", "chain", "out"],
  approve: ["token-file"],
  reject: ["token-file"],
  requests: ["token-file"],
  rotate: ["token-file"],
  issue: ["token-file", "csr", "out"],
};
/** Certificate files read here, and the option that carries their PEM to the command. */
const PEM_FILES = { "external-root": "external-root-pem", cert: "cert-pem", chain: "chain-pem" } as const;
const INTERNAL = ["token-value", "csr-pem", ...Object.values(PEM_FILES)];
/** The control socket takes 64 KiB; a CSR is a few KiB. */
const MAX_CSR_BYTES = 32 * 1024;

export function localizeArgs(argv: string[], env: NodeJS.ProcessEnv, cwd: string): LocalizedArgs {
  const [name, ...rest] = argv;
  const local = name ? LOCAL_OPTIONS[name] : undefined;
  if (!name || !local) return { argv };
  const options = Object.fromEntries([...local, ...INTERNAL].map((o) => [o, { type: "string" as const }]));
  const { tokens } = parseArgs({ args: rest, options, strict: false, allowPositionals: true, tokens: true });
  const skip = new Set<number>();
  const values: Record<string, string> = {};
  for (const t of tokens) {
    if (t.kind !== "option" || !(t.name in options)) continue;
    if (INTERNAL.includes(t.name)) throw new CliError(`--${t.name} is not an option: give the token in HSM_CA_TOKEN or --token-file FILE, the CSR with --csr FILE`);
    if (t.value === undefined) throw new CliError(`--${t.name} needs a value`);
    values[t.name] = t.value;
    skip.add(t.index);
    if (t.inlineValue === false) skip.add(t.index + 1);
  }
  const out = [name, ...rest.filter((_, i) => !skip.has(i))];
  if (values.csr !== undefined) out.push(`--csr-pem=${readLocal(values.csr, cwd, "--csr", MAX_CSR_BYTES)}`);
  for (const [option, internal] of Object.entries(PEM_FILES)) {
    if (values[option] !== undefined) out.push(`--${internal}=${readLocal(values[option], cwd, `--${option}`, MAX_CSR_BYTES)}`);
  }
  const token = values["token-file"] !== undefined ? readLocal(values["token-file"], cwd, "--token-file", 1024).trim() : env.HSM_CA_TOKEN?.trim();
  if (token) out.push(`--token-value=${token}`);
  return {
    argv: out,
    outFile: values.out !== undefined ? path.resolve(cwd, values.out) : undefined,
    csrOutFile: values["csr-out"] !== undefined ? path.resolve(cwd, values["csr-out"]) : undefined,
  };
}

function readLocal(file: string, cwd: string, option: string, maxBytes: number): string {
  const full = path.resolve(cwd, file);
  let text: string;
  try {
    if (fs.statSync(full).size > maxBytes) throw new CliError(`${option} ${file}: larger than ${maxBytes} bytes`);
    text = fs.readFileSync(full, "utf8");
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`${option} ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return text;
}
