import type { Transcript } from "./init-hierarchy.ts";

/** What an audit entry keeps of a ceremony transcript: which CAs and keys were made or adopted, and what the token reported about each key. */
export function transcriptDetails(t: Transcript): Record<string, unknown> {
  return {
    ceremony: t.ceremony,
    token: t.token,
    created: t.created.map((e) => ({
      role: e.role,
      subject: e.subject,
      key_label: e.keyLabel,
      key_id: e.keyId,
      key_algorithm: e.keyAlgorithm,
      key_origin: e.keyOrigin,
      key_provenance: e.provenance,
      ...(e.weakKeyAccepted ? { weak_key_accepted: e.weakKeyAccepted } : {}),
      serial: e.serial,
      certificate_sha256: e.certificateSha256,
    })),
  };
}
