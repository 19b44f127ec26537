import * as x509 from "@peculiar/x509";
import type { Signer } from "../hsm/key-manager.ts";

/** Software WebCrypto to check the finished request: no HSM time for a verification. */
const soft = globalThis.crypto;

/**
 * A PKCS#10 request for a CA key on the HSM, for an external CA to certify
 * (an issuing intermediate under an enterprise root). It asks for
 * basicConstraints CA:TRUE and keyUsage keyCertSign+cRLSign in an
 * extensionRequest; the external CA's signer decides what the certificate
 * finally says (path length, validity, names).
 */
export async function buildCaCsr(input: { subject: string; spki: ArrayBuffer; signer: Signer }): Promise<x509.Pkcs10CertificateRequest> {
  const csr = await input.signer.use((signingKey, crypto) =>
    x509.Pkcs10CertificateRequestGenerator.create(
      {
        name: input.subject,
        // The generator reads the public key through exportKey: the HSM already gave us its SPKI.
        keys: { privateKey: signingKey, publicKey: {} as CryptoKey },
        signingAlgorithm: input.signer.signingAlgorithm,
        extensions: [
          new x509.BasicConstraintsExtension(true, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        ],
      },
      {
        subtle: {
          exportKey: async () => input.spki,
          sign: (algorithm: AlgorithmIdentifier, key: CryptoKey, data: BufferSource) => crypto.subtle.sign(algorithm, key, data),
        },
      } as unknown as Crypto,
    ),
  );
  if (!(await csr.verify(soft))) throw new Error("the HSM's signature on the new CSR does not verify");
  return csr;
}
