import type { Logger } from "pino";
import type { Principal } from "../auth/api-tokens.ts";
import type { Hsm } from "../hsm/hsm.ts";
import type { ActiveIssuer } from "../issuance/issuer.ts";
import type { Profile } from "../policy/profile-schema.ts";
import type { OcspService } from "../revocation/ocsp-service.ts";
import type { Store } from "../store/database.ts";

/** What the HTTP layer may use. Built once by the service. */
export interface AppContext {
  store: Store;
  hsm: Hsm;
  profiles: ReadonlyMap<string, Profile>;
  issuer(): ActiveIssuer;
  /** The OCSP responder, once started. */
  ocsp(): OcspService | undefined;
  log: Logger;
}

/** Hono variables set by middleware. */
export interface AppEnv {
  Variables: { principal: Principal };
}
