import { AsyncLocalStorage } from "node:async_hooks";
import pino, { type Logger } from "pino";

/**
 * Fields every log line written inside withLogFields carries: the request
 * id of the HTTP request being served, so that an error logged deep down
 * can be matched to its request line.
 */
const logFields = new AsyncLocalStorage<Record<string, string>>();

/** Runs fn, and everything it starts, with these fields on each log line. */
export function withLogFields<T>(fields: Record<string, string>, fn: () => T): T {
  return logFields.run(fields, fn);
}

/**
 * JSON logs on stderr. Redaction is a second line of defence: code never
 * passes PINs or tokens to the logger in the first place.
 */
export function createLogger(level: string, destination: pino.DestinationStream = pino.destination(2)): Logger {
  return pino(
    {
      level,
      base: { service: "hsm-ca" },
      mixin: () => logFields.getStore() ?? {},
      redact: {
        paths: ["pin", "*.pin", "secret", "*.secret", "token", "*.authorization", "authorization", "req.headers.authorization"],
        censor: "[redacted]",
      },
    },
    destination,
  );
}
