import pino, { type Logger } from "pino";

/**
 * JSON logs on stderr. Redaction is a second line of defence: code never
 * passes PINs or tokens to the logger in the first place.
 */
export function createLogger(level: string, destination: pino.DestinationStream = pino.destination(2)): Logger {
  return pino(
    {
      level,
      base: { service: "hsm-ca" },
      redact: {
        paths: ["pin", "*.pin", "secret", "*.secret", "token", "*.authorization", "authorization", "req.headers.authorization"],
        censor: "[redacted]",
      },
    },
    destination,
  );
}
