import { eq, sql } from "drizzle-orm";
import type { CertificateRow } from "./certificates.ts";
import type { Database } from "./database.ts";
import { perDatabase } from "./prepared.ts";
import { caCrossCertificates, cas, certificates } from "./schema.ts";

/**
 * What an ACME certificate download needs, in one query: the certificate,
 * whether any cross certificate exists (a rollover: the chains are worked
 * out from every CA, src/issuance/chains.ts), and otherwise the one chain
 * above its issuer as chainPemOf (store/cas.ts) builds it: each CA's
 * certificate up to, not including, the root, at most 8.
 */
export async function certificateForDownload(
  db: Database,
  serial: string,
): Promise<{ cert: CertificateRow; crossCertificates: boolean; chainPem: string } | undefined> {
  const [row] = await certificateForDownloadQuery(db).execute({ serial });
  return row && { cert: row.cert, crossCertificates: Boolean(row.crossCertificates), chainPem: row.chainPem ?? "" };
}

// Every certificate download reads it: prepared (src/store/prepared.ts).
const certificateForDownloadQuery = perDatabase((db) =>
  db
    .select({
      cert: certificates,
      crossCertificates: sql<boolean>`exists (select 1 from ${caCrossCertificates})`,
      chainPem: sql<string | null>`(
        with recursive up(id, parent_id, role, pem, depth) as (
          select ${cas.id}, ${cas.parentId}, ${cas.role}, ${cas.certificatePem}, 0 from ${cas} where ${cas.id} = ${certificates.issuerId}
          union all
          select p.id, p.parent_id, p.role, p.certificate_pem, up.depth + 1 from ${cas} as p join up on p.id = up.parent_id
          where up.role <> 'root' and up.depth < 8
        )
        select string_agg(btrim(pem, E' \\t\\r\\n') || E'\\n', '' order by depth) from up where role <> 'root' and depth < 8
      )`,
    })
    .from(certificates)
    .where(eq(certificates.serial, sql.placeholder("serial")))
    .prepare("acme_certificate_for_download"),
);
