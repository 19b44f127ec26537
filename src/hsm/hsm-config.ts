/** How to reach the HSM: read from the environment by src/config.ts. */
export interface HsmConfig {
  /** Path of the PKCS#11 shared library. */
  module: string;
  tokenLabel: string;
  /** Where the user PIN comes from; the PIN itself is read only when logging in. */
  pinSource: { env: string } | { file: string };
  sessions: number;
  /** Callers that may wait for a session; further ones are refused at once (hsm-busy). */
  queueLimit: number;
  /** True when hsm-ca owns a SoftHSM2 token under the data directory. */
  embedded: boolean;
  /** A separate token for the root key (an offline root); unset: the root key is on the same token. */
  rootToken?: { label: string; pinSource: { env: string } | { file: string } };
}
