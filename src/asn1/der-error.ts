/** Bytes that are not the DER we expected: malformed, BER-only, or a value DER cannot carry. */
export class DerError extends Error {}
