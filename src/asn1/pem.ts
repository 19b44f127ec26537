import type * as x509 from "@peculiar/x509";

/** PEM with exactly one trailing newline, so that PEMs concatenate into valid bundles. */
export function pemOf(cert: x509.X509Certificate): string {
  return cert.toString("pem").trim() + "\n";
}

/** DER in a PEM block, 64 characters a line: no empty line even when the base64 fills the last one. */
export function derToPem(der: Uint8Array, label: string): string {
  const body = Buffer.from(der).toString("base64").match(/.{1,64}/g)?.join("\n") ?? "";
  return `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`;
}

/**
 * The DER inside the first PEM block whose BEGIN label is one of `labels`
 * (the END label may be any of them). Text around the block is ignored
 * (openssl -text output, say); anything but base64 and whitespace inside it
 * is not. Linear in the input: no backtracking regex over hostile text.
 */
export function derOfPemBlock(text: string, labels: readonly string[]): { der: Uint8Array } | { problem: "no-block" | "not-base64" } {
  let begin = -1;
  let label = "";
  for (const l of labels) {
    const at = text.indexOf(`-----BEGIN ${l}-----`);
    if (at >= 0 && (begin < 0 || at < begin)) [begin, label] = [at, l];
  }
  if (begin < 0) return { problem: "no-block" };
  const bodyStart = begin + `-----BEGIN ${label}-----`.length;
  const end = text.indexOf("-----END ", bodyStart);
  if (end < 0 || !labels.some((l) => text.startsWith(`-----END ${l}-----`, end))) return { problem: "not-base64" };
  if (!isStrictBase64(text, bodyStart, end)) return { problem: "not-base64" };
  // Buffer's base64 decoder skips the whitespace isStrictBase64 allowed.
  return { der: Buffer.from(text.slice(bodyStart, end), "base64") };
}

/** What each code unit below 128 is in a PEM body; 0 (anything else) is refused. */
const CHAR = { DIGIT: 1, PAD: 2, SPACE: 3 } as const;
const PEM_CHARS = (() => {
  const t = new Uint8Array(128);
  for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") t[c.charCodeAt(0)] = CHAR.DIGIT;
  t["=".charCodeAt(0)] = CHAR.PAD;
  for (const c of " \t\r\n\f\v") t[c.charCodeAt(0)] = CHAR.SPACE;
  return t;
})();

/**
 * text[from, to) is whole quads of the base64 alphabet, with "=" padding
 * only at the end, between any ASCII whitespace. One pass, no copy, no
 * backtracking regex (V8 runs those on the stack, which megabytes overflow).
 */
function isStrictBase64(text: string, from: number, to: number): boolean {
  let digits = 0;
  let pads = 0;
  for (let i = from; i < to; i++) {
    const code = text.charCodeAt(i);
    const kind = code < 128 ? PEM_CHARS[code]! : 0;
    if (kind === CHAR.DIGIT) {
      if (pads) return false; // nothing but padding after padding
      digits++;
    } else if (kind === CHAR.PAD) {
      if (++pads > 2) return false;
    } else if (kind !== CHAR.SPACE) return false;
  }
  return (digits + pads) % 4 === 0 && (pads === 0 || digits % 4 === 4 - pads);
}
